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

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from generation.errors import Conflict, ServiceError
from generation.models import Variant
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
