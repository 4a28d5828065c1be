from django.urls import path

from review import views

app_name = "review"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("variants/<int:pk>/approve/", views.approve, name="approve"),
    path("variants/<int:pk>/reject/", views.reject, name="reject"),
]
