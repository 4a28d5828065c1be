"""Health checks for load balancers and operators.

`/health/live/` answers 200 while the process can serve a request (no dependency is
asked). `/health/` asks each part separately and answers 200 when all are up, 503 when
one is not, with what each said:

    {"status": "ok" | "degraded",
     "checks": {"database": {"ok": true, "ms": 1.2},
                "redis": {"ok": true, "ms": 0.4},
                "workers": {"ok": true, "ms": 310.0, "count": 2},
                "llm": {"ok": true, "ms": 12.5}}}

A failing check says why in "error" (the exception's class and message, never a
password: URLs are reported without their credentials). Workers are found with a
Celery broadcast ping; the LLM endpoint with a GET of its model list.

The checks take about a second (the ping waits for replies), so each process runs them
at most once every HEALTH_CACHE_SECONDS (5) and answers from that result meanwhile: a
burst of probes never holds web workers. Only staff and API tokens see the checks;
anyone else gets the status and its code, which is all a load balancer needs.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

WORKER_PING_SECONDS = 1.0
LLM_TIMEOUT_SECONDS = 3.0


def _timed(check: Callable[[], dict | None]) -> dict:
    started = time.monotonic()
    try:
        extra = check() or {}
    except Exception as exc:  # a health check reports every failure, whatever its kind
        return {"ok": False, "ms": _ms(started), "error": f"{type(exc).__name__}: {exc}"}
    ok = extra.pop("ok", True)
    return {"ok": ok, "ms": _ms(started), **extra}


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_redis() -> None:
    from hyperpers import redis_client

    redis_client.client(timeout=redis_client.CHECK_TIMEOUT).ping()


def check_workers() -> dict:
    from hyperpers.celery import app

    replies = app.control.ping(timeout=WORKER_PING_SECONDS) or []
    count = len(replies)
    result: dict[str, object] = {"ok": count > 0, "count": count}
    if not count:
        result["error"] = f"no worker answered within {WORKER_PING_SECONDS:g} s"
    return result


def _without_credentials(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def check_llm() -> dict:
    import openai

    client = openai.OpenAI(
        base_url=settings.LLM_BASE_URL,
        api_key=settings.LLM_API_KEY,
        timeout=LLM_TIMEOUT_SECONDS,
        max_retries=0,
    )
    models = [m.id for m in client.models.list()]
    return {"endpoint": _without_credentials(settings.LLM_BASE_URL), "models": len(models)}


CHECKS: dict[str, Callable[[], dict | None]] = {
    "database": check_database,
    "redis": check_redis,
    "workers": check_workers,
    "llm": check_llm,
}


_last: dict = {"at": 0.0, "checks": None}
_lock = threading.Lock()


def checks_cached() -> dict:
    """Every check's result, run again once HEALTH_CACHE_SECONDS have passed; threads
    asking meanwhile wait for the one run instead of starting their own."""
    with _lock:
        age = time.monotonic() - _last["at"]
        if _last["checks"] is None or age >= settings.HEALTH_CACHE_SECONDS:
            _last["checks"] = {name: _timed(check) for name, check in CHECKS.items()}
            _last["at"] = time.monotonic()
        return _last["checks"]


def forget() -> None:
    with _lock:
        _last["checks"] = None


def _may_see_details(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    header = request.headers.get("Authorization", "").split()
    if len(header) != 2 or header[0].lower() != "bearer":
        return False
    from rest_framework.exceptions import AuthenticationFailed

    from review.auth import active_token, token_digest

    try:
        active_token(token_digest(header[1]))
    except AuthenticationFailed:
        return False
    except Exception:  # the database is down: health still answers, without details
        return False
    return True


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    checks = checks_cached()
    ok = all(c["ok"] for c in checks.values())
    body: dict = {"status": "ok" if ok else "degraded"}
    if _may_see_details(request):
        body["checks"] = checks
    return JsonResponse(body, status=200 if ok else 503)


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
