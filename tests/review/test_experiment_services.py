"""review/services/experiments.py: starting, changing and stopping an experiment on a
slot, with every refusal naming its field and changing nothing."""

import pytest

from generation.models import Variant
from review.models import Experiment, ExperimentArm, ExperimentWeights, ReviewEvent
from review.services import experiments as svc
from tests.factories import (
    PromptVersionFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def slot():
    """A slot with its published variant and two approved challengers (retired)."""
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    others = [
        VariantFactory(
            status=Variant.Status.RETIRED,
            prompt_version=PromptVersionFactory(prompt=live.prompt, number=n),
            prompt=live.prompt,
            product=live.product,
            segment=live.segment,
        )
        for n in (2, 3)
    ]
    return live, others


def _nothing_written():
    assert not Experiment.objects.exists()
    assert not ExperimentArm.objects.exists()
    assert not ExperimentWeights.objects.exists()


def test_start_splits_equally_and_keeps_the_live_variant(slot):
    live, (a, b) = slot
    lead = UserFactory()
    experiment = svc.experiment_start(variant_ids=[a.pk, b.pk], user=lead)
    keys = {arm.key for arm in experiment.arms.all()}
    assert keys == {"control", f"v{live.pk}", f"v{a.pk}", f"v{b.pk}"}
    weights = svc.weights_in_force(experiment).weights
    assert weights["control"] == pytest.approx(0.10)
    assert weights[f"v{a.pk}"] == pytest.approx(0.30)
    a.refresh_from_db(), live.refresh_from_db()
    assert a.status == Variant.Status.TESTING
    assert live.status == Variant.Status.PUBLISHED
    assert ReviewEvent.objects.filter(action=ReviewEvent.Action.EXPERIMENT_START).count() == 3


def test_shares_in_percent(slot):
    live, (a, _b) = slot
    shares = {"control": 20, f"v{live.pk}": 40, f"v{a.pk}": 40}
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None, shares=shares)
    assert svc.weights_in_force(experiment).weights["control"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    "case,field,message",
    [
        ("one arm", "variants", "two arms at least"),
        ("shares", "shares", "sum to 100%, they sum to 90%"),
        ("other slot", "variants", "another slot"),
        ("not approved", "variants", "was not approved"),
        ("unknown", "variants", "Unknown variant 999999"),
    ],
)
def test_bad_starts_name_the_field_and_write_nothing(slot, case, field, message):
    live, (a, _b) = slot
    ids, shares = [a.pk], None
    if case == "one arm":
        ids = []
    elif case == "shares":
        shares = {"control": 10, f"v{live.pk}": 40, f"v{a.pk}": 40}
    elif case == "other slot":
        ids = [a.pk, VariantFactory(status=Variant.Status.RETIRED, prompt=a.prompt).pk]
    elif case == "not approved":
        ids = [
            VariantFactory(
                prompt_version=PromptVersionFactory(prompt=a.prompt, number=9),
                prompt=a.prompt,
                product=a.product,
                segment=a.segment,
            ).pk
        ]
    elif case == "unknown":
        ids = [999999]
    with pytest.raises(svc.ExperimentError) as refused:
        svc.experiment_start(variant_ids=ids, user=None, shares=shares)
    assert refused.value.field == field
    assert message in refused.value.message
    _nothing_written()
    a.refresh_from_db()
    assert a.status == Variant.Status.RETIRED


def test_a_slot_with_nothing_live_is_refused():
    retired = VariantFactory(status=Variant.Status.RETIRED)
    with pytest.raises(svc.ExperimentError) as refused:
        svc.experiment_start(variant_ids=[retired.pk], user=None)
    assert refused.value.field == "slot"
    _nothing_written()


def test_one_running_experiment_per_slot(slot):
    _live, (a, b) = slot
    svc.experiment_start(variant_ids=[a.pk], user=None)
    with pytest.raises(svc.ExperimentRunning):
        svc.experiment_start(variant_ids=[b.pk], user=None)
    assert Experiment.objects.count() == 1


def test_add_pause_resume_and_stop_with_a_winner(slot):
    live, (a, b) = slot
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    svc.experiment_add_arm(experiment=experiment, variant=b, user=None)
    weights = svc.weights_in_force(experiment).weights
    assert set(weights) == {"control", f"v{live.pk}", f"v{a.pk}", f"v{b.pk}"}
    arm = experiment.arms.get(variant=b)
    svc.experiment_arm_pause(arm=arm, user=None, reason="worse than the control")
    assert f"v{b.pk}" not in svc.weights_in_force(experiment).weights
    svc.experiment_arm_resume(arm=arm, user=None)
    assert f"v{b.pk}" in svc.weights_in_force(experiment).weights
    svc.experiment_stop(experiment=experiment, user=None, promote=a)
    for v in (live, a, b):
        v.refresh_from_db()
    assert (live.status, a.status, b.status) == (
        Variant.Status.RETIRED,
        Variant.Status.PUBLISHED,
        Variant.Status.RETIRED,
    )
    experiment.refresh_from_db()
    assert experiment.status == Experiment.Status.STOPPED and experiment.winner == a
    assert Variant.objects.filter(status=Variant.Status.PUBLISHED).count() == 1


def test_the_control_and_the_last_variant_are_never_paused(slot):
    _live, (a, _b) = slot
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    control = experiment.arms.get(variant=None)
    with pytest.raises(svc.ExperimentError, match="control is never paused"):
        svc.experiment_arm_pause(arm=control, user=None, reason="x")
    svc.experiment_arm_pause(arm=experiment.arms.get(variant=a), user=None, reason="x")
    last = experiment.arms.exclude(variant=None).exclude(variant=a).get()
    with pytest.raises(svc.ExperimentError, match="last variant"):
        svc.experiment_arm_pause(arm=last, user=None, reason="x")
