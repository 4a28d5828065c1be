from django.urls import path

from review import views

app_name = "review"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("variants/<int:pk>/approve/", views.approve, name="approve"),
    path("variants/<int:pk>/reject/", views.reject, name="reject"),
    path("variants/<int:pk>/regenerate/", views.regenerate, name="regenerate"),
    path("runs/", views.runs, name="runs"),
    path("runs/new/", views.run_new, name="run-new"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/<slug:action>/", views.run_action, name="run-action"),
]
