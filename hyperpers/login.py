"""Login throttling. django-axes locks out one username from one address after
AXES_FAILURE_LIMIT failures; password spraying (many usernames, a few passwords each,
from one address) never reaches that. So failures are also counted per address over
every username: past LOGIN_IP_FAILURE_LIMIT within the cool-off time, the address may
not try again until the oldest failure leaves the window (a moving window from the
`limits` library, in Redis, shared by every web process).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import cache

from axes.helpers import get_client_ip_address, get_cool_off
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from generation.limiter import limits_uri

logger = logging.getLogger(__name__)

NAMESPACE = "login-failures-by-address"


@cache
def _limiter() -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(storage_from_string(limits_uri(settings.REDIS_URL)))


def _window() -> RateLimitItemPerMinute:
    minutes = max(1, round(cool_off().total_seconds() / 60))
    return RateLimitItemPerMinute(settings.LOGIN_IP_FAILURE_LIMIT, minutes)


def cool_off() -> timedelta:
    return get_cool_off() or timedelta(minutes=15)


def address_locked(request: HttpRequest) -> bool:
    """Whether the request's address is past its failures. Fails open, logged, when
    Redis is unreachable: axes' own lockout (in the database) still holds then."""
    try:
        return not _limiter().test(_window(), NAMESPACE, get_client_ip_address(request) or "")
    except RedisError:
        logger.warning("login throttle: Redis unreachable; not counting by address")
        return False


@receiver(user_login_failed)
def _count_failure(sender, credentials, request=None, **kwargs) -> None:
    if request is None:
        return
    try:
        _limiter().hit(_window(), NAMESPACE, get_client_ip_address(request) or "")
    except RedisError:
        logger.warning("login throttle: Redis unreachable; a failure went uncounted")


def clear(address: str) -> None:
    """Forget an address's failures (an administrator unlocking it; the tests)."""
    _limiter().clear(_window(), NAMESPACE, address)


def locked_out(request: HttpRequest, *, by_address: bool) -> HttpResponse:
    context = {"cooloff_timedelta": cool_off(), "by_address": by_address}
    return render(request, settings.AXES_LOCKOUT_TEMPLATE, context, status=429)


class LoginView(auth_views.LoginView):
    """Django's login view, refusing an address with too many failures before it asks
    the backends (axes then still locks out the username × address pair)."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if address_locked(request):
            return locked_out(request, by_address=True)
        return super().post(request, *args, **kwargs)
