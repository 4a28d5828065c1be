"""Closing the loop (review/services/experiments.py, review.tasks.experiments_reweigh):
what beat decides from an experiment's counts, the wear-out it shows, and challengers.

The counts are EngagementEvent rows built in bulk as the engagement service stores
them from e3 exposure ids: randomized, with a visitor hash, the arm and the weights.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from generation.models import GenerationRun, Variant
from review import tasks
from review.delivery import visitor_hash
from review.models import EngagementEvent, Experiment, ExperimentWeights, ReviewEvent
from review.services import experiments as svc
from tests.factories import PromptFactory, PromptVersionFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def slot():
    return experiment_slot()


def experiment_slot():
    """A slot with its published variant and two approved challengers (retired)."""
    live = VariantFactory(status=Variant.Status.PUBLISHED, text="The live copy.")
    others = [
        VariantFactory(
            status=Variant.Status.RETIRED,
            # Numbers after the live one's, whatever the factory's sequence is at.
            prompt_version=PromptVersionFactory(
                prompt=live.prompt, number=live.prompt_version.number + n
            ),
            prompt=live.prompt,
            product=live.product,
            segment=live.segment,
            text=f"Challenger {n}.",
        )
        for n in (1, 2)
    ]
    return live, others


def _start(variants, shares, **settings):
    return svc.experiment_start(
        variant_ids=[v.pk for v in variants],
        user=None,
        shares={("control" if v is None else f"v{v.pk}"): s for v, s in shares.items()},
        settings=svc.Settings(**settings),
    )


_serial = iter(range(10**9))


def _events(experiment, counts, *, occurred=None, weights=None):
    """Impressions for `visitors` distinct visitors of each arm, the first `clicks` of
    them clicking: counts = {arm key: (visitors, clicks)}."""
    weights = weights or svc.weights_in_force(experiment)
    occurred = occurred or timezone.now() - timedelta(minutes=5)
    variants = {a.key: a.variant_id for a in experiment.arms.all()}
    rows = []
    for arm, (visitors, clicks) in counts.items():
        for i in range(visitors):
            who = visitor_hash(f"{experiment.pk}-{arm}-{occurred.date()}-{i}")
            kinds = ["impression", "click"] if i < clicks else ["impression"]
            for kind in kinds:
                n = next(_serial)
                rows.append(
                    EngagementEvent(
                        event_id=f"e{n}",
                        kind=kind,
                        exposure_id=f"x{n}",
                        prompt_id=experiment.prompt_id,
                        product_id=experiment.product_id,
                        segment_id=experiment.segment_id,
                        variant_id=variants[arm],
                        occurred=occurred,
                        experiment=experiment,
                        weights=weights,
                        arm=arm,
                        probability=weights.weights[arm],
                        randomized=True,
                        visitor=who,
                    )
                )
    EngagementEvent.objects.bulk_create(rows)


def _events_of(variant, action):
    return list(ReviewEvent.objects.filter(variant=variant, action=action))


def test_a_clear_loser_is_paused_and_the_audit_trail_says_why(slot):
    live, (a, _b) = slot
    experiment = _start([live, a], {None: 34, live: 33, a: 33})
    _events(
        experiment,
        {"control": (3000, 300), f"v{live.pk}": (3000, 300), f"v{a.pk}": (3000, 120)},
    )

    review = svc.experiment_review(experiment=experiment, now=timezone.now())

    assert review.due and review.paused == (f"v{a.pk}",)
    arm = experiment.arms.get(variant=a)
    assert arm.status == arm.Status.PAUSED
    assert arm.pause_reason.startswith("worse than the control")
    (event,) = _events_of(a, ReviewEvent.Action.EXPERIMENT_PAUSE)
    assert event.user is None and event.reason == arm.pause_reason
    assert "adjusted p" in event.reason
    assert f"v{a.pk}" not in svc.weights_in_force(experiment).weights
    experiment.refresh_from_db()
    assert experiment.analysed is not None and not experiment.sample_ratio_mismatch
    assert f"v{a.pk}: loser" in experiment.analysis_note
    assert experiment.proposed is None


def test_a_loser_stays_when_automatic_pausing_is_off(slot):
    live, (a, _b) = slot
    experiment = _start([live, a], {None: 34, live: 33, a: 33}, auto_pause_losers=False)
    _events(
        experiment,
        {"control": (3000, 300), f"v{live.pk}": (3000, 300), f"v{a.pk}": (3000, 120)},
    )
    review = svc.experiment_review(experiment=experiment, now=timezone.now())
    assert review.paused == ()
    assert experiment.arms.get(variant=a).status == "active"
    experiment.refresh_from_db()
    assert "automatic pausing is off" in experiment.analysis_note


def _winning(slot, **settings):
    live, (a, _b) = slot
    experiment = _start([live, a], {None: 34, live: 33, a: 33}, **settings)
    _events(
        experiment,
        {"control": (3000, 300), f"v{live.pk}": (3000, 300), f"v{a.pk}": (3000, 450)},
    )
    return experiment, live, a


def test_a_clear_winner_is_proposed_once_and_not_promoted_without_auto_promote(slot):
    experiment, live, a = _winning(slot)
    now = timezone.now()

    first = svc.experiment_review(experiment=experiment, now=now)
    second = svc.experiment_review(experiment=experiment, now=now + timedelta(minutes=15))

    assert first.proposed == second.proposed == f"v{a.pk}"
    assert not first.promoted and not second.promoted
    (event,) = _events_of(a, ReviewEvent.Action.EXPERIMENT_WINNER)
    assert event.user is None and "better than the control" in event.reason
    experiment.refresh_from_db()
    assert experiment.is_running and experiment.proposed == a and experiment.winner is None
    a.refresh_from_db(), live.refresh_from_db()
    assert (a.status, live.status) == (Variant.Status.TESTING, Variant.Status.PUBLISHED)


def test_a_clear_winner_is_promoted_with_auto_promote(slot):
    experiment, live, a = _winning(slot, auto_promote=True)

    review = svc.experiment_review(experiment=experiment, now=timezone.now())

    assert review.promoted
    experiment.refresh_from_db()
    assert experiment.status == Experiment.Status.STOPPED and experiment.winner == a
    assert experiment.stop_reason.startswith("Promoted automatically: better than the control")
    a.refresh_from_db(), live.refresh_from_db()
    assert (a.status, live.status) == (Variant.Status.PUBLISHED, Variant.Status.RETIRED)
    assert len(_events_of(a, ReviewEvent.Action.EXPERIMENT_WINNER)) == 1
    (promoted,) = _events_of(a, ReviewEvent.Action.EXPERIMENT_PROMOTE)
    assert promoted.user is None


def test_a_sample_ratio_mismatch_blocks_every_decision_and_says_so(slot):
    live, (a, _b) = slot
    # 90/10 intended, 50/50 served; one arm a clear winner, another a clear loser.
    experiment = _start(
        [live, a], {None: 10, live: 45, a: 45}, auto_promote=True, allocation="thompson"
    )
    _events(
        experiment,
        {"control": (3000, 300), f"v{live.pk}": (3000, 450), f"v{a.pk}": (3000, 120)},
    )
    before = ExperimentWeights.objects.count()

    review = svc.experiment_review(experiment=experiment, now=timezone.now())

    assert review.mismatch and not review.paused and not review.proposed
    assert not review.promoted and not review.reweighed
    experiment.refresh_from_db()
    assert experiment.is_running and experiment.sample_ratio_mismatch
    assert experiment.analysis_note.startswith("Automatic decisions blocked")
    assert "control 33.3%" in experiment.analysis_note
    assert "control 10.0%" in experiment.analysis_note
    assert experiment.proposed is None
    assert not experiment.arms.filter(status="paused").exists()
    assert ExperimentWeights.objects.count() == before
    assert not ReviewEvent.objects.filter(
        action__in=["exp_pause", "exp_winner", "exp_promote"]
    ).exists()


def test_thompson_reweigh_keeps_the_floor_and_the_control_share(slot):
    live, (a, b) = slot
    experiment = _start(
        [live, a, b],
        {None: 10, live: 30, a: 30, b: 30},
        allocation="thompson",
        floor=0.05,
    )
    _events(
        experiment,
        {
            "control": (100, 10),
            f"v{live.pk}": (300, 30),
            f"v{a.pk}": (300, 45),
            f"v{b.pk}": (300, 15),
        },
    )
    now = timezone.now()

    review = svc.experiment_review(experiment=experiment, now=now)

    assert review.reweighed and not review.paused and not review.proposed
    row = svc.weights_in_force(experiment)
    assert row.reason == "reweigh"
    shares = row.weights
    assert shares["control"] == pytest.approx(0.10)
    assert sum(shares.values()) == pytest.approx(1)
    assert min(shares[f"v{v.pk}"] for v in (live, a, b)) >= 0.05 - 1e-9
    assert shares[f"v{a.pk}"] > shares[f"v{live.pk}"] > shares[f"v{b.pk}"]
    assert shares[f"v{b.pk}"] == pytest.approx(0.05, abs=0.01)

    # Nothing new since: the shares would not move, so no row is written again.
    again = svc.experiment_review(experiment=experiment, now=now + timedelta(minutes=15))
    assert again.due and not again.reweighed
    assert experiment.weights.count() == 2


def test_the_cadence_is_respected(slot):
    live, (a, _b) = slot
    experiment = _start([live, a], {None: 10, live: 45, a: 45}, cadence_minutes=15)
    now = timezone.now()
    assert svc.experiment_review(experiment=experiment, now=now).due
    assert not svc.experiment_review(experiment=experiment, now=now + timedelta(minutes=5)).due
    assert not svc.experiment_review(experiment=experiment, now=now + timedelta(minutes=14)).due
    later = now + timedelta(minutes=15)
    assert svc.experiment_review(experiment=experiment, now=later).due
    experiment.refresh_from_db()
    assert experiment.analysed == later
    assert experiment.analysis_note.startswith("No randomized visitor yet")


def test_a_stopped_experiment_is_not_reviewed(slot):
    live, (a, _b) = slot
    experiment = _start([live, a], {None: 10, live: 45, a: 45})
    svc.experiment_stop(experiment=experiment, user=None)
    assert not svc.experiment_review(experiment=experiment, now=timezone.now()).due
    experiment.refresh_from_db()
    assert experiment.analysed is None


def test_the_beat_task_reviews_the_due_experiments_only(slot):
    live, (a, _b) = slot
    due = _start([live, a], {None: 34, live: 33, a: 33})
    _events(due, {"control": (3000, 300), f"v{live.pk}": (3000, 300), f"v{a.pk}": (3000, 120)})
    other = VariantFactory(status=Variant.Status.PUBLISHED)
    fresh = svc.experiment_start(variant_ids=[other.pk], user=None)
    Experiment.objects.filter(pk=fresh.pk).update(analysed=timezone.now())

    assert tasks.experiments_reweigh() == 1
    assert due.arms.get(variant=a).status == "paused"
    assert tasks.experiments_reweigh() == 0  # a cadence has not passed since


# --- wear-out --------------------------------------------------------------------------


def test_wear_out_finds_an_arm_falling_against_the_control(slot):
    live, (a, _b) = slot
    experiment = _start([live, a], {None: 34, live: 33, a: 33})
    today = timezone.now().astimezone(UTC).date()
    Experiment.objects.filter(pk=experiment.pk).update(started=timezone.now() - timedelta(days=40))
    experiment.refresh_from_db()
    for ago in range(31):  # the first 3 days are outside the 28-day window
        day = datetime.combine(today - timedelta(days=ago), datetime.min.time(), tzinfo=UTC)
        falling = 14 + ago  # a's clicks fall as time goes on; the live copy's hold
        _events(
            experiment,
            {"control": (200, 20), f"v{live.pk}": (200, 20), f"v{a.pk}": (200, falling)},
            occurred=day + timedelta(hours=12),
        )

    wear = svc.experiment_wear_out(experiment)

    assert set(wear) == {f"v{live.pk}", f"v{a.pk}"}
    assert wear[f"v{a.pk}"].days == 28
    assert wear[f"v{a.pk}"].wearing_out and wear[f"v{a.pk}"].trend < 0
    assert not wear[f"v{live.pk}"].wearing_out
    assert wear[f"v{live.pk}"].trend == pytest.approx(0, abs=1e-9)


def test_wear_out_waits_for_a_week_of_days(slot):
    live, (a, _b) = slot
    experiment = _start([live, a], {None: 34, live: 33, a: 33})
    _events(experiment, {"control": (300, 30), f"v{a.pk}": (300, 10)})
    wear = svc.experiment_wear_out(experiment)[f"v{a.pk}"]
    assert wear.days == 1 and wear.trend is None and not wear.wearing_out


# --- challengers -----------------------------------------------------------------------


def test_challengers_write_one_version_and_one_run_over_exactly_one_slot(slot, offline_writer):
    experiment, live, a = _winning(slot)
    svc.experiment_review(experiment=experiment, now=timezone.now())  # proposes a
    prompt = live.prompt
    current = prompt.current_version
    elsewhere = VariantFactory(  # another slot of the prompt, still in review
        prompt=prompt, prompt_version=current, status=Variant.Status.IN_REVIEW
    )
    lead = UserFactory()
    versions, runs = prompt.versions.count(), GenerationRun.objects.count()

    made = svc.experiment_challengers(experiment=experiment, user=lead)

    assert prompt.versions.count() == versions + 1
    assert GenerationRun.objects.count() == runs + 1
    version = made.version
    assert prompt.current_version == version and made.example == a
    assert version.examples[0] == a.text
    assert (version.template, version.model) == (current.template, current.model)
    assert version.author == lead
    queued = list(Variant.objects.filter(prompt_version=version))
    assert made.run.total == 1 and [v.run_id for v in queued] == [made.run.pk]
    (challenger,) = queued
    assert (challenger.product_id, challenger.segment_id, challenger.language) == (
        a.product_id,
        a.segment_id,
        a.language,
    )
    assert challenger.status == Variant.Status.QUEUED
    # Saving the version regenerated nothing else: the other slot is as it was.
    elsewhere.refresh_from_db()
    assert elsewhere.status == Variant.Status.IN_REVIEW


def test_challengers_from_a_variant_keep_the_other_examples(slot, offline_writer):
    live, _others = slot
    current = live.prompt.current_version
    current.examples = ["Old example one.", "Old example two."]
    current.save(update_fields=["examples"])
    made = svc.experiment_challengers(variant=live, user=None)
    assert made.version.examples == ["The live copy.", "Old example one.", "Old example two."]
    assert made.run.total == 1


def _nothing_made(prompt, versions):
    assert prompt.versions.count() == versions
    assert not GenerationRun.objects.exists()


def test_challengers_for_a_stopped_experiment_are_refused(slot, offline_writer):
    live, (a, _b) = slot
    experiment = _start([live, a], {None: 10, live: 45, a: 45})
    svc.experiment_stop(experiment=experiment, user=None)
    versions = live.prompt.versions.count()
    with pytest.raises(svc.ExperimentError) as refused:
        svc.experiment_challengers(experiment=experiment, user=None)
    assert refused.value.field == "experiment" and "has stopped" in refused.value.message
    _nothing_made(live.prompt, versions)


def test_challengers_for_a_prompt_without_a_version_are_refused(offline_writer):
    # A variant kept from a prompt whose versions are gone (an imported decision,
    # a prompt recreated under the same slug): nothing to write a new version from.
    prompt = PromptFactory()
    variant = VariantFactory(prompt=prompt, status=Variant.Status.PUBLISHED)
    with pytest.raises(svc.ExperimentError) as refused:
        svc.experiment_challengers(variant=variant, user=None)
    assert refused.value.field == "prompt" and "no version" in refused.value.message
    _nothing_made(prompt, 0)


def test_challengers_wait_for_a_run_still_writing(slot, offline_writer):
    live, _others = slot
    GenerationRun.objects.create(prompt_version=live.prompt_version)
    versions = live.prompt.versions.count()
    with pytest.raises(svc.ExperimentError) as refused:
        svc.experiment_challengers(variant=live, user=None)
    assert refused.value.field == "prompt" and "still writing" in refused.value.message
    assert live.prompt.versions.count() == versions
    assert GenerationRun.objects.count() == 1


def test_challengers_need_approved_copy(slot, offline_writer):
    live, _others = slot
    draft = VariantFactory(
        prompt=live.prompt,
        prompt_version=live.prompt_version,
        product=live.product,
        segment=live.segment,
        language="de",
    )
    with pytest.raises(svc.ExperimentError) as refused:
        svc.experiment_challengers(variant=draft, user=None)
    assert refused.value.field == "variant" and "not approved" in refused.value.message
