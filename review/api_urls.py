from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from review import api

urlpatterns = [
    path("live/", api.LiveView.as_view(), name="api-live"),
    path("live/batch/", api.LiveBatchView.as_view(), name="api-live-batch"),
    path("events/", api.EventsView.as_view(), name="api-events"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
