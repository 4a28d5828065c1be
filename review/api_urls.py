from csp.decorators import csp_exempt
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from review import api, workflow_api

urlpatterns = [
    path("live/", api.live, name="api-live"),
    path("live/batch/", api.LiveBatchView.as_view(), name="api-live-batch"),
    path("events/", api.EventsView.as_view(), name="api-events"),
    path(
        "variants/<int:pk>/approve/", workflow_api.ApproveView.as_view(), name="api-variant-approve"
    ),
    path("variants/<int:pk>/reject/", workflow_api.RejectView.as_view(), name="api-variant-reject"),
    path(
        "variants/<int:pk>/regenerate/",
        workflow_api.RegenerateView.as_view(),
        name="api-variant-regenerate",
    ),
    path("", include("review.workflow_api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The two documentation pages run the UIs' own inline scripts and workers: they
    # are the only pages without the content security policy.
    path(
        "docs/",
        csp_exempt()(SpectacularSwaggerView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path(
        "redoc/",
        csp_exempt()(SpectacularRedocView.as_view(url_name="api-schema")),
        name="api-redoc",
    ),
]
