"""Experiments' closing loop through real parts: beat's task taken by a Celery worker,
and challengers written by the worker through the offline writer over HTTP."""

import time

import pytest

from generation.models import Variant
from review import tasks
from review.models import Experiment
from review.services import experiments as svc
from tests.review.test_experiment_review import _events, _start

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _until(predicate, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    pytest.fail("timed out")


def test_beat_pauses_a_loser_and_challengers_learn_from_the_best_arm(
    celery_worker_process, offline_writer
):
    from tests.factories import PromptVersionFactory, VariantFactory

    live = VariantFactory(status=Variant.Status.PUBLISHED, text="Light enough to forget.")
    loser = VariantFactory(
        status=Variant.Status.RETIRED,
        prompt_version=PromptVersionFactory(
            prompt=live.prompt, number=live.prompt_version.number + 1
        ),
        prompt=live.prompt,
        product=live.product,
        segment=live.segment,
        text="A shoe.",
    )
    experiment = _start([live, loser], {None: 34, live: 33, loser: 33})
    _events(
        experiment,
        {"control": (3000, 300), f"v{live.pk}": (3000, 330), f"v{loser.pk}": (3000, 120)},
    )

    tasks.experiments_reweigh.delay()

    arm = experiment.arms.get(variant=loser)
    _until(lambda: Experiment.objects.filter(pk=experiment.pk, analysed__isnull=False).exists())
    arm.refresh_from_db()
    assert arm.status == arm.Status.PAUSED and "worse than the control" in arm.pause_reason

    made = svc.experiment_challengers(experiment=experiment, user=None)

    assert made.example == live
    written = _until(
        lambda: Variant.objects.filter(
            prompt_version=made.version, status=Variant.Status.IN_REVIEW
        ).first()
    )
    assert (written.product_id, written.segment_id, written.language) == (
        live.product_id,
        live.segment_id,
        live.language,
    )
    assert Variant.objects.filter(prompt_version=made.version).count() == 1
    # The writer was shown the best arm's copy as an example.
    sent = [
        m["content"]
        for r in offline_writer.requests
        for m in (r.get("body") or {}).get("messages", [])
    ]
    assert any("<examples>" in c and "Light enough to forget." in c for c in sent)
    made.run.refresh_from_db()
    assert made.run.status == "finished" and made.run.total == 1
