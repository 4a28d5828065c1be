"""Celery tasks of the review side: thin, JSON arguments, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from generation.errors import ServiceError
from generation.models import Prompt
from review import metrics
from review.models import Experiment
from review.services import experiments

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


@shared_task
def experiments_reweigh() -> int:
    """Beat, every minute: review each running experiment whose cadence is due
    (experiments.experiment_review: analyse, pause losers, propose or promote a winner,
    recompute a bandit's shares); return how many were reviewed. Safe to run twice: an
    experiment is locked while reviewed, and one analysed a moment ago is not due."""
    now = timezone.now()
    reviewed = 0
    for experiment in Experiment.objects.filter(status=Experiment.Status.RUNNING).order_by("pk"):
        if not experiments.experiment_due(experiment, now):
            continue
        try:
            result = experiments.experiment_review(experiment=experiment, now=now)
        except ServiceError as exc:  # stopped meanwhile, by a lead or another worker
            logger.info("experiment %s not reviewed: %s", experiment.pk, exc.message)
            continue
        except Exception:
            # One broken experiment must not keep the others from their decisions.
            logger.exception("experiment %s: review failed", experiment.pk)
            continue
        reviewed += result.due
    return reviewed
