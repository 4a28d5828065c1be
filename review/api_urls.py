from django.urls import path

from review import api

urlpatterns = [
    path("live/", api.LiveView.as_view(), name="api-live"),
]
