"""Experiments on a slot: start, add an arm, pause or resume one, stop (promoting a
winner or not), and the counts the statistics read.

A slot (prompt, product, segment, language) runs at most one experiment. Its arms are
the control (the base copy) and approved variants of the slot: the published one,
which requests without a visitor keep getting, and challengers approved into the
experiment (status `testing`). Every change writes the audit trail (ReviewEvent),
stores the shares in force (ExperimentWeights) and tells the live path
(delivery.live_changed), all in one transaction.

The arithmetic is review.experiments (pure functions); this module reads and writes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from generation.errors import Conflict, ServiceError
from generation.models import GenerationRun, PromptVersion, Variant
from generation.prompting import PromptTemplateError
from generation.services.prompts import EXAMPLES_MAX, prompt_examples, prompt_version_create
from generation.services.runs import endpoint_check, run_create
from review import delivery
from review.experiments import allocation, stats
from review.experiments.allocation import DEFAULT_CONTROL_SHARE, DEFAULT_FLOOR
from review.models import (
    EngagementEvent,
    Experiment,
    ExperimentArm,
    ExperimentWeights,
    ReviewEvent,
    arm_key,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Variants that a person approved, and so may serve in an experiment.
APPROVED = (Variant.Status.PUBLISHED, Variant.Status.TESTING, Variant.Status.RETIRED)


class ExperimentError(ServiceError):
    """An experiment that cannot be started or changed as asked (HTTP 400)."""

    default_field: ClassVar[str | None] = "variants"


class ExperimentRunning(Conflict):
    """The slot already runs an experiment (HTTP 409)."""


@dataclass(frozen=True)
class Settings:
    """How an experiment allocates and decides; the model's defaults unless given."""

    allocation: str = Experiment.Allocation.FIXED
    metric: str = Experiment.Metric.CLICK
    correction: str = Experiment.Correction.HOLM
    control_share: float = DEFAULT_CONTROL_SHARE
    floor: float = DEFAULT_FLOOR
    cadence_minutes: int = 15
    min_exposures: int = stats.DEFAULT_MIN_EXPOSURES
    auto_pause_losers: bool = True
    auto_promote: bool = False


def _slot_key(variant: Variant) -> tuple[int, int, int | None, str]:
    return (variant.prompt_id, variant.product_id, variant.segment_id, variant.language)


def slot_variants(variant: Variant) -> list[Variant]:
    """The approved variants of `variant`'s slot (itself included if approved), the
    published one first: the candidates for an experiment's arms."""
    return sorted(
        Variant.objects.filter(
            prompt_id=variant.prompt_id,
            product_id=variant.product_id,
            segment=variant.segment_id,
            language=variant.language,
            customer__isnull=True,
            status__in=APPROVED,
        ).select_related("prompt_version"),
        key=lambda v: (v.status != Variant.Status.PUBLISHED, -v.pk),
    )


def running_for(variant: Variant) -> Experiment | None:
    """The experiment running on `variant`'s slot, if any."""
    if variant.segment_id is None:
        return None
    return Experiment.objects.filter(
        prompt_id=variant.prompt_id,
        product_id=variant.product_id,
        segment_id=variant.segment_id,
        language=variant.language,
        status=Experiment.Status.RUNNING,
    ).first()


def _settings_check(settings: Settings) -> None:
    if settings.allocation not in Experiment.Allocation.values:
        raise ExperimentError(f"Unknown allocation '{settings.allocation}'", field="allocation")
    if settings.metric not in Experiment.Metric.values:
        raise ExperimentError(f"Unknown metric '{settings.metric}'", field="metric")
    if settings.correction not in Experiment.Correction.values:
        raise ExperimentError(f"Unknown correction '{settings.correction}'", field="correction")
    if not 0 < settings.control_share < 1:
        raise ExperimentError(
            "The control's share must be between 0% and 100%, both excluded: without a "
            "control nothing is measured",
            field="control_share",
        )
    if not 0 <= settings.floor < 0.5:
        raise ExperimentError("The floor must be between 0% and 50%", field="floor")
    if not 1 <= settings.cadence_minutes <= 7 * 24 * 60:
        raise ExperimentError("The cadence must be 1 minute to 7 days", field="cadence_minutes")
    if not 1 <= settings.min_exposures <= 10_000_000:
        raise ExperimentError(
            "The minimum sample must be 1 to 10,000,000 visitors", field="min_exposures"
        )


def _shares_check(shares: Mapping[str, Any], arms: Iterable[str]) -> dict[str, float]:
    """Shares given as fractions or percentages by arm key, checked: every arm and
    nothing else, numbers, summing to 100%."""
    wanted = set(arms)
    given = set(shares)
    if given != wanted:
        missing, extra = sorted(wanted - given), sorted(given - wanted)
        parts = []
        if missing:
            parts.append("no share for " + ", ".join(missing))
        if extra:
            parts.append("shares for arms not in the experiment: " + ", ".join(extra))
        raise ExperimentError("; ".join(parts).capitalize(), field="shares")
    out: dict[str, float] = {}
    for arm, value in shares.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ExperimentError(
                f"The share of {arm} is not a number: {value!r}", field="shares"
            ) from None
        if not math.isfinite(number) or number < 0:
            raise ExperimentError(f"The share of {arm} must be 0 or more", field="shares")
        out[arm] = number
    total = math.fsum(out.values())
    if total > 1 + allocation.SHARE_TOLERANCE:  # percentages
        out = {arm: value / 100 for arm, value in out.items()}
        total = math.fsum(out.values())
    if abs(total - 1) > 1e-4:
        raise ExperimentError(
            f"Shares must sum to 100%, they sum to {total * 100:.4g}%", field="shares"
        )
    if out[allocation.CONTROL] <= 0:
        raise ExperimentError("The control needs a share above 0%", field="shares")
    out = {arm: value / total for arm, value in out.items()}
    try:
        return allocation.shares_check(out)
    except ValueError as exc:
        raise ExperimentError(str(exc), field="shares") from None


def _event(variant: Variant, user: User | None, action: str, reason: str) -> None:
    ReviewEvent.objects.create(variant=variant, user=user, action=action, reason=reason)


def _weights_write(
    experiment: Experiment, weights: dict[str, float], reason: str
) -> ExperimentWeights:
    row = ExperimentWeights.objects.create(experiment=experiment, weights=weights, reason=reason)
    delivery.live_changed(
        prompt_id=experiment.prompt_id,
        segment_id=experiment.segment_id,
        product_id=experiment.product_id,
    )
    return row


def weights_in_force(experiment: Experiment) -> ExperimentWeights:
    return experiment.weights.latest()


@transaction.atomic
def experiment_start(
    *,
    variant_ids: list[int],
    user: User | None,
    settings: Settings | None = None,
    shares: Mapping[str, Any] | None = None,
) -> Experiment:
    """Start an experiment on the slot of `variant_ids` (approved variants of one
    segment slot), with the base copy as the control.

    1. The variants exist, are approved (published, retired, or in an experiment),
       and share one slot, whose published variant joins as an arm whether listed or
       not: requests without a visitor keep getting it.
    2. Two arms at least (the control and a variant), at most MAX_ARMS variants.
    3. Shares: as given (by arm key, fractions or percentages summing to 100%), else
       the control's share and the rest split equally; a bandit starts equal too.
    4. No experiment runs on the slot already (409).
    Challengers (variants not published) become `testing`; every arm's variant gets
    an audit event.
    """
    settings = settings or Settings()
    _settings_check(settings)
    ids = list(dict.fromkeys(variant_ids))
    if not ids:
        raise ExperimentError(
            "An experiment needs two arms at least: the control (the base copy) and one "
            "approved variant or more"
        )
    found = {v.pk: v for v in Variant.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
    unknown = [str(pk) for pk in ids if pk not in found]
    if unknown:
        raise ExperimentError("Unknown variant " + ", ".join(unknown))
    variants = [found[pk] for pk in ids]
    first = variants[0]
    if first.segment_id is None:
        raise ExperimentError(
            f"Variant {first.pk} is a customer's own message: experiments run on a segment's slot"
        )
    for variant in variants[1:]:
        if _slot_key(variant) != _slot_key(first):
            raise ExperimentError(
                f"Variant {variant.pk} is copy of another slot than variant {first.pk} "
                "(prompt, product, segment and language must all match)"
            )
    for variant in variants:
        if variant.status not in APPROVED:
            raise ExperimentError(
                f"Variant {variant.pk} was not approved (it is "
                f"{variant.get_status_display().lower()}): only approved copy is served"
            )
    published = [v for v in slot_variants(first) if v.status == Variant.Status.PUBLISHED]
    if not published:
        raise ExperimentError(
            "This slot has no approved variant live: approve one first; requests without "
            "a visitor are served the live variant",
            field="slot",
        )
    incumbent = Variant.objects.select_for_update().get(pk=published[0].pk)
    if incumbent.pk not in found:
        variants.insert(0, incumbent)
    if len(variants) > allocation.MAX_ARMS:
        raise ExperimentError(
            f"At most {allocation.MAX_ARMS} variants besides the control; got {len(variants)}"
        )
    keys = [allocation.CONTROL, *(arm_key(v.pk) for v in variants)]
    if shares is not None:
        weights = _shares_check(shares, keys)
    else:
        weights = allocation.equal_split(arms=keys[1:], control_share=settings.control_share)
    experiment = Experiment(
        prompt_id=first.prompt_id,
        product_id=first.product_id,
        segment_id=first.segment_id,
        language=first.language,
        started_by=user,
        allocation=settings.allocation,
        metric=settings.metric,
        correction=settings.correction,
        control_share=weights[allocation.CONTROL],
        floor=settings.floor,
        cadence_minutes=settings.cadence_minutes,
        min_exposures=settings.min_exposures,
        auto_pause_losers=settings.auto_pause_losers,
        auto_promote=settings.auto_promote,
    )
    try:
        with transaction.atomic():
            experiment.save()
    except IntegrityError:
        raise ExperimentRunning(
            "An experiment already runs on this slot: add the variant to it, or stop it first",
            field="slot",
        ) from None
    ExperimentArm.objects.create(experiment=experiment, variant=None)
    for variant in variants:
        ExperimentArm.objects.create(experiment=experiment, variant=variant)
        if variant.status != Variant.Status.PUBLISHED:
            variant.status = Variant.Status.TESTING
            variant.revision += 1
            variant.save(update_fields=["status", "revision", "updated"])
        _event(
            variant,
            user,
            ReviewEvent.Action.EXPERIMENT_START,
            f"Experiment {experiment.pk}: {len(variants) + 1} arms, "
            f"{weights[arm_key(variant.pk)]:.0%} of the traffic",
        )
    _weights_write(experiment, weights, "start")
    return experiment


def _active_arms(experiment: Experiment) -> list[ExperimentArm]:
    return list(experiment.arms.filter(status=ExperimentArm.Status.ACTIVE).order_by("id"))


def _resplit(experiment: Experiment, reason: str) -> ExperimentWeights:
    """New shares over the active arms: a fixed split keeps the control's share and
    splits the rest equally; a bandit recomputes from the counts so far."""
    arms = [a.key for a in _active_arms(experiment) if not a.is_control]
    if experiment.allocation == Experiment.Allocation.THOMPSON:
        counts = experiment_counts(experiment)
        weights = allocation.thompson_weights(
            arms=[counts.arms.get(k) or stats.ArmCounts(k, 0, 0) for k in arms],
            control_share=experiment.control_share,
            floor=min(experiment.floor, (1 - experiment.control_share) / len(arms)),
        )
    else:
        weights = allocation.equal_split(arms=arms, control_share=experiment.control_share)
    return _weights_write(experiment, weights, reason)


def _lock_running(experiment: Experiment) -> Experiment:
    locked: Experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if not locked.is_running:
        raise ExperimentError(f"Experiment {locked.pk} has stopped", field="experiment")
    return locked


@transaction.atomic
def experiment_add_arm(
    *, experiment: Experiment, variant: Variant, user: User | None
) -> ExperimentArm:
    """Serve an approved (or just approved) variant of the slot as one more arm."""
    experiment = _lock_running(experiment)
    variant = Variant.objects.select_for_update().get(pk=variant.pk)
    slot = (experiment.prompt_id, experiment.product_id, experiment.segment_id, experiment.language)
    if _slot_key(variant) != slot:
        raise ExperimentError(
            f"Variant {variant.pk} is copy of another slot than experiment {experiment.pk}"
        )
    if variant.status not in APPROVED:
        raise ExperimentError(
            f"Variant {variant.pk} was not approved (it is {variant.get_status_display().lower()})"
        )
    if experiment.arms.filter(variant=variant).exists():
        raise ExperimentError(
            f"Variant {variant.pk} is an arm of experiment {experiment.pk} already"
        )
    if experiment.arms.filter(variant__isnull=False).count() >= allocation.MAX_ARMS:
        raise ExperimentError(
            f"Experiment {experiment.pk} has {allocation.MAX_ARMS} variants already"
        )
    arm = ExperimentArm.objects.create(experiment=experiment, variant=variant)
    if variant.status != Variant.Status.PUBLISHED:
        variant.status = Variant.Status.TESTING
        variant.revision += 1
        variant.save(update_fields=["status", "revision", "updated"])
    _event(variant, user, ReviewEvent.Action.EXPERIMENT_JOIN, f"Experiment {experiment.pk}")
    _resplit(experiment, f"variant {variant.pk} added")
    return arm


@transaction.atomic
def experiment_arm_pause(*, arm: ExperimentArm, user: User | None, reason: str) -> ExperimentArm:
    """Stop serving one variant of a running experiment (its visitors are spread over
    the others; nobody else moves). The control and the last variant stay."""
    experiment = _lock_running(arm.experiment)
    arm = ExperimentArm.objects.select_for_update().get(pk=arm.pk)
    if arm.is_control:
        raise ExperimentError(
            "The control is never paused: stop the experiment instead", field="arm"
        )
    if arm.status == ExperimentArm.Status.PAUSED:
        raise ExperimentError(f"{arm.key} is paused already", field="arm")
    if len([a for a in _active_arms(experiment) if not a.is_control]) <= 1:
        raise ExperimentError(
            "This is the last variant serving: stop the experiment instead", field="arm"
        )
    arm.status, arm.paused, arm.pause_reason = ExperimentArm.Status.PAUSED, timezone.now(), reason
    arm.save(update_fields=["status", "paused", "pause_reason"])
    assert arm.variant is not None
    _event(arm.variant, user, ReviewEvent.Action.EXPERIMENT_PAUSE, reason)
    _resplit(experiment, f"{arm.key} paused")
    return arm


@transaction.atomic
def experiment_arm_resume(*, arm: ExperimentArm, user: User | None) -> ExperimentArm:
    experiment = _lock_running(arm.experiment)
    arm = ExperimentArm.objects.select_for_update().get(pk=arm.pk)
    if arm.status != ExperimentArm.Status.PAUSED or arm.variant is None:
        raise ExperimentError(f"{arm.key} is not paused", field="arm")
    arm.status, arm.paused, arm.pause_reason = ExperimentArm.Status.ACTIVE, None, ""
    arm.save(update_fields=["status", "paused", "pause_reason"])
    _event(arm.variant, user, ReviewEvent.Action.EXPERIMENT_RESUME, f"Experiment {experiment.pk}")
    _resplit(experiment, f"{arm.key} resumed")
    return arm


@transaction.atomic
def experiment_stop(
    *,
    experiment: Experiment,
    user: User | None,
    reason: str = "",
    promote: Variant | None = None,
) -> Experiment:
    """Stop an experiment. `promote` (one of its variants) becomes the slot's published
    variant, retiring the one before; the other challengers are retired; the
    published one stays live unless replaced. Live copy is the slot's published
    variant again for everyone."""
    experiment = _lock_running(experiment)
    arms = list(experiment.arms.select_related("variant"))
    by_variant = {a.variant_id: a for a in arms if a.variant_id is not None}
    if promote is not None and promote.pk not in by_variant:
        raise ExperimentError(
            f"Variant {promote.pk} is not an arm of experiment {experiment.pk}", field="promote"
        )
    now = timezone.now()
    experiment.status, experiment.stopped, experiment.stopped_by = (
        Experiment.Status.STOPPED,
        now,
        user,
    )
    experiment.stop_reason = reason or (
        f"Variant {promote.pk} promoted" if promote is not None else "Stopped"
    )
    if promote is not None:
        experiment.winner = promote
    experiment.save(update_fields=["status", "stopped", "stopped_by", "stop_reason", "winner"])
    variants = Variant.objects.select_for_update().filter(pk__in=by_variant).order_by("pk")
    for variant in variants:
        if promote is not None and variant.pk == promote.pk:
            continue
        if variant.status == Variant.Status.TESTING or (
            promote is not None and variant.status == Variant.Status.PUBLISHED
        ):
            variant.status = Variant.Status.RETIRED
            variant.revision += 1
            variant.save(update_fields=["status", "revision", "updated"])
        _event(variant, user, ReviewEvent.Action.EXPERIMENT_STOP, experiment.stop_reason)
    if promote is not None:
        winner = Variant.objects.select_for_update().get(pk=promote.pk)
        if winner.status != Variant.Status.PUBLISHED:
            winner.status, winner.published = Variant.Status.PUBLISHED, now
            winner.revision += 1
            winner.save(update_fields=["status", "published", "revision", "updated"])
        _event(winner, user, ReviewEvent.Action.EXPERIMENT_PROMOTE, experiment.stop_reason)
    delivery.live_changed(
        prompt_id=experiment.prompt_id,
        segment_id=experiment.segment_id,
        product_id=experiment.product_id,
    )
    return experiment


# --- what the statistics read ---------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """An experiment's randomized visitors and successes by arm, and the shares they
    were served under (for the sample-ratio check)."""

    control: stats.ArmCounts
    arms: dict[str, stats.ArmCounts]  # variant arms by key, active or paused
    periods: list[tuple[int, dict[str, float]]]  # (visitors, shares in force)
    non_randomized: int  # impressions without a visitor, left out of the comparisons

    def served_shares(self) -> dict[str, float] | None:
        periods = [(n, w) for n, w in self.periods if n]
        return allocation.shares_served(periods=periods) if periods else None


def experiment_counts(experiment: Experiment) -> Counts:
    """Visitors shown each arm (their first exposure counts, however many page views
    follow) and visitors who then clicked or converted (`experiment.metric`), from the
    randomized events only; two queries, grouped in the database."""
    events = EngagementEvent.objects.filter(experiment=experiment, randomized=True)
    shown = dict(
        events.filter(kind=EngagementEvent.Kind.IMPRESSION)
        .values_list("arm")
        .annotate(n=Count("visitor", distinct=True))
        .values_list("arm", "n")
    )
    success = dict(
        events.filter(kind=experiment.metric)
        .values_list("arm")
        .annotate(n=Count("visitor", distinct=True))
        .values_list("arm", "n")
    )
    keys = [a.key for a in experiment.arms.all()]

    def counts(key: str) -> stats.ArmCounts:
        exposures = shown.get(key, 0)
        # A click whose impression was never posted still proves an exposure.
        successes = success.get(key, 0)
        return stats.ArmCounts(key, max(exposures, successes), successes)

    by_weights = dict(
        events.filter(kind=EngagementEvent.Kind.IMPRESSION)
        .values_list("weights")
        .annotate(n=Count("visitor", distinct=True))
        .values_list("weights", "n")
    )
    periods = [
        (by_weights.get(w.pk, 0), dict(w.weights))
        for w in experiment.weights.order_by("effective_from", "id")
    ]
    non_randomized = EngagementEvent.objects.filter(
        experiment=experiment, randomized=False, kind=EngagementEvent.Kind.IMPRESSION
    ).count()
    return Counts(
        control=counts(allocation.CONTROL),
        arms={k: counts(k) for k in keys if k != allocation.CONTROL},
        periods=periods,
        non_randomized=non_randomized,
    )


def experiment_analysis(
    experiment: Experiment, counts: Counts | None = None
) -> stats.Analysis | None:
    """The comparisons, posteriors, sample-ratio check and decisions of an experiment
    as it stands (stats.analyse), or None before any randomized visitor."""
    counts = counts or experiment_counts(experiment)
    intended = counts.served_shares()
    if intended is None or counts.control.exposures == 0:
        return None
    arms = [a for k, a in counts.arms.items() if k in intended]
    if not arms:
        return None
    keys = {allocation.CONTROL, *(a.arm for a in arms)}
    correction: stats.Correction = "fdr_bh" if experiment.correction == "fdr_bh" else "holm"
    return stats.analyse(
        control=counts.control,
        arms=arms,
        shares={k: v for k, v in intended.items() if k in keys},
        correction=correction,
        min_exposures=experiment.min_exposures,
        adaptive=experiment.allocation == Experiment.Allocation.THOMPSON,
    )


def slot_filter(experiment: Experiment) -> Q:
    """The variants of an experiment's slot, as a filter."""
    return Q(
        prompt_id=experiment.prompt_id,
        product_id=experiment.product_id,
        segment_id=experiment.segment_id,
        language=experiment.language,
    )


# --- what the pages and the API show (read-only) --------------------------------------


@dataclass(frozen=True)
class ArmReport:
    """One arm as the experiment page and the API show it: its share now (0 while
    paused), its randomized counts, and what the analysis says of it (None before
    any data, and for the control's comparison)."""

    arm: ExperimentArm
    share: float
    counts: stats.ArmCounts
    comparison: stats.Comparison | None
    posterior: stats.Posterior | None
    decision: stats.ArmDecision | None

    @property
    def key(self) -> str:
        return self.arm.key


@dataclass(frozen=True)
class Report:
    experiment: Experiment
    weights: ExperimentWeights
    arms: list[ArmReport]  # the control first, then the variants in the order added
    counts: Counts
    analysis: stats.Analysis | None


def experiment_report(experiment: Experiment) -> Report:
    """Everything one experiment's page shows: its arms with their shares in force,
    counts and analysis. Reads only (five queries and the statistics)."""
    arms = list(experiment.arms.select_related("variant__prompt_version").order_by("id"))
    weights = weights_in_force(experiment)
    counts = experiment_counts(experiment)
    analysis = experiment_analysis(experiment, counts)
    comparisons = {c.arm: c for c in analysis.comparisons} if analysis else {}

    def arm_counts(arm: ExperimentArm) -> stats.ArmCounts:
        if arm.is_control:
            return counts.control
        return counts.arms.get(arm.key) or stats.ArmCounts(arm.key, 0, 0)

    rows = [
        ArmReport(
            arm=arm,
            share=float(weights.weights.get(arm.key, 0.0)),
            counts=arm_counts(arm),
            comparison=comparisons.get(arm.key),
            posterior=analysis.posterior.get(arm.key) if analysis else None,
            decision=analysis.decisions.get(arm.key) if analysis else None,
        )
        for arm in sorted(arms, key=lambda a: (not a.is_control, a.pk))
    ]
    return Report(experiment, weights, rows, counts, analysis)


# --- closing the loop: what beat does at each experiment's cadence --------------------

# Beat runs every minute and its ticks drift by a few hundred milliseconds: an
# experiment analysed at 12:00:00.4 is due again at the 12:15 tick, not the 12:16 one.
DUE_SLACK = timedelta(seconds=30)
# Thompson shares that move less than this for every arm are not written again: a new
# weights row makes every web process read the slot again, for nothing.
REWEIGH_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Review:
    """What experiment_review found and did on one experiment."""

    experiment_id: int
    due: bool  # False: not running, or analysed less than its cadence ago; nothing done
    analysed: bool = False  # there were randomized visitors to analyse
    mismatch: bool = False  # the sample-ratio check blocked every automatic decision
    paused: tuple[str, ...] = ()  # arm keys paused as losers
    proposed: str | None = None  # the arm proposed as the winner
    promoted: bool = False  # ... and promoted: the experiment stopped
    reweighed: bool = False  # new Thompson shares written
    note: str = ""


def experiment_due(experiment: Experiment, now: datetime) -> bool:
    """Running, and never analysed or analysed a cadence ago (within DUE_SLACK)."""
    if not experiment.is_running:
        return False
    if experiment.analysed is None:
        return True
    cadence = timedelta(minutes=experiment.cadence_minutes)
    return now - experiment.analysed >= cadence - DUE_SLACK


def _same_shares(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    return set(a) == set(b) and all(abs(a[k] - b[k]) <= REWEIGH_TOLERANCE for k in a)


@transaction.atomic
def experiment_reweigh(
    *, experiment: Experiment, counts: Counts | None = None
) -> ExperimentWeights | None:
    """New Thompson-sampling shares for a bandit from its counts so far (reason
    "reweigh"), or None when they would not move (no new visitor since the last).

    The active variants share 1 − control_share in proportion to their probability of
    being the best variant, each keeping the floor (allocation.thompson_weights); the
    control keeps its share. Paused arms get nothing. The live path picks the new row
    up through delivery.live_changed (_weights_write)."""
    experiment = _lock_running(experiment)
    if experiment.allocation != Experiment.Allocation.THOMPSON:
        raise ExperimentError(
            f"Experiment {experiment.pk} has a fixed split: its shares never move",
            field="allocation",
        )
    arms = [a.key for a in _active_arms(experiment) if not a.is_control]
    counts = counts or experiment_counts(experiment)
    weights = allocation.thompson_weights(
        arms=[counts.arms.get(k) or stats.ArmCounts(k, 0, 0) for k in arms],
        control_share=experiment.control_share,
        floor=min(experiment.floor, (1 - experiment.control_share) / len(arms)),
    )
    if _same_shares(weights, weights_in_force(experiment).weights):
        return None
    return _weights_write(experiment, weights, "reweigh")


def _shares_text(shares: Mapping[str, float]) -> str:
    return ", ".join(f"{arm} {share:.1%}" for arm, share in shares.items())


def _winner_once(experiment: Experiment, variant: Variant, reason: str) -> None:
    """Propose `variant`, with one EXPERIMENT_WINNER event per experiment and variant
    however many analyses agree (beat looks every cadence)."""
    experiment.proposed = variant
    prefix = f"Experiment {experiment.pk}: "
    already = ReviewEvent.objects.filter(
        variant=variant, action=ReviewEvent.Action.EXPERIMENT_WINNER, reason__startswith=prefix
    ).exists()
    if not already:
        _event(variant, None, ReviewEvent.Action.EXPERIMENT_WINNER, prefix + reason)


@transaction.atomic
def experiment_review(*, experiment: Experiment, now: datetime | None = None) -> Review:
    """Analyse one experiment and take the automatic decisions its lead allowed; what
    beat (review.tasks.experiments_reweigh) does at each experiment's cadence.

    1. Lock the experiment; do nothing unless it runs and its cadence is due (a second
       worker waiting on the lock then finds it analysed already).
    2. Count its randomized visitors and analyse them (experiment_analysis: adaptive
       under Thompson sampling); store when, the sample-ratio verdict and a note.
    3. A sample-ratio mismatch blocks everything below: the traffic is not split as
       designed, so neither the comparisons nor the bandit's counts are to be trusted.
    4. Losers are paused when auto_pause_losers is on, with the decision's sentence as
       the reason (user None: the system), never the last variant serving.
    5. A winner is proposed (one audit event, however many analyses agree) and, when
       auto_promote is on, promoted: the experiment stops with it published.
    6. A bandit's shares are recomputed from the counts, unless a pause just did.
    """
    now = now or timezone.now()
    locked: Experiment | None = (
        Experiment.objects.select_for_update().filter(pk=experiment.pk).first()
    )
    if locked is None or not experiment_due(locked, now):
        return Review(experiment.pk, due=False)
    experiment = locked
    counts = experiment_counts(experiment)
    analysis = experiment_analysis(experiment, counts)
    experiment.analysed = now
    if analysis is None:
        experiment.sample_ratio_mismatch = False
        experiment.proposed = None
        experiment.analysis_note = "No randomized visitor yet: nothing to analyse."
        experiment.save(
            update_fields=["analysed", "sample_ratio_mismatch", "proposed", "analysis_note"]
        )
        return Review(experiment.pk, due=True, note=experiment.analysis_note)
    ratio = analysis.sample_ratio
    experiment.sample_ratio_mismatch = ratio.mismatch
    if ratio.mismatch:
        experiment.proposed = None
        experiment.analysis_note = (
            f"Automatic decisions blocked: the traffic does not follow the intended split "
            f"(sample-ratio check, p = {ratio.p_value:.2g}). Visitors seen: "
            f"{_shares_text(ratio.observed)}; intended: {_shares_text(ratio.expected)}. "
            "Until it is explained (clients that drop the visitor for one copy, impressions "
            "posted for some arms only), no arm is paused or promoted and the shares stay."
        )
        experiment.save(
            update_fields=["analysed", "sample_ratio_mismatch", "proposed", "analysis_note"]
        )
        note = experiment.analysis_note
        return Review(experiment.pk, due=True, analysed=True, mismatch=True, note=note)

    arms = {a.key: a for a in experiment.arms.select_related("variant")}
    serving = {k for k, a in arms.items() if not a.is_control and a.status == a.Status.ACTIVE}
    lines: list[str] = []
    paused: list[str] = []
    winner: tuple[Variant, str] | None = None
    for key, decision in analysis.decisions.items():
        line = f"{key}: {decision.decision} ({decision.reason})"
        if decision.decision == stats.Decision.LOSER and key in serving:
            if not experiment.auto_pause_losers:
                line += "; automatic pausing is off"
            elif len(serving) <= 1:
                line += "; not paused: it is the last variant serving, stop the experiment"
            else:
                experiment_arm_pause(arm=arms[key], user=None, reason=decision.reason)
                serving.discard(key)
                paused.append(key)
                line += "; paused"
        elif decision.decision == stats.Decision.WINNER_PROPOSED:
            variant = arms[key].variant
            assert variant is not None  # decisions are about the variants, not the control
            winner = (variant, decision.reason)
        lines.append(line)
    experiment.proposed = None
    if winner is not None:
        _winner_once(experiment, *winner)
    experiment.analysis_note = "\n".join(lines)
    experiment.save(
        update_fields=["analysed", "sample_ratio_mismatch", "proposed", "analysis_note"]
    )
    proposed = arm_key(winner[0].pk) if winner else None
    done = Review(
        experiment.pk,
        due=True,
        analysed=True,
        paused=tuple(paused),
        proposed=proposed,
        note=experiment.analysis_note,
    )
    if winner is not None and experiment.auto_promote:
        experiment_stop(
            experiment=experiment,
            user=None,
            reason=f"Promoted automatically: {winner[1]}",
            promote=winner[0],
        )
        return dataclasses.replace(done, promoted=True)
    if experiment.allocation == Experiment.Allocation.THOMPSON and not paused:
        reweighed = experiment_reweigh(experiment=experiment, counts=counts) is not None
        return dataclasses.replace(done, reweighed=reweighed)
    return done


# --- wear-out --------------------------------------------------------------------------

WEAR_OUT_DAYS = 28


def experiment_wear_out(
    experiment: Experiment, *, today: date | None = None
) -> dict[str, stats.WearOut]:
    """Each variant arm's wear-out (stats.wear_out): the trend of its daily rate
    against the control's over the last WEAR_OUT_DAYS days (UTC) of the experiment.

    A day's counts are its distinct randomized visitors shown the arm, and those who
    clicked or converted (the experiment's metric) that day, in one grouped query. A
    warning for the page, never an automatic decision.
    """
    last = today or (experiment.stopped or timezone.now()).astimezone(UTC).date()
    first = max(last - timedelta(days=WEAR_OUT_DAYS - 1), experiment.started.astimezone(UTC).date())
    if first > last:
        first = last
    days = [first + timedelta(days=d) for d in range((last - first).days + 1)]
    start = datetime.combine(first, time.min, tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC)
    rows = (
        EngagementEvent.objects.filter(
            experiment=experiment,
            randomized=True,
            kind__in=[EngagementEvent.Kind.IMPRESSION, experiment.metric],
            occurred__gte=start,
            occurred__lt=end,
        )
        .annotate(day=TruncDate("occurred", tzinfo=UTC))
        .values_list("arm", "day", "kind")
        .annotate(n=Count("visitor", distinct=True))
        .values_list("arm", "day", "kind", "n")
    )
    found: dict[tuple[str, date, str], int] = {(a, d, k): n for a, d, k, n in rows}

    def daily(key: str) -> list[stats.ArmCounts]:
        out = []
        for day in days:
            shown = found.get((key, day, EngagementEvent.Kind.IMPRESSION), 0)
            success = found.get((key, day, experiment.metric), 0)
            # A click whose impression was never posted still proves an exposure.
            out.append(stats.ArmCounts(key, max(shown, success), success))
        return out

    control = daily(allocation.CONTROL)
    return {
        arm.key: stats.wear_out(arm_days=daily(arm.key), control_days=control)
        for arm in experiment.arms.filter(variant__isnull=False).order_by("id")
    }


# --- challengers: fresh copy for a slot, with its best arm as the example ---------------


@dataclass(frozen=True)
class Challengers:
    """What experiment_challengers made: the version, its one-slot run, and the
    variant whose text the version shows the model as an example."""

    version: PromptVersion
    run: GenerationRun
    example: Variant


def _best_variant(experiment: Experiment) -> Variant:
    """The arm whose copy challengers learn from: the proposed winner, else the
    variant most likely to be the best by the analysis, else the published one."""
    if experiment.proposed_id is not None:
        proposed: Variant = Variant.objects.get(pk=experiment.proposed_id)
        return proposed
    arms = {a.key: a.variant for a in experiment.arms.select_related("variant") if a.variant}
    analysis = experiment_analysis(experiment)
    if analysis is not None:
        ranked = sorted(
            (p.probability_best, key) for key, p in analysis.posterior.items() if key in arms
        )
        if ranked:
            best = arms[ranked[-1][1]]
            assert best is not None
            return best
    published = [v for v in arms.values() if v and v.status == Variant.Status.PUBLISHED]
    if published:
        return published[0]
    variants = [v for v in arms.values() if v]
    if not variants:
        raise ExperimentError(
            f"Experiment {experiment.pk} has no variant to learn from", field="experiment"
        )
    return variants[0]


def experiment_challengers(
    *,
    user: User | None,
    experiment: Experiment | None = None,
    variant: Variant | None = None,
    budget: Decimal | None = None,
) -> Challengers:
    """One action: fresh copy for one slot that learns from what works there.

    1. The slot and its example: a running experiment's best arm (_best_variant), or
       an approved `variant` of a segment's slot, with or without an experiment.
    2. Refuse a prompt with no version, and a prompt with a run still writing: the
       new version would make that run's copy superseded as it is written (the engine
       keeps one version in review per slot), paying for nothing.
    3. Ask the endpoint about the model, before anything is written.
    4. In one transaction: the prompt's next version, the same template, model and
       temperature, with the example first among its examples (the oldest others
       dropped past EXAMPLES_MAX); saved without regenerate, so no other slot is
       written again; then a run of it over that one slot (prompt × product ×
       segment × language).

    The new variant goes to review like any other; once approved, it can join the
    experiment (experiment_add_arm). The version is the prompt's current one from
    now on, so the prompt's next runs show the model the same example.
    """
    if (experiment is None) == (variant is None):
        raise ExperimentError("Name an experiment or a variant, not both", field="experiment")
    if experiment is not None:
        experiment = Experiment.objects.get(pk=experiment.pk)
        if not experiment.is_running:
            raise ExperimentError(
                f"Experiment {experiment.pk} has stopped: challengers join running experiments",
                field="experiment",
            )
        example = _best_variant(experiment)
    else:
        assert variant is not None
        example = Variant.objects.select_related("prompt", "segment", "product").get(pk=variant.pk)
        if example.segment_id is None:
            raise ExperimentError(
                f"Variant {example.pk} is a customer's own message: challengers are written "
                "for a segment's slot",
                field="variant",
            )
        if example.status not in APPROVED:
            raise ExperimentError(
                f"Variant {example.pk} was not approved (it is "
                f"{example.get_status_display().lower()}): only approved copy is an example",
                field="variant",
            )
    prompt = example.prompt
    current = prompt.require_version(ExperimentError)
    writing = GenerationRun.objects.unfinished().filter(prompt_version__prompt=prompt).first()
    if writing is not None:
        raise ExperimentError(
            f"Run {writing.pk} of '{prompt.slug}' is still writing: a new version now would "
            "supersede what it writes. Wait for it to finish, or cancel it, then try again",
            field="prompt",
        )
    # The example first; the current version's others after it, the last dropped.
    wanted = list(dict.fromkeys([example.text, *current.examples]))[:EXAMPLES_MAX]
    try:
        examples = prompt_examples(prompt=prompt, examples=wanted)
    except PromptTemplateError as exc:
        raise ExperimentError(
            f"Variant {example.pk} cannot be an example: {exc}", field="variant"
        ) from None
    endpoint_check(model=current.model)
    segment = example.segment
    assert segment is not None  # a running experiment's arms are segment slots
    slot = (example.product_id, segment.pk, example.language)
    where = f"experiment {experiment.pk}" if experiment is not None else "its slot"
    with transaction.atomic():
        version = prompt_version_create(
            prompt=prompt,
            template=current.template,
            model=current.model,
            temperature=current.temperature,
            author=user,
            note=f"Challengers for {where}, with variant {example.pk} as an example",
            regenerate=False,
            examples=examples,
        )
        run = run_create(
            prompt=prompt,
            products=[example.product],
            segments=[segment],
            user=user,
            budget=budget,
            note=f"Challengers for {where} (variant {example.pk} as an example)",
            check_endpoint=False,
            only_slots={slot},
        )
        if run.total != 1:  # the product or segment went away meanwhile
            raise ExperimentError(
                f"The slot of variant {example.pk} could not be queued: is its product or "
                "segment gone?",
                field="slot",
            )
    return Challengers(version=version, run=run, example=example)
