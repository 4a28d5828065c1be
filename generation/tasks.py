"""Celery tasks: thin, JSON arguments (ids), safe to run twice. Logic is in services
and the engine; a task's id is its claim on the variants it generates."""

from __future__ import annotations

from typing import TypedDict

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from generation import callbacks, engine, imports, services

HANDOVER_RETRY = {"max_retries": 40, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 2}


class _Retry(TypedDict):
    """shared_task's retry options, as a type: each is checked where it is spread."""

    autoretry_for: tuple[type[Exception], ...]
    retry_backoff: int
    retry_backoff_max: int
    retry_jitter: bool
    max_retries: int


# The database went away under a task (a failover, a restart, a dropped connection):
# the task runs again with the same id, so it takes back the variants it had claimed;
# Celery's Django fix-up opens a fresh connection for it.
DATABASE_RETRY: _Retry = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 10,
}


@shared_task(**DATABASE_RETRY)
def run_start(run_id: int) -> int:
    """Fan a run out to its drain tasks, which any worker on any machine may take, then
    queue the rest of its slots while they write the first ones."""
    tasks = services.run_dispatch(run_id=run_id)
    for _ in range(tasks):
        run_drain.delay(run_id)
    if tasks:
        services.run_populate(run_id=run_id)
    return tasks


@shared_task(**DATABASE_RETRY)
def run_populate(run_id: int) -> int:
    """Beat's revive: queue the slots of a run whose populating stopped half-way."""
    return services.run_populate(run_id=run_id)


# acks_late + reject_on_worker_lost: a task whose worker is killed is delivered
# again, with the same id, and takes back the variants it had claimed.
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, **DATABASE_RETRY)
def run_drain(self, run_id: int) -> None:
    # A drain works for a bounded time (under the task time limits, and so a big run
    # moves between workers as they come and go), then hands over to a new task.
    if engine.drain_run(run_id=run_id, claim_id=self.request.id):
        # The hand-over must not be lost to a broker that is restarting: keep trying
        # for about a minute (beat's revive-stuck-runs is the net behind this).
        run_drain.apply_async(args=(run_id,), retry=True, retry_policy=HANDOVER_RETRY)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, **DATABASE_RETRY)
def generate_variants(self, variant_ids: list[int]) -> int:
    return engine.generate_variants(variant_ids=variant_ids, claim_id=self.request.id)


# A callback the caller's server did not take is tried again: after 10 s, 20 s, 40 s...
# up to 6 times; a 4xx other than 429 is an answer, not a failure, and is not retried.
@shared_task(
    bind=True,
    autoretry_for=(callbacks.CallbackFailed,),
    retry_backoff=10,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=6,
)
def message_callback(self, variant_id: int, status: str) -> int | None:
    return callbacks.message_callback_send(variant_id=variant_id)


@shared_task
def runs_revive_stuck() -> list[int]:
    """Beat: restart the drains of runs that stopped moving (see the service)."""
    return services.runs_revive_stuck()


@shared_task
def segments_refresh() -> int:
    """Beat: count every segment's members and summarise them again (imports do this
    too; this catches customers written by other means, such as the admin)."""
    return services.segments_refresh()


# acks_late: a message the broker hands out again while the import still runs (past
# the visibility timeout) finds the import's row locked and leaves it. Not
# reject_on_worker_lost: an import killed at its hard time limit would only be killed
# again; beat's imports_requeue_stale marks it failed instead.
@shared_task(
    bind=True,
    acks_late=True,
    time_limit=settings.IMPORT_TIME_LIMIT,
    soft_time_limit=max(settings.IMPORT_TIME_LIMIT - 30, 1),
    **DATABASE_RETRY,
)
def import_run(self, import_id: int) -> str:
    record = imports.execute(import_id=import_id, claim=self.request.id or "")
    return record.status if record is not None else "missing"


@shared_task
def imports_requeue_stale() -> dict:
    """Beat: queue again the imports whose task was lost before a worker took it, and
    fail those whose worker was killed outright."""
    return {"requeued": imports.requeue_stale(), "failed": imports.fail_abandoned()}
