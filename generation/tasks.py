"""Celery tasks: thin, JSON arguments (ids), safe to run twice. Logic is in services."""

from __future__ import annotations

import random

from celery import shared_task

from generation import services
from generation.llm import TransientLLMError
from generation.models import Variant

MAX_TRANSIENT_RETRIES = 5


def backoff_seconds(retries: int, *, base: float = 2.0, cap: float = 120.0) -> float:
    """Exponential backoff with full jitter, so retrying workers do not stampede."""
    return random.uniform(0, min(cap, base * 2**retries))


@shared_task
def run_start(run_id: int) -> int:
    variant_ids = services.run_start(run_id=run_id)
    for variant_id in variant_ids:
        variant_generate.delay(variant_id)
    return len(variant_ids)


@shared_task(bind=True, max_retries=MAX_TRANSIENT_RETRIES)
def variant_generate(self, variant_id: int) -> None:
    try:
        services.variant_generate(variant_id=variant_id)
    except TransientLLMError as exc:
        if self.request.retries >= self.max_retries:
            services.variant_fail(
                variant_id=variant_id,
                reason=f"Gave up after {self.request.retries + 1} attempts: {exc}",
                from_status=Variant.Status.QUEUED,
            )
            return
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc
