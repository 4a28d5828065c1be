"""Decisions on a slot that runs an experiment: approving into it (or into a new one),
and a plain approval, which replaces the live variant and so stops the experiment.
Every step is in the audit trail."""

import pytest

from generation.models import Variant
from review.models import Experiment, ExperimentArm, ReviewEvent
from review.services import decisions
from review.services import experiments as svc
from tests.experiment_data import approved_slot
from tests.factories import PromptVersionFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db


def _in_review(live: Variant) -> Variant:
    version = PromptVersionFactory(prompt=live.prompt, number=live.prompt_version.number + 50)
    return VariantFactory(
        prompt_version=version, prompt=live.prompt, product=live.product, segment=live.segment
    )


def test_approving_into_the_running_experiment_adds_an_arm_without_publishing():
    live, (a,) = approved_slot(challengers=1)
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    fresh = _in_review(live)
    lead = UserFactory()
    joined = decisions.variant_approve_into_experiment(
        variant=fresh, user=lead, revision=fresh.revision
    )
    assert joined == experiment
    fresh.refresh_from_db(), live.refresh_from_db()
    assert (fresh.status, live.status) == ("testing", "published")
    assert f"v{fresh.pk}" in svc.weights_in_force(experiment).weights
    trail = list(fresh.review_events.order_by("id").values_list("action", "reason", "user"))
    assert trail[0] == ("approve", f"into experiment {experiment.pk}", lead.pk)
    assert trail[1][0] == ReviewEvent.Action.EXPERIMENT_JOIN


def test_approving_into_an_experiment_starts_one_with_the_live_variant():
    live, _ = approved_slot(challengers=0)
    fresh = _in_review(live)
    experiment = decisions.variant_approve_into_experiment(variant=fresh, user=None)
    assert {a.key for a in experiment.arms.all()} == {"control", f"v{live.pk}", f"v{fresh.pk}"}
    approval = fresh.review_events.get(action="approve")
    assert approval.reason == f"into experiment {experiment.pk}"
    assert fresh.review_events.order_by("id").last().action == ReviewEvent.Action.EXPERIMENT_START


def test_a_refused_approval_into_an_experiment_leaves_the_variant_in_review():
    orphan = VariantFactory()  # in review, and nothing live in its slot
    with pytest.raises(svc.ExperimentError) as refused:
        decisions.variant_approve_into_experiment(variant=orphan, user=None)
    assert refused.value.field == "slot"
    orphan.refresh_from_db()
    assert orphan.status == Variant.Status.IN_REVIEW
    assert not orphan.review_events.exists()
    assert not Experiment.objects.exists()


def test_a_stale_or_decided_variant_is_refused():
    live, (a,) = approved_slot(challengers=1)
    fresh = _in_review(live)
    with pytest.raises(decisions.StaleDecision):
        decisions.variant_approve_into_experiment(variant=fresh, user=None, revision=99)
    with pytest.raises(decisions.DecisionError, match="not in review"):
        decisions.variant_approve_into_experiment(variant=a, user=None)
    assert not Experiment.objects.exists()


def test_replacing_the_live_variant_stops_the_slots_experiment_first():
    live, (a, b) = approved_slot(challengers=2)
    experiment = svc.experiment_start(variant_ids=[a.pk, b.pk], user=None)
    fresh = _in_review(live)
    lead = UserFactory()
    decisions.variant_approve(variant=fresh, user=lead)
    experiment.refresh_from_db()
    assert experiment.status == Experiment.Status.STOPPED
    assert experiment.stop_reason == f"Replaced by variant {fresh.pk}"
    assert experiment.stopped_by == lead
    for v in (live, a, b, fresh):
        v.refresh_from_db()
    assert (live.status, a.status, b.status, fresh.status) == (
        "retired",
        "retired",
        "retired",
        "published",
    )
    assert Variant.objects.filter(status="published").count() == 1
    stops = ReviewEvent.objects.filter(action=ReviewEvent.Action.EXPERIMENT_STOP)
    assert {e.variant_id for e in stops} == {live.pk, a.pk, b.pk}
    assert live.review_events.filter(action="retire", replaced_by=fresh).exists()
    assert not ExperimentArm.objects.filter(experiment__status="running").exists()


def test_approving_with_no_experiment_on_the_slot_is_unchanged():
    live, _ = approved_slot(challengers=0)
    fresh = _in_review(live)
    decisions.variant_approve(variant=fresh, user=None)
    live.refresh_from_db()
    assert live.status == "retired"
    assert not ReviewEvent.objects.filter(action=ReviewEvent.Action.EXPERIMENT_STOP).exists()


def test_the_review_policy_leaves_copy_of_a_slot_in_an_experiment_to_people():
    """Auto-publishing a challenger would stop the experiment it was written for."""
    from generation.models import Prompt
    from review import policy

    live, (a,) = approved_slot(challengers=1)
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    Prompt.objects.filter(pk=live.prompt_id).update(review_policy="auto")
    fresh = _in_review(live)
    elsewhere = VariantFactory(prompt_version=fresh.prompt_version, prompt=live.prompt)

    assert policy.policy_apply([fresh.pk, elsewhere.pk]) == {"auto": 1, "sampled": 0, "held": 1}
    fresh.refresh_from_db(), elsewhere.refresh_from_db(), experiment.refresh_from_db()
    assert (fresh.status, elsewhere.status) == ("in_review", "published")
    assert experiment.status == Experiment.Status.RUNNING
