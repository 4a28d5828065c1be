from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from hyperpers import health, login

urlpatterns = [
    # First: the live endpoint is the hottest URL, and patterns are tried in order.
    path("api/v1/", include("review.api_urls")),
    path("", RedirectView.as_view(pattern_name="review:queue", permanent=False)),
    path("health/", health.health, name="health"),
    path("health/live/", health.live, name="health-live"),
    path("login/", login.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # One login page for everyone: the admin's own would skip the per-address throttle.
    path("admin/login/", RedirectView.as_view(pattern_name="login", query_string=True)),
    path("admin/", admin.site.urls),
    path("review/", include("review.urls")),
]

# Bad input: a 400 that says what the BadRequest said (hyperpers/errors.py).
handler400 = "hyperpers.errors.bad_request"
