"""Each arm of an experiment against its control, without crying wolf.

The methods, in the order a page shows them (explain.py says each in two sentences):

1. **Sequential comparison with the control.** For each arm, the difference of rates
   θ = p_arm − p_control, its always-valid confidence interval and p-value: the
   normal-mixture boundary of Howard et al. (2021, "Time-uniform, nonparametric,
   nonasymptotic confidence sequences"), applied to the difference's asymptotically
   normal estimate as in Waudby-Smith et al. (2024, "Time-uniform central limit theory
   and asymptotic confidence sequences"), which is what GrowthBook ships. It is the
   mixture SPRT of Johari et al. (2017, "Peeking at A/B tests"): with V the estimate's
   variance (unpooled: p(1 − p)/n of each arm, summed), N = n_arm + n_control and
   τ² = V·N·ρ², the mixture likelihood ratio of θ = 0 is

       Λ = (1 + Nρ²)^(−1/2) · exp(θ̂² · Nρ² / (2V · (1 + Nρ²)))

   and the p-value is min(1, 1/Λ); the interval at level α is θ̂ ± half-width with

       half-width² = 2V · (1 + Nρ²) / (Nρ²) · (ln(1/α) + ½ ln(1 + Nρ²)).

   ρ² = (−2 ln α + ln(−2 ln α + 1)) / N* makes the interval tightest at N = N*
   (`tuning`). By Ville's inequality the chance that the p-value ever falls below α
   while θ = 0, however often it is looked at, is at most α (asymptotically: the
   normal approximation is why comparisons wait for `min_exposures`).

   1b. **When the shares followed the data** (Thompson sampling, `adaptive=True`),
   the difference's estimate is no longer the martingale the mixture assumes: an arm
   starved after an unlucky start keeps its low estimate, and the test above paused an
   equal arm in 3–5% of simulated null experiments, against none under a fixed split
   (bench/experiments.py, fixed_split_test_false_loser_rate_thompson). The
   adaptive form is the arm's and the control's own always-valid intervals (the same
   normal mixture, for one rate, tuned for N*/2), each at level α/2: each arm's
   clicks, in the order they come, are independent draws whatever steered traffic to
   it, so each interval holds at every look, and the difference lies in
   [low_arm − high_control, high_arm − low_control]. Its p-value is the smallest level
   whose interval excludes 0 (bisection). Wider: decisions come later (bench).
2. **Correction across comparisons.** The sequential p-values of every arm (in every
   segment passed together) are corrected as one family: Holm by default (the
   family-wise error rate: the chance of any false verdict), Benjamini-Hochberg
   ("fdr_bh") as an option (the expected share of false verdicts among verdicts).
   Holm on always-valid p-values keeps its guarantee at every look: a false verdict at
   any time needs some true null's p-value below α / (number of true nulls) at that
   time. Each arm's interval is then shown at the level its corrected test used
   (α · p / adjusted p), so it excludes 0 exactly when the corrected verdict says so.
3. **Fixed-horizon results, for reference**: statsmodels' pooled two-proportion z-test
   and Newcombe's hybrid score interval, what review/metrics.py uses. Valid once, at a
   sample size fixed in advance; looked at every hour they cry wolf (bench/experiments.py
   measures how often).
4. **Bayesian view**: each arm's Beta(1 + s, 1 + n − s) posterior (a uniform prior),
   the probability that each arm has the highest rate, and the expected loss of
   choosing it (E[max rate − its rate]), computed by quadrature of the exact Beta
   functions (scipy.special), not sampled.
5. **Sample-ratio check**: Pearson's chi-squared test of the observed exposures per arm
   against the intended shares; p < 0.001 is a mismatch, which warns and blocks every
   automatic decision: the traffic is not split as designed, so the comparisons are
   not to be trusted.
6. **Decisions**: an arm is a *loser* when the corrected sequential interval lies below
   0 (paused); a *winner is proposed* when it is better than the control by the same
   test, its probability of being best is >= 95%, and every arm has `min_exposures`;
   otherwise *keep running*. A mismatch blocks both.
7. **Wear-out**: the trend of an arm's daily click-through relative to the control's.

Counts are taken as independent Bernoulli trials (see the package docstring).

scipy.special is imported by the functions that call it, not here: every Django
process imports this module at start-up (review.services), and scipy held 30 MB of
each (the live path's gunicorn workers, Celery workers, a customer import) that
never computes a posterior.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import numpy as np

from review.experiments.allocation import MAX_ARMS, shares_check

DEFAULT_ALPHA = 0.05
Correction = Literal["holm", "fdr_bh"]
CORRECTIONS: tuple[Correction, ...] = ("holm", "fdr_bh")
DEFAULT_CORRECTION: Correction = "holm"
# N* of the sequential interval: the arm + control exposures at which it is tightest.
# Around the size of a comparison after a few days at our traffic; the interval is
# within ~10% of its narrowest from N*/4 to 4·N* (bench/experiments.py --tuning).
DEFAULT_TUNING = 20_000
# No verdict below this many exposures in the arm and in the control: the normal
# approximation behind the sequential test does not hold on a few dozen clicks.
DEFAULT_MIN_EXPOSURES = 1_000
# Nor while an arm expects fewer than this many successes (or failures) at the pooled
# rate (as in review/metrics.py).
MIN_EXPECTED_SUCCESSES = 5
WINNER_PROBABILITY = 0.95
SRM_ALPHA = 0.001
# No sample-ratio verdict below this many exposures in all.
SRM_MIN_EXPOSURES = 1_000
CREDIBLE_LEVEL = 0.95
WEAR_OUT_ALPHA = 0.05
WEAR_OUT_MIN_DAYS = 7
# A day counts toward wear-out with this many successes in the arm and in the control.
WEAR_OUT_MIN_SUCCESSES = 5

# The Bayesian quadrature: a uniform grid from the lowest posterior mean − 10 sd to
# the highest + 10 sd, a quarter of the narrowest posterior's sd apart (accurate to
# ~1e-5 against 40,000-point references); over GRID_MAX points (posteriors of very
# different widths), the union of each arm's own grid instead (~1e-3).
_GRID_SDS = 10.0
_GRID_STEP_SDS = 0.25
_GRID_MAX = 4_000
_ARM_GRID_POINTS = 161


# --- counts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmCounts:
    """An arm's exposures and successes (clicks or conversions: the experiment's metric).

    Successes count the exposures that led to one (at most one each), so they never
    exceed the exposures; a delivery log that posts more clicks than exposures must be
    capped before it gets here, as review/metrics.py does.
    """

    arm: str
    exposures: int
    successes: int

    def __post_init__(self) -> None:
        if not isinstance(self.arm, str) or not self.arm:
            raise ValueError(f"an arm's key is a non-empty string, got {self.arm!r}")
        for name in ("exposures", "successes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"arm {self.arm!r}: {name} must be a whole number, got {value!r}")
            if value < 0:
                raise ValueError(f"arm {self.arm!r}: {name} must be >= 0, got {value}")
            object.__setattr__(self, name, int(value))
        if self.successes > self.exposures:
            raise ValueError(
                f"arm {self.arm!r}: successes ({self.successes}) exceed exposures "
                f"({self.exposures})"
            )

    @property
    def rate(self) -> float | None:
        return self.successes / self.exposures if self.exposures else None


def _arms_check(arms: Sequence[ArmCounts], *, what: str = "arms") -> None:
    if not 1 <= len(arms) <= MAX_ARMS:
        raise ValueError(f"{what}: 1 to {MAX_ARMS} variants besides the control, got {len(arms)}")
    keys = [a.arm for a in arms]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{what}: arm keys must be unique, got {keys}")


# --- the sequential comparison --------------------------------------------------------


def _rho2(*, alpha: float, tuning: float) -> float:
    return (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning


def _difference(arm: ArmCounts, control: ArmCounts) -> tuple[float, float, int]:
    """(θ̂, its unpooled variance V, N = n_arm + n_control)."""
    p1 = arm.successes / arm.exposures
    p0 = control.successes / control.exposures
    variance = p1 * (1 - p1) / arm.exposures + p0 * (1 - p0) / control.exposures
    return p1 - p0, variance, arm.exposures + control.exposures


def _params_check(*, alpha: float, tuning: int) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    if not tuning > 0:
        raise ValueError(
            f"tuning (the sample size where the interval is tightest) must be > 0, got {tuning!r}"
        )


class _Widths:
    """The adaptive form (method 1b): the arm's and the control's own intervals, each
    at level a / 2, whose half-widths sum to sqrt(A₁ (L + B₁)) + sqrt(A₀ (L + B₀)) with
    L = ln(2 / a). Each arm's is the normal-mixture interval of its own rate, tuned for
    half of N*."""

    def __init__(self, arm: ArmCounts, control: ArmCounts, *, alpha: float, tuning: int):
        rho2 = _rho2(alpha=alpha, tuning=tuning / 2)
        self.terms: list[tuple[float, float]] = []
        for counts in (arm, control):
            n, p = counts.exposures, counts.successes / counts.exposures
            shrink = n * rho2
            self.terms.append(
                (2 * p * (1 - p) * (1 + shrink) / (n * shrink), 0.5 * math.log1p(shrink))
            )

    def at(self, log_two_over_level: float) -> float:
        return sum(math.sqrt(a * (log_two_over_level + b)) for a, b in self.terms)

    def p_value(self, difference: float) -> float:
        """The smallest level whose interval excludes 0, by bisection on L."""
        d = abs(difference)
        lo = math.log(2)  # level 1
        if d <= self.at(lo):
            return 1.0
        largest = max(a for a, _b in self.terms)
        hi = lo + d * d / largest + 1  # there the wider interval alone exceeds d
        for _ in range(200):
            mid = (lo + hi) / 2
            if self.at(mid) < d:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-12 * hi:
                break
        return min(1.0, 2 * math.exp(-hi))


def sequential_p_value(
    *,
    arm: ArmCounts,
    control: ArmCounts,
    alpha: float = DEFAULT_ALPHA,
    tuning: int = DEFAULT_TUNING,
    adaptive: bool = False,
) -> float:
    """The always-valid p-value of "same rate as the control" (method 1, not corrected).

    `alpha` only shapes the mixture (with `tuning`); a p-value below any level means
    what it says. `adaptive`: the form valid when the shares followed the data (method
    1b). 1.0 when either arm has no exposures or the variance is 0.
    """
    _params_check(alpha=alpha, tuning=tuning)
    if not arm.exposures or not control.exposures:
        return 1.0
    theta, variance, n = _difference(arm, control)
    if variance == 0:
        return 1.0
    if adaptive:
        return _Widths(arm, control, alpha=alpha, tuning=tuning).p_value(theta)
    shrink = n * _rho2(alpha=alpha, tuning=tuning)
    log_ratio = -0.5 * math.log1p(shrink) + theta * theta * shrink / (2 * variance * (1 + shrink))
    return min(1.0, math.exp(-log_ratio))


def sequential_interval(
    *,
    arm: ArmCounts,
    control: ArmCounts,
    level: float = DEFAULT_ALPHA,
    alpha: float = DEFAULT_ALPHA,
    tuning: int = DEFAULT_TUNING,
    adaptive: bool = False,
) -> tuple[float, float] | None:
    """The always-valid interval of p_arm − p_control at error `level` (method 1).

    `alpha`, `tuning` and `adaptive` as in `sequential_p_value`, so the interval at
    `level` excludes 0 exactly when that p-value is <= `level`. None without exposures
    in either arm.
    """
    _params_check(alpha=alpha, tuning=tuning)
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    if not arm.exposures or not control.exposures:
        return None
    theta, variance, n = _difference(arm, control)
    if adaptive:
        half = _Widths(arm, control, alpha=alpha, tuning=tuning).at(math.log(2 / level))
        return theta - half, theta + half
    shrink = n * _rho2(alpha=alpha, tuning=tuning)
    half = math.sqrt(
        2 * variance * (1 + shrink) / shrink * (-math.log(level) + 0.5 * math.log1p(shrink))
    )
    return theta - half, theta + half


def enough_data(*, arm: ArmCounts, control: ArmCounts, min_exposures: int) -> bool:
    """Both arms have `min_exposures`, and expect 5 successes and 5 failures each."""
    if arm.exposures < min_exposures or control.exposures < min_exposures:
        return False
    if not arm.exposures or not control.exposures:
        return False
    pooled = (arm.successes + control.successes) / (arm.exposures + control.exposures)
    smaller = min(arm.exposures, control.exposures)
    return smaller * min(pooled, 1 - pooled) >= MIN_EXPECTED_SUCCESSES


# --- corrections ----------------------------------------------------------------------


def p_values_adjust(
    p_values: Sequence[float], *, method: Correction = DEFAULT_CORRECTION
) -> list[float]:
    """Adjusted p-values of a family: reject those <= α.

    "fdr_bh" is statsmodels' `multipletests`. "holm" is the same step-down computed
    here: multipletests' Holm branch calls gc.collect() on every call (statsmodels
    PR #8671, closed unmerged), 50+ ms in a web process, which the pages and the bench
    call thousands of times; tests/review/test_experiment_stats.py checks the two agree.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    values = np.asarray(p_values, dtype=float)
    if values.ndim != 1 or not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"p-values must be numbers between 0 and 1, got {list(p_values)}")
    if not len(values):
        return []
    if method == "fdr_bh":
        # statsmodels imports pandas (~1.5 s, ~100 MB): only processes that ask pay.
        from statsmodels.stats.multitest import multipletests

        return [float(p) for p in multipletests(values, method="fdr_bh")[1]]
    order = np.argsort(values, kind="stable")
    m = len(values)
    stepped = np.maximum.accumulate(values[order] * np.arange(m, 0, -1))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(p) for p in adjusted]


# --- comparisons ----------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One arm against the control, on the experiment's rate.

    `low`/`high` is the sequential interval of the difference at the level the
    correction tested this arm at (α · p / adjusted p): it excludes 0 exactly when
    `adjusted_p` <= α. It is not a simultaneous interval (Bonferroni's, at α / m,
    would be, and is wider). The `fixed_*` fields are None unless asked for.
    """

    arm: str
    segment: str | None
    exposures: int
    successes: int
    control_exposures: int
    control_successes: int
    rate: float | None
    control_rate: float | None
    difference: float | None  # rate − control rate
    lift: float | None  # rate / control rate − 1; None when the control rate is 0
    enough_data: bool
    sequential_p: float  # always-valid, not corrected; 1.0 without enough data
    adjusted_p: float  # corrected across the family
    low: float | None
    high: float | None
    lift_low: float | None  # low / control rate: the interval relative to the control
    lift_high: float | None
    fixed_p: float | None  # the pooled z-test, once, at a fixed sample size
    fixed_low: float | None  # Newcombe's interval at α, uncorrected
    fixed_high: float | None
    alpha: float
    correction: Correction

    @property
    def significant(self) -> bool:
        return self.enough_data and self.adjusted_p <= self.alpha

    @property
    def worse(self) -> bool:
        """Worse than the control by the corrected sequential test: the interval < 0."""
        return self.significant and self.high is not None and self.high < 0

    @property
    def better(self) -> bool:
        return self.significant and self.low is not None and self.low > 0


def compare_arms(
    *,
    control: ArmCounts,
    arms: Sequence[ArmCounts],
    alpha: float = DEFAULT_ALPHA,
    correction: Correction = DEFAULT_CORRECTION,
    tuning: int = DEFAULT_TUNING,
    min_exposures: int = DEFAULT_MIN_EXPOSURES,
    fixed_horizon: bool = True,
    adaptive: bool = False,
) -> list[Comparison]:
    """Each of `arms` against `control`, corrected across the arms (one experiment).

    `fixed_horizon=False` leaves the fixed-horizon fields None (statsmodels: ~0.3 ms a
    comparison; the bench's hourly checks skip them).
    """
    return compare_segments(
        segments={None: (control, arms)},
        alpha=alpha,
        correction=correction,
        tuning=tuning,
        min_exposures=min_exposures,
        fixed_horizon=fixed_horizon,
        adaptive=adaptive,
    )[None]


def compare_segments(
    *,
    segments: Mapping[str | None, tuple[ArmCounts, Sequence[ArmCounts]]],
    alpha: float = DEFAULT_ALPHA,
    correction: Correction = DEFAULT_CORRECTION,
    tuning: int = DEFAULT_TUNING,
    min_exposures: int = DEFAULT_MIN_EXPOSURES,
    fixed_horizon: bool = True,
    adaptive: bool = False,
) -> dict[str | None, list[Comparison]]:
    """Each segment's arms against its control, corrected across all of them as one family.

    `segments` maps a segment's key to (control, arms): e.g. one experiment a segment,
    read together on one page. Arms without enough data (`enough_data`) stay in the
    family with p = 1, so the correction counts every comparison planned. `adaptive`:
    the shares followed the data (Thompson sampling), see method 1b.
    """
    _params_check(alpha=alpha, tuning=tuning)
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    if min_exposures < 0:
        raise ValueError(f"min_exposures must be >= 0, got {min_exposures!r}")
    pairs: list[tuple[str | None, ArmCounts, ArmCounts, bool, float]] = []
    for segment, (control, arms) in segments.items():
        what = "arms" if segment is None else f"segment {segment!r}"
        _arms_check(arms, what=what)
        if any(a.arm == control.arm for a in arms):
            raise ValueError(f"{what}: the control's key {control.arm!r} is also an arm's")
        for arm in arms:
            ready = enough_data(arm=arm, control=control, min_exposures=min_exposures)
            p = sequential_p_value(
                arm=arm, control=control, alpha=alpha, tuning=tuning, adaptive=adaptive
            )
            pairs.append((segment, arm, control, ready, p if ready else 1.0))
    adjusted = p_values_adjust([pair[4] for pair in pairs], method=correction)
    family = len(pairs)
    out: dict[str | None, list[Comparison]] = {segment: [] for segment in segments}
    for (segment, arm, control, ready, p), p_adjusted in zip(pairs, adjusted, strict=True):
        # The level at which the correction tested this arm; Bonferroni's α / m where
        # the p-value underflowed to 0.
        # p / p_adjusted is at least 1/m for Holm and BH, so it cannot underflow where
        # alpha * p would (a p-value below 5e-323 made the level 0).
        level = alpha * (p / p_adjusted) if p_adjusted > 0 else alpha / family
        if not level > 0:
            level = alpha / family
        out[segment].append(
            _comparison(
                arm=arm,
                control=control,
                segment=segment,
                ready=ready,
                p=p,
                p_adjusted=p_adjusted,
                level=min(level, alpha),
                alpha=alpha,
                correction=correction,
                tuning=tuning,
                fixed_horizon=fixed_horizon,
                adaptive=adaptive,
            )
        )
    return out


def _comparison(
    *,
    arm: ArmCounts,
    control: ArmCounts,
    segment: str | None,
    ready: bool,
    p: float,
    p_adjusted: float,
    level: float,
    alpha: float,
    correction: Correction,
    tuning: int,
    fixed_horizon: bool,
    adaptive: bool,
) -> Comparison:
    rate, control_rate = arm.rate, control.rate
    difference = lift = low = high = lift_low = lift_high = None
    fixed_p = fixed_low = fixed_high = None
    if rate is not None and control_rate is not None:
        difference = rate - control_rate
        interval = sequential_interval(
            arm=arm, control=control, level=level, alpha=alpha, tuning=tuning, adaptive=adaptive
        )
        if interval is not None:
            low, high = interval
        if control_rate > 0:
            lift = rate / control_rate - 1
            if low is not None and high is not None:
                # A rate cannot fall below 0, so neither can the lift below −100%.
                lift_low, lift_high = max(low / control_rate, -1.0), high / control_rate
        if fixed_horizon and ready:
            fixed_p, fixed_low, fixed_high = fixed_horizon_test(
                arm=arm, control=control, alpha=alpha
            )
    return Comparison(
        arm=arm.arm,
        segment=segment,
        exposures=arm.exposures,
        successes=arm.successes,
        control_exposures=control.exposures,
        control_successes=control.successes,
        rate=rate,
        control_rate=control_rate,
        difference=difference,
        lift=lift,
        enough_data=ready,
        sequential_p=p,
        adjusted_p=p_adjusted,
        low=low,
        high=high,
        lift_low=lift_low,
        lift_high=lift_high,
        fixed_p=fixed_p,
        fixed_low=fixed_low,
        fixed_high=fixed_high,
        alpha=alpha,
        correction=correction,
    )


def fixed_horizon_test(
    *, arm: ArmCounts, control: ArmCounts, alpha: float = DEFAULT_ALPHA
) -> tuple[float, float, float]:
    """(p, low, high): statsmodels' pooled two-proportion z-test, two-sided, and
    Newcombe's hybrid score interval of the difference at `alpha` (method 3).

    Valid for one look at a sample size fixed in advance; for reference only.
    """
    # statsmodels imports pandas (~1.5 s, ~100 MB): only processes that ask pay.
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    if not arm.exposures or not control.exposures:
        raise ValueError("the fixed-horizon test needs exposures in the arm and the control")
    pooled = (arm.successes + control.successes) / (arm.exposures + control.exposures)
    if pooled in (0, 1):
        p = 1.0  # all successes or none on both sides: no evidence either way
    else:
        _z, p = proportions_ztest(
            [arm.successes, control.successes], [arm.exposures, control.exposures]
        )
    low, high = confint_proportions_2indep(
        arm.successes,
        arm.exposures,
        control.successes,
        control.exposures,
        method="newcomb",
        compare="diff",
        alpha=alpha,
    )
    return float(p), float(low), float(high)


# --- the Bayesian view ----------------------------------------------------------------


@dataclass(frozen=True)
class Posterior:
    """An arm's Beta(1 + s, 1 + n − s) posterior, summarised."""

    arm: str
    mean: float
    low: float  # the equal-tailed credible interval at CREDIBLE_LEVEL
    high: float
    probability_best: float  # that its rate is the highest of the arms passed
    expected_loss: float  # E[highest rate − its rate], in rate units


def _beta_parameters(arms: Sequence[ArmCounts]) -> tuple[np.ndarray, np.ndarray]:
    successes = np.array([a.successes for a in arms], dtype=float)
    exposures = np.array([a.exposures for a in arms], dtype=float)
    return 1 + successes, 1 + exposures - successes


def _grid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Quadrature points in (0, 1) covering every posterior (see _GRID_*)."""
    mean = a / (a + b)
    sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    lo = max(0.0, float(np.min(mean - _GRID_SDS * sd)))
    hi = min(1.0, float(np.max(mean + _GRID_SDS * sd)))
    points = math.ceil((hi - lo) / (_GRID_STEP_SDS * float(np.min(sd)))) + 1
    if points <= _GRID_MAX:
        x = np.linspace(lo, hi, max(points, 65))
    else:
        steps = np.linspace(-_GRID_SDS, _GRID_SDS, _ARM_GRID_POINTS)
        x = np.unique(np.concatenate([[lo, hi], (mean[:, None] + sd[:, None] * steps).ravel()]))
        x = x[(x >= lo) & (x <= hi)]
    # The densities are evaluated in logs: keep the points strictly inside (0, 1).
    return np.clip(x, 1e-300, 1 - 1e-16)


def _best_and_loss(arms: Sequence[ArmCounts]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P(best), expected loss, mean) of each arm, by quadrature on one grid.

    P(arm i best) = ∫ f_i(x) Π_{j≠i} F_j(x) dx, and E[max] = ∫ (1 − Π_j F_j(x)) dx,
    with f and F the Beta densities and distribution functions (scipy.special).
    """
    from scipy import special  # loaded on first use: see the module docstring

    a, b = _beta_parameters(arms)
    x = _grid(a, b)
    cdf = special.betainc(a[:, None], b[:, None], x[None, :])
    log_pdf = (
        (a[:, None] - 1) * np.log(x)[None, :]
        + (b[:, None] - 1) * np.log1p(-x)[None, :]
        - special.betaln(a, b)[:, None]
    )
    pdf = np.exp(log_pdf)
    k = len(arms)
    best = np.empty(k)
    for i in range(k):
        others = np.prod(np.delete(cdf, i, axis=0), axis=0) if k > 1 else np.ones_like(x)
        best[i] = np.trapezoid(pdf[i] * others, x)
    best = np.clip(best, 0, None)
    best /= best.sum()  # quadrature error, ~1e-5: the probabilities sum to 1
    # Below the grid every F is ~0 (the integrand is 1), above it every F is ~1.
    expected_max = x[0] + np.trapezoid(1 - np.prod(cdf, axis=0), x)
    mean = a / (a + b)
    return best, np.maximum(expected_max - mean, 0.0), mean


def probability_best(*, arms: Sequence[ArmCounts]) -> dict[str, float]:
    """Each arm's probability of having the highest rate of those passed (method 4)."""
    if not 1 <= len(arms) <= MAX_ARMS + 1:
        raise ValueError(f"1 to {MAX_ARMS + 1} arms (the control included), got {len(arms)}")
    keys = [a.arm for a in arms]
    if len(set(keys)) != len(keys):
        raise ValueError(f"arm keys must be unique, got {keys}")
    best, _loss, _mean = _best_and_loss(arms)
    return {a.arm: float(p) for a, p in zip(arms, best, strict=True)}


def posteriors(*, arms: Sequence[ArmCounts]) -> dict[str, Posterior]:
    """Each arm's posterior, probability of being best and expected loss (method 4).

    Pass the control with the variants: "best" is among every arm passed.
    """
    from scipy import special  # loaded on first use: see the module docstring

    if not 1 <= len(arms) <= MAX_ARMS + 1:
        raise ValueError(f"1 to {MAX_ARMS + 1} arms (the control included), got {len(arms)}")
    keys = [a.arm for a in arms]
    if len(set(keys)) != len(keys):
        raise ValueError(f"arm keys must be unique, got {keys}")
    best, loss, mean = _best_and_loss(arms)
    a, b = _beta_parameters(arms)
    tail = (1 - CREDIBLE_LEVEL) / 2
    low = special.betaincinv(a, b, tail)
    high = special.betaincinv(a, b, 1 - tail)
    return {
        arm.arm: Posterior(
            arm=arm.arm,
            mean=float(mean[i]),
            low=float(low[i]),
            high=float(high[i]),
            probability_best=float(best[i]),
            expected_loss=float(loss[i]),
        )
        for i, arm in enumerate(arms)
    }


# --- the sample ratio -----------------------------------------------------------------


@dataclass(frozen=True)
class SampleRatio:
    """Observed exposures against the intended split (method 5)."""

    statistic: float | None  # Pearson's chi-squared; None without enough data
    p_value: float | None
    mismatch: bool  # p < alpha: warn, and block automatic decisions
    enough_data: bool
    observed: dict[str, float]  # each arm's share of the exposures
    expected: dict[str, float]  # the intended shares


def sample_ratio_check(
    *,
    exposures: Mapping[str, int],
    shares: Mapping[str, float],
    alpha: float = SRM_ALPHA,
    min_exposures: int = SRM_MIN_EXPOSURES,
) -> SampleRatio:
    """Is the traffic split as intended? Pearson's chi-squared test (scipy).

    `shares` are the intended shares (`allocation.shares_check`), or for shares that
    changed over time, their exposure-weighted average (`allocation.shares_served`).
    An arm served with share 0 is a mismatch outright. No verdict below
    `min_exposures` in all, or while an arm expects fewer than 5 exposures.
    The statistic is Σ (observed − expected)² / expected with k − 1 degrees of freedom,
    scipy.stats.chisquare's; its p-value is scipy.special.chdtrc, without the
    ~0.2 ms of chisquare's wrappers (the bench calls this hourly in every experiment).
    """
    from scipy import special  # loaded on first use: see the module docstring

    intended = shares_check(shares)
    if set(exposures) != set(intended):
        missing = sorted(set(intended) - set(exposures))
        extra = sorted(set(exposures) - set(intended))
        raise ValueError(
            f"exposures and shares must name the same arms; "
            f"missing exposures: {missing}, exposures without a share: {extra}"
        )
    counts: dict[str, int] = {}
    for arm, count in exposures.items():
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
            raise ValueError(f"arm {arm!r}: exposures must be a whole number >= 0, got {count!r}")
        counts[arm] = int(count)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    total = sum(counts.values())
    observed = {arm: (count / total if total else 0.0) for arm, count in counts.items()}
    unintended = [arm for arm, count in counts.items() if count and intended[arm] == 0]
    if unintended:
        return SampleRatio(math.inf, 0.0, True, True, observed, intended)
    served = [arm for arm in counts if intended[arm] > 0]
    ready = total >= min_exposures and all(total * intended[arm] >= 5 for arm in served)
    if not ready or len(served) < 2:
        return SampleRatio(None, None, False, False, observed, intended)
    statistic = math.fsum(
        (counts[arm] - total * intended[arm]) ** 2 / (total * intended[arm]) for arm in served
    )
    p_value = float(special.chdtrc(len(served) - 1, statistic))
    return SampleRatio(statistic, p_value, p_value < alpha, True, observed, intended)


# --- decisions ------------------------------------------------------------------------


class Decision(StrEnum):
    KEEP_RUNNING = "keep running"
    LOSER = "loser"  # pause it
    WINNER_PROPOSED = "winner proposed"  # a person promotes it, or not


@dataclass(frozen=True)
class ArmDecision:
    arm: str
    decision: Decision
    reason: str  # a sentence for the page


def decide(
    *,
    comparisons: Sequence[Comparison],
    posterior: Mapping[str, Posterior],
    sample_ratio: SampleRatio,
    min_exposures: int = DEFAULT_MIN_EXPOSURES,
    winner_probability: float = WINNER_PROBABILITY,
) -> dict[str, ArmDecision]:
    """Each arm's decision (method 6), from one experiment's comparisons.

    1. A sample-ratio mismatch blocks everything: every arm keeps running.
    2. A loser: worse than the control by the corrected sequential test.
    3. A winner proposed: better than the control by the same test, probability of
       being best (among the arms and the control) >= `winner_probability`, and every
       arm, the control included, has `min_exposures`. The probability alone is not
       enough: looked at every hour for two weeks, it passes 95% in 6% of experiments
       where every arm is the same (bench/experiments.py, bayes_only_false_winner_rate).
    4. Otherwise keep running.
    """
    if not 0.5 <= winner_probability < 1:
        raise ValueError(f"winner_probability must be in [0.5, 1), got {winner_probability!r}")
    out: dict[str, ArmDecision] = {}
    if sample_ratio.mismatch:
        reason = (
            f"blocked: the traffic does not follow the intended split "
            f"(sample-ratio p = {sample_ratio.p_value:.2g})"
        )
        return {c.arm: ArmDecision(c.arm, Decision.KEEP_RUNNING, reason) for c in comparisons}
    everyone_sampled = bool(comparisons) and all(
        c.exposures >= min_exposures and c.control_exposures >= min_exposures for c in comparisons
    )
    for c in comparisons:
        best = posterior[c.arm].probability_best if c.arm in posterior else 0.0
        if c.worse:
            out[c.arm] = ArmDecision(
                c.arm,
                Decision.LOSER,
                f"worse than the control: at most {_points(c.high)} points by the corrected "
                f"sequential test (adjusted p = {c.adjusted_p:.2g})",
            )
        elif c.better and best >= winner_probability and everyone_sampled:
            out[c.arm] = ArmDecision(
                c.arm,
                Decision.WINNER_PROPOSED,
                f"better than the control by at least {_points(c.low)} points, and the best "
                f"arm with probability {best:.1%}",
            )
        elif not c.enough_data:
            out[c.arm] = ArmDecision(c.arm, Decision.KEEP_RUNNING, "not enough data yet")
        else:
            out[c.arm] = ArmDecision(c.arm, Decision.KEEP_RUNNING, "no verdict yet")
    return out


def _points(value: float | None) -> str:
    """A difference of rates in percentage points."""
    return "?" if value is None else f"{abs(value) * 100:.2f}"


@dataclass(frozen=True)
class Analysis:
    """Everything a page shows about one experiment."""

    comparisons: list[Comparison]
    posterior: dict[str, Posterior]
    sample_ratio: SampleRatio
    decisions: dict[str, ArmDecision]


def analyse(
    *,
    control: ArmCounts,
    arms: Sequence[ArmCounts],
    shares: Mapping[str, float],
    alpha: float = DEFAULT_ALPHA,
    correction: Correction = DEFAULT_CORRECTION,
    tuning: int = DEFAULT_TUNING,
    min_exposures: int = DEFAULT_MIN_EXPOSURES,
    winner_probability: float = WINNER_PROBABILITY,
    fixed_horizon: bool = True,
    adaptive: bool = False,
) -> Analysis:
    """One experiment: comparisons (corrected across its arms), posteriors, the sample
    ratio against `shares` (keyed by `control.arm` and the arms' keys) and decisions.

    `shares`: the intended split; under Thompson sampling, `allocation.shares_served`
    of the shares in force, with `adaptive=True`.
    """
    comparisons = compare_arms(
        control=control,
        arms=arms,
        alpha=alpha,
        correction=correction,
        tuning=tuning,
        min_exposures=min_exposures,
        fixed_horizon=fixed_horizon,
        adaptive=adaptive,
    )
    posterior = posteriors(arms=[control, *arms])
    sample_ratio = sample_ratio_check(
        exposures={a.arm: a.exposures for a in [control, *arms]}, shares=shares
    )
    decisions = decide(
        comparisons=comparisons,
        posterior=posterior,
        sample_ratio=sample_ratio,
        min_exposures=min_exposures,
        winner_probability=winner_probability,
    )
    return Analysis(comparisons, posterior, sample_ratio, decisions)


# --- wear-out -------------------------------------------------------------------------


@dataclass(frozen=True)
class WearOut:
    """The trend of an arm's rate relative to the control's, day by day (method 7)."""

    arm: str
    days: int  # days with enough successes on both sides
    trend: float | None  # relative change of rate / control rate per day (−0.02: −2%/day)
    low: float | None  # its confidence interval at 1 − 2·alpha (the one-sided test's)
    high: float | None
    p_value: float | None  # one-sided: the trend is downward
    wearing_out: bool


def wear_out(
    *,
    arm_days: Sequence[ArmCounts],
    control_days: Sequence[ArmCounts],
    alpha: float = WEAR_OUT_ALPHA,
    min_days: int = WEAR_OUT_MIN_DAYS,
) -> WearOut:
    """Does the arm's rate fall over time against the control's?

    `arm_days[d]` and `control_days[d]` are day d's counts (consecutive days, oldest
    first). The method, a fixed-effect meta-regression:

    1. Each day with at least 5 successes on both sides gives the log relative rate
       r_d = ln(p_arm / p_control), with variance v_d = (1 − p_arm)/s_arm + (1 −
       p_control)/s_control (the delta method). Dividing by the control's rate of the
       same day takes out whatever changes for everyone (weekends, seasons).
    2. The weighted least-squares slope of r_d on d, weights 1 / v_d, with its
       standard error 1 / √Σ w (d − d̄)².
    3. One-sided z-test of a downward slope; the trend is exp(slope) − 1 per day.

    A fixed-horizon test over the window passed (e.g. the last 28 days): a warning for
    a person to read, never an automatic decision.
    """
    from scipy import special  # loaded on first use: see the module docstring

    if len(arm_days) != len(control_days):
        raise ValueError(
            f"arm_days and control_days must cover the same days, got {len(arm_days)} "
            f"and {len(control_days)}"
        )
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be between 0 and 0.5, got {alpha!r}")
    if min_days < 3:
        raise ValueError(f"min_days must be >= 3 (a trend needs points), got {min_days!r}")
    key = arm_days[0].arm if arm_days else ""
    days, logs, weights = [], [], []
    for day, (arm, control) in enumerate(zip(arm_days, control_days, strict=True)):
        if arm.successes < WEAR_OUT_MIN_SUCCESSES or control.successes < WEAR_OUT_MIN_SUCCESSES:
            continue
        p1, p0 = arm.successes / arm.exposures, control.successes / control.exposures
        variance = (1 - p1) / arm.successes + (1 - p0) / control.successes
        days.append(day)
        logs.append(math.log(p1 / p0))
        weights.append(1 / variance)
    if len(days) < min_days:
        return WearOut(key, len(days), None, None, None, None, False)
    d, r, w = np.array(days, float), np.array(logs), np.array(weights)
    d_bar = np.sum(w * d) / np.sum(w)
    r_bar = np.sum(w * r) / np.sum(w)
    spread = float(np.sum(w * (d - d_bar) ** 2))
    slope = float(np.sum(w * (d - d_bar) * (r - r_bar))) / spread
    se = 1 / math.sqrt(spread)
    p_value = float(special.ndtr(slope / se))
    z = float(special.ndtri(1 - alpha))
    return WearOut(
        arm=key,
        days=len(days),
        trend=math.expm1(slope),
        low=math.expm1(slope - z * se),
        high=math.expm1(slope + z * se),
        p_value=p_value,
        wearing_out=p_value < alpha,
    )
