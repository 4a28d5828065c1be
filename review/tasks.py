"""Celery tasks of the review side: thin, JSON arguments, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task

from generation.models import Prompt
from review import metrics

logger = logging.getLogger(__name__)


@shared_task
def flag_underperformers(prompt_id: int | None = None) -> int:
    """Flag the variants doing significantly worse than the base copy (all prompts by
    default); return how many are flagged. Schedule it with Celery beat, or run the
    `flag_underperformers` command from cron."""
    prompt = None
    if prompt_id is not None:
        prompt = Prompt.objects.filter(pk=prompt_id).first()
        if prompt is None:
            logger.info("flag_underperformers: prompt %s is gone; nothing to do", prompt_id)
            return 0
    return metrics.metrics_flag_underperformers(prompt=prompt)
