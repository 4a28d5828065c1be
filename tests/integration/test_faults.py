"""Faults through real parts: a worker killed with SIGKILL mid-run."""

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


def test_a_run_survives_a_worker_killed_mid_run(start_worker, offline_writer, capsys):
    configure_writer(offline_writer, latency_ms=100)
    version = PromptVersionFactory()
    run = services.run_create(
        prompt=version.prompt,
        products=ProductFactory.create_batch(12),
        segments=SegmentFactory.create_batch(5),
    )
    worker = start_worker("doomed", **WORKER_ENV)
    _wait(run, lambda r: r.succeeded >= 10)

    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    run.refresh_from_db()
    at_kill = (run.succeeded, Variant.objects.filter(run=run, status="generating").count())
    assert run.status == GenerationRun.Status.RUNNING and run.succeeded < run.total

    start_worker("rescuer", **WORKER_ENV)
    run = _wait(run, lambda r: r.status == GenerationRun.Status.FINISHED)

    variants = Variant.objects.filter(run=run)
    assert (run.total, run.succeeded, run.failed) == (60, 60, 0)
    assert variants.count() == 60
    assert set(variants.values_list("status", flat=True)) == {Variant.Status.IN_REVIEW}
    completions = offline_writer.stats()["completed"]
    with capsys.disabled():
        print(
            f"\nSIGKILL mid-run: {at_kill[0]} written and {at_kill[1]} being written at the "
            f"kill; after restart {run.succeeded}/{run.total} written, {completions} "
            f"completions served (calls in flight at the kill were made again)"
        )
