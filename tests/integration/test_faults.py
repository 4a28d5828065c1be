"""Faults through real parts: a worker killed with SIGKILL mid-run, two workers on one
run, Redis unreachable from the web process."""

import os
import signal
import time

import pytest

from generation import services
from generation.models import GenerationRun, Variant
from tests.conftest import configure_writer
from tests.factories import ProductFactory, PromptVersionFactory, SegmentFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WORKER_ENV = {
    "GENERATION_THREADS_PER_TASK": 4,
    "GENERATION_TASKS_PER_RUN": 2,
    # Unacknowledged tasks of a vanished worker are delivered again after this.
    "CELERY_VISIBILITY_TIMEOUT": 5,
}


def _wait(run, condition, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if condition(run):
            return run
        time.sleep(0.2)
    pytest.fail(f"timed out: run {run.pk} {run.status} {run.succeeded}+{run.failed}/{run.total}")


def _run_of_60(offline_writer) -> GenerationRun:
    """12 products × 5 segments, the writer answering in 400 ms, its counters at 0.

    Slow enough that a fault lands mid-run on a quiet machine too: at 100 ms, 8 calls
    in flight wrote all 60 slots in under a second, and the Redis restart came after
    the last one (CI, 15 <= at_stop < 60 failed with 60)."""
    configure_writer(offline_writer, latency_ms=400)
    version = PromptVersionFactory()
    run = services.run_create(
        prompt=version.prompt,
        products=ProductFactory.create_batch(12),
        segments=SegmentFactory.create_batch(5),
    )
    offline_writer.reset()  # after the endpoint check's probe: count the slots' calls only
    return run


def _assert_every_slot_written(run: GenerationRun) -> None:
    """60 distinct slots hold written copy: text from the model, a generated time, no
    claim left (the variant rows exist from run_create on, so counting them proves
    nothing; counting the slots written does)."""
    variants = Variant.objects.filter(run=run)
    assert (run.total, run.succeeded, run.failed) == (60, 60, 0)
    written = variants.exclude(text="").filter(generated__isnull=False, claim="")
    assert written.values("product", "segment", "language").distinct().count() == 60
    assert set(variants.values_list("status", flat=True)) == {Variant.Status.IN_REVIEW}


def test_a_run_survives_a_worker_killed_mid_run(start_worker, offline_writer, capsys):
    run = _run_of_60(offline_writer)
    worker = start_worker("doomed", **WORKER_ENV)
    _wait(run, lambda r: r.succeeded >= 10)

    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    run.refresh_from_db()
    at_kill = (run.succeeded, Variant.objects.filter(run=run, status="generating").count())
    assert run.status == GenerationRun.Status.RUNNING and run.succeeded < run.total
    assert at_kill[1] > 0, "nothing was in flight at the kill: the test proves nothing"

    start_worker("rescuer", **WORKER_ENV)
    run = _wait(run, lambda r: r.status == GenerationRun.Status.FINISHED)

    _assert_every_slot_written(run)
    completions = offline_writer.stats()["completed"]
    # Every slot called once, plus at most the calls of the slots held at the kill.
    assert 60 <= completions <= 60 + at_kill[1]
    with capsys.disabled():
        print(
            f"\nSIGKILL mid-run: {at_kill[0]} written and {at_kill[1]} being written at the "
            f"kill; after restart {run.succeeded}/{run.total} written, {completions} "
            f"completions served (calls in flight at the kill were made again)"
        )


def test_two_workers_on_one_run_never_write_a_slot_twice(start_worker, offline_writer, capsys):
    configure_writer(offline_writer, latency_ms=50)
    version = PromptVersionFactory()
    run = services.run_create(
        prompt=version.prompt,
        products=ProductFactory.create_batch(10),
        segments=SegmentFactory.create_batch(6),
    )
    offline_writer.reset()  # after the endpoint check's probe: count the slots' calls only
    start_worker("alpha", **WORKER_ENV)
    start_worker("beta", **WORKER_ENV)
    run = _wait(run, lambda r: r.status == GenerationRun.Status.FINISHED)

    variants = Variant.objects.filter(run=run)
    assert (run.total, run.succeeded, run.failed) == (60, 60, 0)
    assert variants.count() == 60
    # Each slot was written by exactly one call: no claim was taken twice.
    completions = offline_writer.stats()["completed"]
    assert completions == 60
    with capsys.disabled():
        print(f"\ntwo workers, one run: 60 slots, {variants.count()} variants, {completions} calls")


@pytest.fixture
def redis_unreachable(settings, monkeypatch):
    """Every Redis client of the web process pointed at a port nobody listens on."""
    import redis

    from review import delivery

    dead_url = "redis://127.0.0.1:1/0"
    settings.REDIS_URL = dead_url
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": dead_url}
    }
    # (Django drops its cache connections when CACHES changes.)
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setattr(delivery, "_redis", lambda: dead)
    monkeypatch.setattr(delivery, "_redis_down_until", 0.0)
    yield
    monkeypatch.setattr(delivery, "_redis_down_until", 0.0)


def test_with_redis_down_the_review_pages_and_delivery_answer_from_the_database(
    client, redis_unreachable
):
    from django.urls import reverse
    from rest_framework.test import APIClient

    from review.auth import api_token_create
    from tests.factories import UserFactory, VariantFactory

    live = VariantFactory(status=Variant.Status.PUBLISHED, text="Live while Redis is down")
    waiting = VariantFactory(prompt_version=live.prompt_version, product=live.product)
    client.force_login(UserFactory(username="cw", groups=["copywriter"]))
    for url in (
        reverse("review:queue"),
        reverse("review:variant", args=[waiting.pk]),
        reverse("review:runs"),
        reverse("review:metrics"),
    ):
        assert client.get(url).status_code == 200, url

    reader = APIClient()
    _token, key = api_token_create(name="shop", kind="read")
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    params = {"prompt": live.prompt.slug, "product": live.product.sku, "segment": live.segment.slug}
    response = reader.get("/api/v1/live/", params)
    assert response.status_code == 200 and response.json()["text"] == live.text

    client.force_login(UserFactory(username="ops", is_staff=True))  # staff see the checks
    health = client.get(reverse("health")).json()
    assert health["checks"]["redis"]["ok"] is False
    assert health["checks"]["database"]["ok"] is True


def test_a_run_completes_with_exact_counts_when_redis_restarts_mid_run(
    start_worker, offline_writer, tmp_path, monkeypatch, capsys
):
    """The workers' broker and limiter is a redis-server of this test's own, stopped
    and started again (nothing persisted) while the run is half written."""
    from hyperpers.celery import app
    from hyperpers.embedded import start_redis, stop_process

    socket = tmp_path / "redis.sock"
    broker = start_redis(socket)
    monkeypatch.setattr(services.runs, "_dispatch_on_commit", lambda run: None)
    run = _run_of_60(offline_writer)
    env = {**WORKER_ENV, "REDIS_URL": "", "EMBEDDED_REDIS_SOCKET": socket}
    start_worker("steady", **env)
    from generation.tasks import run_start

    with app.connection_for_write(f"redis+socket://{socket}") as connection:
        run_start.apply_async(args=[run.pk], connection=connection)
    try:
        _wait(run, lambda r: r.succeeded >= 15)
        stop_process(broker)
        at_stop = GenerationRun.objects.get(pk=run.pk).succeeded
        time.sleep(2)
        broker = start_redis(socket)
        run = _wait(run, lambda r: r.status == GenerationRun.Status.FINISHED, timeout=180)
    finally:
        stop_process(broker)

    _assert_every_slot_written(run)
    completions = offline_writer.stats()["completed"]
    # It stopped mid-run, and calls made twice are at most those in flight then (the
    # worker holds at most 2 tasks × 4 threads × 2 claimed a thread).
    assert 15 <= at_stop < 60
    assert 60 <= completions <= 60 + 2 * 4 * 2
    with capsys.disabled():
        print(
            f"\nRedis restarted mid-run: {at_stop} written when it stopped; after the "
            f"restart {run.succeeded}/{run.total} written, {run.failed} failed, "
            f"{completions} completions served"
        )


def test_a_run_survives_the_database_dropping_every_connection_mid_run(
    start_worker, offline_writer, capsys
):
    """PostgreSQL only: every other session of the test database is terminated, as a
    failover or a restart would, while the worker writes."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: a SQLite file cannot drop its connections")
    run = _run_of_60(offline_writer)
    start_worker("steady", **WORKER_ENV)
    _wait(run, lambda r: r.succeeded >= 15)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        [terminated] = cursor.fetchone()
    at_blip = GenerationRun.objects.get(pk=run.pk).succeeded
    run = _wait(run, lambda r: r.status == GenerationRun.Status.FINISHED, timeout=180)

    assert terminated >= 1
    _assert_every_slot_written(run)
    completions = offline_writer.stats()["completed"]
    with capsys.disabled():
        print(
            f"\ndatabase connections dropped mid-run ({terminated} sessions): {at_blip} "
            f"written at the blip; then {run.succeeded}/{run.total} written, {run.failed} "
            f"failed, {completions} completions served"
        )
