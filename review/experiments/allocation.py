"""Traffic shares, and which arm a visitor sees.

Pure Python on purpose: the live path calls `pick_arm` once a request, and importing
this module loads neither numpy nor scipy (`thompson_weights` imports the statistics
when it is called, in the process that recomputes the weights, not in web workers).

A share mapping (`weights`) maps each arm's key to its share of the traffic: the
control's key is `CONTROL`, the variants' keys are the caller's (e.g. "variant-12").
Shares are fractions that sum to 1.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from review.experiments.stats import ArmCounts

CONTROL = "control"
# Variants in one experiment, besides the control: how many by default, and at most.
DEFAULT_ARMS = 4
MAX_ARMS = 10
DEFAULT_CONTROL_SHARE = 0.10
# Every variant keeps this share under Thompson sampling, however badly it does, so
# the statistics keep learning about it and a bad start can be undone.
DEFAULT_FLOOR = 0.01
# How often Thompson sampling recomputes the shares.
DEFAULT_CADENCE = timedelta(minutes=15)
# Shares read back from a database or summed from floats are off by rounding; more
# than this is a mistake.
SHARE_TOLERANCE = 1e-6
_TWO_64 = float(2**64)


class Assignment(NamedTuple):
    """The arm a visitor sees, and the probability it was served with (its share)."""

    arm: str
    probability: float


def shares_check(shares: Mapping[str, float]) -> dict[str, float]:
    """A validated copy of a share mapping, or ValueError naming what is wrong.

    The control must be in it, with 1 to MAX_ARMS variants; every share is a finite
    number in [0, 1] and together they sum to 1.
    """
    out: dict[str, float] = {}
    for arm, share in shares.items():
        if not isinstance(arm, str) or not arm:
            raise ValueError(f"arm keys are non-empty strings, got {arm!r}")
        try:
            value = float(share)
        except (TypeError, ValueError):
            raise ValueError(f"arm {arm!r}: share is not a number: {share!r}") from None
        if not 0 <= value <= 1:  # also refuses NaN
            raise ValueError(f"arm {arm!r}: share must be between 0 and 1, got {share!r}")
        out[arm] = value
    if CONTROL not in out:
        raise ValueError(f"shares must include the control, {CONTROL!r}")
    variants = len(out) - 1
    if not 1 <= variants <= MAX_ARMS:
        raise ValueError(
            f"an experiment has 1 to {MAX_ARMS} variants besides the control, got {variants}"
        )
    total = math.fsum(out.values())
    if abs(total - 1) > SHARE_TOLERANCE:
        raise ValueError(f"shares must sum to 1, they sum to {total:.6g}")
    return out


def fixed_split(*, shares: Mapping[str, float]) -> dict[str, float]:
    """The shares as given, checked (see `shares_check`): a fixed split never changes."""
    return shares_check(shares)


def equal_split(
    *, arms: Sequence[str], control_share: float = DEFAULT_CONTROL_SHARE
) -> dict[str, float]:
    """The control keeps `control_share`; the variants `arms` share the rest equally."""
    _variants_check(arms)
    if not 0 < control_share < 1:
        raise ValueError(f"control_share must be between 0 and 1, got {control_share!r}")
    each = (1 - control_share) / len(arms)
    return shares_check({CONTROL: control_share, **dict.fromkeys(arms, each)})


def thompson_weights(
    *,
    arms: Sequence[ArmCounts],
    control_share: float = DEFAULT_CONTROL_SHARE,
    floor: float = DEFAULT_FLOOR,
) -> dict[str, float]:
    """Thompson-sampling shares for the variants `arms` (not the control), in a batch.

    1. Each variant's probability of being the best variant, from its Beta(1 + s,
       1 + n − s) posterior (`stats.probability_best`, computed exactly): the share
       Thompson sampling would give it, one posterior draw a visitor.
    2. The control keeps `control_share`, so the comparisons with the control go on.
    3. Every variant gets `floor`, and the rest, 1 − control_share − K·floor, is shared
       in proportion to the probabilities. The shares sum to 1.

    Recompute at a cadence (DEFAULT_CADENCE); in between, `pick_arm` serves the last
    shares, so each exposure's probability is the share in force.
    """
    from review.experiments import stats  # numpy and scipy: see the module docstring

    _variants_check([a.arm for a in arms])
    if not 0 < control_share < 1:
        raise ValueError(f"control_share must be between 0 and 1, got {control_share!r}")
    spare = 1 - control_share - len(arms) * floor
    if not floor >= 0 or spare < 0:
        raise ValueError(
            f"floor must be between 0 and (1 − control_share) / arms = "
            f"{(1 - control_share) / len(arms):.4g}, got {floor!r}"
        )
    best = stats.probability_best(arms=arms)
    return shares_check(
        {CONTROL: control_share, **{a.arm: floor + spare * best[a.arm] for a in arms}}
    )


def shares_served(*, periods: Iterable[tuple[int, Mapping[str, float]]]) -> dict[str, float]:
    """The split an experiment should have produced when its shares changed over time.

    `periods` holds (exposures in the period, the shares in force); the result is each
    arm's share averaged over the periods, weighted by their exposures (an arm missing
    from a period had share 0 then). The sample-ratio check compares the observed
    exposures with it, e.g. under Thompson sampling.
    """
    totals: dict[str, float] = {}
    exposures = 0
    for count, shares in periods:
        if count < 0:
            raise ValueError(f"a period's exposures must be >= 0, got {count!r}")
        for arm, share in shares_check(shares).items():
            totals[arm] = totals.get(arm, 0.0) + count * share
        exposures += count
    if not exposures:
        raise ValueError("no exposures in any period")
    return {arm: value / exposures for arm, value in totals.items()}


def pick_arm(*, experiment_key: str, visitor: str, weights: Mapping[str, float]) -> Assignment:
    """The arm `visitor` sees in experiment `experiment_key`, and its probability.

    1. u = blake2b(experiment, visitor, CONTROL) read as a number in (0, 1): below the
       control's share, the visitor sees the control.
    2. Otherwise, weighted rendezvous hashing among the variants: each draws its own u
       from blake2b(experiment, visitor, arm), and the smallest −ln(u) / share wins, an
       exponential race that each variant wins with probability share / (the variants'
       shares). Overall, each arm is served with probability exactly its share.

    The same visitor gets the same arm in every process and every run (no Python
    `hash()`). When shares change, a visitor moves only if they must: the control
    keeps its visitors while its share is unchanged (Thompson sampling never changes
    it), a paused variant's visitors are spread over the others and nobody else moves,
    and a variant's visitors stay while its share grows relative to the others. With a
    cumulative split of [0, 1), every arm after a changed one would shift.

    About 1 µs an arm (blake2b and a log); no numpy. ValueError if the shares are not
    numbers >= 0 summing to 1 with the control among them: the caller passes the
    mapping `shares_check` accepted. A caller that picks for many visitors under the
    same shares checks them once (`split_of`) and calls `pick`.
    """
    return pick(split_of(weights), experiment_key=experiment_key, visitor=visitor)


class Split(NamedTuple):
    """A share mapping checked once and laid out for `pick`: the control's share, the
    variants that have a share (key, share) in the mapping's order, and the total of
    the shares. The live snapshot keeps one an experiment, in place of the mapping."""

    control: float
    variants: tuple[tuple[str, float], ...]
    total: float

    def share(self, arm: str) -> float:
        """The arm's share (0 for a paused or unknown one)."""
        if arm == CONTROL:
            return self.control
        return next((share for key, share in self.variants if key == arm), 0.0)


def split_of(weights: Mapping[str, float]) -> Split:
    """`weights` checked as pick_arm checks them (ValueError naming what is wrong)."""
    total = 0.0
    for arm, share in weights.items():
        if not share >= 0:  # also refuses NaN
            raise ValueError(f"arm {arm!r}: share must be >= 0, got {share!r}")
        total += share
    if abs(total - 1) > SHARE_TOLERANCE:
        raise ValueError(f"shares must sum to 1, they sum to {total:.6g}")
    if CONTROL not in weights:
        raise ValueError(f"shares must include the control, {CONTROL!r}")
    variants = tuple(
        (arm, float(share)) for arm, share in weights.items() if share and arm != CONTROL
    )
    return Split(float(weights[CONTROL]), variants, total)


def pick(split: Split, *, experiment_key: str, visitor: str) -> Assignment:
    """pick_arm under shares already checked: the live path's, once a request."""
    prefix = hashlib.blake2b(digest_size=8)
    # Length-prefixed, so ("ab", "c") and ("a", "bc") hash differently.
    key, who = experiment_key.encode(), visitor.encode()
    prefix.update(b"%d:%s%d:%s" % (len(key), key, len(who), who))
    if _uniform(prefix, CONTROL) < split.control:
        return Assignment(CONTROL, split.control / split.total)
    best_arm, best_share, best_score = CONTROL, split.control, math.inf
    for arm, share in split.variants:
        score = -math.log(_uniform(prefix, arm)) / share
        if score < best_score or (score == best_score and arm < best_arm):
            best_arm, best_share, best_score = arm, share, score
    return Assignment(best_arm, best_share / split.total)


def _uniform(prefix: hashlib.blake2b, arm: str) -> float:
    """A number in (0, 1) from the visitor's hash prefix and the arm's key."""
    digest = prefix.copy()
    digest.update(arm.encode())
    # +0.5 keeps it strictly inside (0, 1): log(0) never happens.
    return (int.from_bytes(digest.digest(), "big") + 0.5) / _TWO_64


def _variants_check(arms: Sequence[str]) -> None:
    if not 1 <= len(arms) <= MAX_ARMS:
        raise ValueError(
            f"an experiment has 1 to {MAX_ARMS} variants besides the control, got {len(arms)}"
        )
    if CONTROL in arms:
        raise ValueError(f"{CONTROL!r} is the control's key, not a variant's")
    if len(set(arms)) != len(arms):
        raise ValueError(f"arm keys must be unique, got {list(arms)}")
