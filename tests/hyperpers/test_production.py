"""What an operations engineer relies on: refusing unsafe settings, security headers,
health checks, login throttling, structured logs and the periodic work."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from generation.models import GenerationRun, Variant
from hyperpers import health
from hyperpers.logs import ContextFilter, log_context
from tests.conftest import PROJECT_DIR
from tests.factories import UserFactory, VariantFactory

pytestmark = pytest.mark.django_db


def _settings_in_a_fresh_process(**env) -> subprocess.CompletedProcess:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.LOG_FORMAT)"
    )
    environment = {
        k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "LOG_FORMAT")
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**environment, "DJANGO_SETTINGS_MODULE": "hyperpers.settings", **env},
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("key", [None, "short-key"])
def test_with_debug_off_the_app_refuses_a_default_or_weak_secret_key(key):
    env = {"DEBUG": "0"} | ({"SECRET_KEY": key} if key else {})
    done = _settings_in_a_fresh_process(**env)
    assert done.returncode != 0
    assert "DEBUG is off and SECRET_KEY is the development default" in done.stderr


def test_with_debug_off_cookies_are_secure_hsts_is_on_and_logs_are_json():
    done = _settings_in_a_fresh_process(DEBUG="0", SECRET_KEY="k" * 50)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "31536000", "json"]


def test_pages_carry_the_content_security_policy(client):
    response = client.get(reverse("login"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert response["X-Frame-Options"] == "DENY"


def test_static_files_are_served_by_the_app(client):
    response = client.get("/static/vendor/htmx/htmx.min.js")
    assert response.status_code == 200
    assert b"htmx" in b"".join(response.streaming_content)


# --- health ---------------------------------------------------------------------------


def test_health_reports_each_part_and_503_when_one_is_down(client, monkeypatch):
    client.force_login(UserFactory(username="ops", is_staff=True))
    monkeypatch.setattr(health, "check_workers", lambda: {"count": 2})
    monkeypatch.setitem(health.CHECKS, "workers", health.check_workers)
    monkeypatch.setitem(health.CHECKS, "llm", lambda: {"models": 1})
    response = client.get(reverse("health"))
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "workers", "llm"}
    assert body["checks"]["workers"]["count"] == 2

    def refused():
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setitem(health.CHECKS, "llm", refused)
    response = client.get(reverse("health"))
    assert response.status_code == 503
    llm = response.json()["checks"]["llm"]
    assert llm["ok"] is False and "ConnectionRefusedError" in llm["error"]
    assert response.json()["checks"]["database"]["ok"] is True


def test_anonymous_health_says_the_status_only_and_the_checks_run_once_a_window(
    client, monkeypatch, settings
):
    """Issue 15: a burst of anonymous /health/ calls held web workers for a second each,
    and the answer named the LLM endpoint."""
    settings.HEALTH_CACHE_SECONDS = 5
    health.forget()
    runs = []
    monkeypatch.setitem(health.CHECKS, "workers", lambda: runs.append(1) or {"count": 1})
    monkeypatch.setitem(health.CHECKS, "llm", lambda: {"endpoint": "http://llm.internal/v1"})

    answers = [client.get(reverse("health")) for _ in range(8)]

    assert len(runs) == 1  # eight probes, one run of the checks
    assert all(a.status_code == 200 and a.json() == {"status": "ok"} for a in answers)
    assert b"llm.internal" not in answers[0].content
    from review.auth import api_token_create

    _token, key = api_token_create(name="monitor", kind="read")
    detailed = client.get(reverse("health"), HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert detailed["checks"]["llm"]["endpoint"] == "http://llm.internal/v1"
    assert client.get(reverse("health"), HTTP_AUTHORIZATION="Bearer hp_r_wrong").json() == {
        "status": "ok"
    }
    health.forget()


def test_the_llm_check_asks_the_real_endpoint(offline_writer, settings):
    settings.LLM_API_KEY = "sk-secret"
    result = health.check_llm()
    assert result["models"] >= 1
    assert "sk-secret" not in json.dumps(result)


def test_no_worker_is_a_failed_check(monkeypatch):
    from hyperpers.celery import app

    monkeypatch.setattr(app.control, "ping", lambda timeout: [])
    result = health._timed(health.check_workers)
    assert result["ok"] is False and "no worker answered" in result["error"]


def test_liveness_asks_nothing(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert client.get(reverse("health-live")).json() == {"status": "ok"}


# --- login throttling -----------------------------------------------------------------


def test_logins_are_locked_out_after_repeated_failures(client):
    UserFactory(username="ann", password="right-password")
    statuses = [
        client.post(reverse("login"), {"username": "ann", "password": "wrong"}).status_code
        for _ in range(settings.AXES_FAILURE_LIMIT)
    ]
    # The form again, with its error, until the last allowed failure locks the pair out.
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    response = client.post(reverse("login"), {"username": "ann", "password": "right-password"})
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    # The wait in words, not ISO 8601 (PT15M).
    assert "Try again in 15\xa0minutes" in response.content.decode()
    assert "PT15M" not in response.content.decode()
    # Another username from the same address is not locked out.
    UserFactory(username="bob", password="bob-password")
    response = client.post(reverse("login"), {"username": "bob", "password": "bob-password"})
    assert response.status_code == 302


def test_password_spraying_from_one_address_is_throttled(client, settings):
    """20 usernames × 4 passwords from one address: no username × address pair reaches
    axes' limit of 5, but the address does reach LOGIN_IP_FAILURE_LIMIT."""
    settings.LOGIN_IP_FAILURE_LIMIT = 20
    UserFactory(username="carol", password="carol-password")
    statuses = []
    for user in range(20):
        for password in range(4):
            response = client.post(
                reverse("login"), {"username": f"user{user}", "password": f"guess{password}"}
            )
            statuses.append(response.status_code)

    assert statuses[:20] == [200] * 20
    assert statuses[20:] == [429] * 60
    # Even the right password of another user waits out the cool-off from there.
    response = client.post(reverse("login"), {"username": "carol", "password": "carol-password"})
    assert response.status_code == 429
    assert "from your address, for any username" in response.content.decode()
    assert "15\xa0minutes" in response.content.decode()
    # Another address is not affected.
    response = client.post(
        reverse("login"),
        {"username": "carol", "password": "carol-password"},
        REMOTE_ADDR="192.0.2.7",
    )
    assert response.status_code == 302


def test_the_admin_login_is_the_throttled_login_page(client, settings):
    """The admin's own login form would skip the per-address throttle: it sends to ours."""
    settings.LOGIN_IP_FAILURE_LIMIT = 3
    UserFactory(username="root", password="root-password", is_staff=True, is_superuser=True)
    for user in range(3):
        client.post(reverse("login"), {"username": f"user{user}", "password": "guess"})
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "root", "password": "root-password"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("login") + "?next=/admin/"
    assert client.get("/admin/").status_code == 302  # the right password did not sign in
    response = client.post(
        reverse("login") + "?next=/admin/", {"username": "root", "password": "root-password"}
    )
    assert response.status_code == 429


# --- logs -----------------------------------------------------------------------------


def test_json_logs_are_one_object_a_line_with_the_run_and_variant(capsys):
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("tests.structured")
    logger.addHandler(handler)
    try:
        with log_context(run_id=41):
            logger.warning("variant %s failed", 9, extra={"variant_id": 9})
    finally:
        logger.removeHandler(handler)
    [line] = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert (record["message"], record["run_id"], record["variant_id"]) == (
        "variant 9 failed",
        41,
        9,
    )


# --- periodic work --------------------------------------------------------------------


def test_every_beat_entry_names_a_registered_task():
    from hyperpers.celery import app

    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry["task"]


def test_a_run_that_stopped_moving_gets_its_drains_again(monkeypatch):
    from generation import services, tasks

    started = []
    monkeypatch.setattr(tasks.run_drain, "delay", started.append)
    an_hour_ago = timezone.now() - timezone.timedelta(hours=1)
    stuck_run = _run(started_at=an_hour_ago)
    moving_run = _run(started_at=an_hour_ago)
    done_run = _run(started_at=an_hour_ago)
    for run, status, updated in [
        (stuck_run, Variant.Status.QUEUED, an_hour_ago),
        (moving_run, Variant.Status.QUEUED, timezone.now()),
        (done_run, Variant.Status.IN_REVIEW, an_hour_ago),
    ]:
        variant = VariantFactory(run=run, status=status)
        Variant.objects.filter(pk=variant.pk).update(updated=updated)

    assert services.runs_revive_stuck(idle_seconds=600) == [stuck_run.pk]
    assert started == [stuck_run.pk] * settings.GENERATION_TASKS_PER_RUN


def _run(*, started_at) -> GenerationRun:
    from tests.factories import PromptVersionFactory

    return GenerationRun.objects.create(
        prompt_version=PromptVersionFactory(),
        status=GenerationRun.Status.RUNNING,
        started=started_at,
        total=1,
    )
