"""review/experiments/stats.py: each method against an independent computation (scipy,
statsmodels, the dashboard's review/metrics.py, closed forms), its properties, and
bad input. Pure: no database."""

import math
import re

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as scipy_stats
from scipy.special import betaln
from statsmodels.regression.linear_model import WLS
from statsmodels.stats.multitest import multipletests

from review import metrics
from review.experiments import explain, stats
from review.experiments.allocation import CONTROL, equal_split
from review.experiments.stats import ArmCounts, Decision


def arm(key, exposures, successes):
    return ArmCounts(key, exposures, successes)


# --- counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exposures", "successes", "message"),
    [
        (-1, 0, "arm 'v1': exposures must be >= 0, got -1"),
        (10, -2, "arm 'v1': successes must be >= 0, got -2"),
        (10, 12, r"arm 'v1': successes \(12\) exceed exposures \(10\)"),
        (10.5, 1, "arm 'v1': exposures must be a whole number, got 10.5"),
        (True, 0, "arm 'v1': exposures must be a whole number, got True"),
    ],
)
def test_counts_refuse_impossible_numbers_naming_the_arm(exposures, successes, message):
    with pytest.raises(ValueError, match=message):
        ArmCounts("v1", exposures, successes)


def test_counts_take_numpy_integers_as_ints():
    counts = ArmCounts("v1", np.int64(100), np.int32(3))
    assert type(counts.exposures) is int and counts.rate == 0.03


# --- the sequential comparison --------------------------------------------------------


def _mixture_ratio_by_integration(theta, variance, tau2):
    """Λ = ∫ N(θ̂; θ, V) / N(θ̂; 0, V) · N(θ; 0, τ²) dθ, integrated numerically."""
    sd = math.sqrt(variance)

    def integrand(t):
        ratio = scipy_stats.norm.pdf(theta, t, sd) / scipy_stats.norm.pdf(theta, 0, sd)
        return ratio * scipy_stats.norm.pdf(t, 0, math.sqrt(tau2))

    return integrate.quad(integrand, -50 * math.sqrt(tau2), 50 * math.sqrt(tau2), limit=400)[0]


@pytest.mark.parametrize(
    ("a", "c"),
    [((5000, 180), (5000, 150)), ((20000, 700), (8000, 240)), ((3000, 90), (3000, 92))],
)
def test_sequential_p_value_is_one_over_the_normal_mixture_likelihood_ratio(a, c):
    """The closed form against the mixture integrated numerically (Johari et al.)."""
    v, control = arm("v1", *a), arm(CONTROL, *c)
    p1, p0 = a[1] / a[0], c[1] / c[0]
    variance = p1 * (1 - p1) / a[0] + p0 * (1 - p0) / c[0]
    rho2 = (-2 * math.log(0.05) + math.log(-2 * math.log(0.05) + 1)) / stats.DEFAULT_TUNING
    tau2 = variance * (a[0] + c[0]) * rho2
    expected = min(1.0, 1 / _mixture_ratio_by_integration(p1 - p0, variance, tau2))
    assert stats.sequential_p_value(arm=v, control=control) == pytest.approx(expected, rel=1e-6)


def test_sequential_interval_excludes_zero_exactly_when_the_p_value_is_below_its_level():
    v, control = arm("v1", 10000, 380), arm(CONTROL, 10000, 300)
    p = stats.sequential_p_value(arm=v, control=control)
    assert 0.001 < p < 0.05
    low, _high = stats.sequential_interval(arm=v, control=control, level=p)
    assert low == pytest.approx(0, abs=1e-12)
    assert stats.sequential_interval(arm=v, control=control, level=p * 1.01)[0] > 0
    assert stats.sequential_interval(arm=v, control=control, level=p * 0.99)[0] < 0


def test_sequential_interval_shrinks_as_exposures_grow():
    widths = []
    for n in (2_000, 8_000, 32_000, 128_000):
        low, high = stats.sequential_interval(
            arm=arm("v1", n, int(n * 0.035)), control=arm(CONTROL, n, int(n * 0.03))
        )
        widths.append(high - low)
    assert widths == sorted(widths, reverse=True)
    assert widths[-1] < widths[0] / 4


@pytest.mark.parametrize("n", [500, 5_000, 20_000, 200_000, 2_000_000])
def test_sequential_interval_is_wider_than_the_fixed_horizon_one(n):
    v, control = arm("v1", n, int(n * 0.033)), arm(CONTROL, n, int(n * 0.03))
    low, high = stats.sequential_interval(arm=v, control=control)
    _p, fixed_low, fixed_high = stats.fixed_horizon_test(arm=v, control=control)
    assert low < fixed_low and high > fixed_high


def test_sequential_interval_is_tightest_near_the_tuning_sample_size():
    def scaled_width(n):  # width × √N: what is left once the usual 1/√N is taken out
        low, high = stats.sequential_interval(
            arm=arm("v1", n, n * 3 // 100), control=arm(CONTROL, n, n * 3 // 100), tuning=20_000
        )
        return (high - low) * math.sqrt(2 * n)

    sizes = [1_000, 2_500, 5_000, 10_000, 20_000, 40_000, 80_000, 200_000]
    best = min(sizes, key=scaled_width)
    assert best == 10_000  # N = 2 × 10,000 = the tuning


def _one_rate_half_width(counts, level, tuning):
    """The normal-mixture interval of one rate, in Waudby-Smith et al.'s form (GrowthBook's):
    σ̂ √(2 (nρ² + 1) / (n² ρ²) · ln(√(nρ² + 1) / level)), ρ tuned for `tuning`."""
    n, p = counts.exposures, counts.rate
    rho2 = (-2 * math.log(0.05) + math.log(-2 * math.log(0.05) + 1)) / tuning
    return math.sqrt(
        p
        * (1 - p)
        * 2
        * (n * rho2 + 1)
        / (n * n * rho2)
        * math.log(math.sqrt(n * rho2 + 1) / level)
    )


def test_adaptive_interval_is_the_arm_and_control_intervals_at_half_the_level_combined():
    v, control = arm("v1", 30_000, 1_150), arm(CONTROL, 10_000, 300)
    low, high = stats.sequential_interval(arm=v, control=control, adaptive=True)
    half = sum(_one_rate_half_width(c, 0.025, stats.DEFAULT_TUNING / 2) for c in (v, control))
    assert (low, high) == pytest.approx(
        (v.rate - control.rate - half, v.rate - control.rate + half)
    )
    fixed_split = stats.sequential_interval(arm=v, control=control)
    assert low < fixed_split[0] and high > fixed_split[1]


def test_adaptive_p_value_is_the_level_at_which_its_interval_reaches_zero():
    v, control = arm("v1", 30_000, 1_250), arm(CONTROL, 10_000, 300)
    p = stats.sequential_p_value(arm=v, control=control, adaptive=True)
    assert 1e-6 < p < 0.05
    assert stats.sequential_p_value(arm=v, control=control) < p  # the fixed-split test is sharper
    low, _high = stats.sequential_interval(arm=v, control=control, level=p, adaptive=True)
    assert low == pytest.approx(0, abs=1e-12)
    assert stats.sequential_p_value(arm=arm("v1", 30_000, 910), control=control, adaptive=True) == 1


def test_fixed_horizon_results_are_the_dashboards_test_and_interval():
    """statsmodels' z-test and Newcombe interval = review/metrics.py's, by hand there."""
    v, control = arm("v1", 1000, 60), arm(CONTROL, 1000, 40)
    p, low, high = stats.fixed_horizon_test(arm=v, control=control)
    _z, expected_p = metrics.two_proportion_test(60, 1000, 40, 1000)
    assert p == pytest.approx(expected_p, rel=1e-9)
    assert (low, high) == pytest.approx(
        metrics.difference_interval(60, 1000, 40, 1000, confidence=0.95), rel=1e-6
    )


# --- corrections ----------------------------------------------------------------------


def test_holm_and_benjamini_hochberg_differ_as_they_should_on_a_known_vector():
    p = [0.01, 0.02, 0.03, 0.04, 0.05]
    # Holm: 5·0.01, 4·0.02, 3·0.03 and then the running maximum.
    assert stats.p_values_adjust(p, method="holm") == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    # Benjamini-Hochberg: m·p/rank = 0.05 for all five.
    assert stats.p_values_adjust(p, method="fdr_bh") == pytest.approx([0.05] * 5)
    # At α = 0.05 Holm rejects one hypothesis, BH all five.
    assert sum(q <= 0.05 for q in stats.p_values_adjust(p, method="holm")) == 1
    assert sum(q <= 0.05 for q in stats.p_values_adjust(p, method="fdr_bh")) == 5


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_corrections_match_statsmodels_multipletests(method):
    rng = np.random.default_rng(17)
    for size in (1, 2, 5, 11, 44):
        p = np.concatenate([rng.uniform(0, 0.05, size // 2), rng.uniform(0, 1, size - size // 2)])
        rng.shuffle(p)
        expected = multipletests(p, method=method)[1]
        assert stats.p_values_adjust(list(p), method=method) == pytest.approx(list(expected))


def test_a_correction_other_than_holm_or_bh_is_refused():
    with pytest.raises(ValueError, match="correction must be one of holm, fdr_bh, got 'bonf'"):
        stats.p_values_adjust([0.1], method="bonf")
    with pytest.raises(ValueError, match="p-values must be numbers between 0 and 1"):
        stats.p_values_adjust([0.1, 1.5])


# --- comparisons ----------------------------------------------------------------------


def _experiment():
    control = arm(CONTROL, 20_000, 600)  # 3.0%
    arms = [
        arm("v1", 40_000, 1_480),  # 3.7%: clearly better
        arm("v2", 40_000, 960),  # 2.4%: clearly worse
        arm("v3", 40_000, 1_230),  # 3.075%: no verdict
        arm("v4", 500, 15),  # too few exposures
    ]
    return control, arms


def test_comparisons_correct_across_the_arms_and_agree_with_their_intervals():
    control, arms = _experiment()
    comparisons = {c.arm: c for c in stats.compare_arms(control=control, arms=arms)}
    raw = [comparisons[a.arm].sequential_p for a in arms]
    assert raw[3] == 1.0  # not enough data: in the family, never rejected
    assert [comparisons[a.arm].adjusted_p for a in arms] == pytest.approx(
        list(multipletests(raw, method="holm")[1])
    )
    assert comparisons["v1"].better and comparisons["v1"].low > 0
    assert comparisons["v2"].worse and comparisons["v2"].high < 0
    v3 = comparisons["v3"]
    assert not v3.significant and v3.low < 0 < v3.high
    assert not comparisons["v4"].enough_data and not comparisons["v4"].significant
    for c in comparisons.values():
        if c.low is not None:
            assert (c.low > 0 or c.high < 0) == (c.adjusted_p <= 0.05)
    assert comparisons["v1"].lift == pytest.approx(0.037 / 0.03 - 1)
    assert comparisons["v1"].lift_low == pytest.approx(comparisons["v1"].low / 0.03)


def test_adaptive_comparisons_use_the_adaptive_p_values():
    control, arms = _experiment()
    comparisons = stats.compare_arms(control=control, arms=arms[:3], adaptive=True)
    for c, a in zip(comparisons, arms[:3], strict=True):
        assert c.sequential_p == stats.sequential_p_value(arm=a, control=control, adaptive=True)
        assert c.sequential_p >= stats.sequential_p_value(arm=a, control=control)


def test_the_corrected_interval_is_wider_where_the_correction_raised_the_p_value():
    control, arms = _experiment()
    for c, a in zip(stats.compare_arms(control=control, arms=arms), arms, strict=True):
        low, high = stats.sequential_interval(arm=a, control=control)
        if c.adjusted_p > c.sequential_p:
            assert c.low < low and c.high > high, c.arm
        else:  # p = 1 stays 1: the interval at α itself
            assert (c.low, c.high) == pytest.approx((low, high)), c.arm


def test_correcting_across_segments_is_stricter_than_within_one():
    control, arms = _experiment()
    alone = stats.compare_arms(control=control, arms=arms)
    together = stats.compare_segments(
        segments={"students": (control, arms), "parents": (control, arms)}
    )
    for one, both in zip(alone, together["students"], strict=True):
        assert both.sequential_p == one.sequential_p
        assert both.adjusted_p >= one.adjusted_p
    assert together["students"][0].segment == "students"
    # Eight comparisons instead of four: Holm multiplies the smallest p-value by 8.
    smallest = min(c.sequential_p for c in alone)
    assert min(c.adjusted_p for c in together["parents"]) == pytest.approx(8 * smallest)


def test_fixed_horizon_fields_are_filled_only_when_asked_and_with_enough_data():
    control, arms = _experiment()
    with_fixed = stats.compare_arms(control=control, arms=arms)
    assert with_fixed[0].fixed_p is not None and with_fixed[3].fixed_p is None
    assert stats.compare_arms(control=control, arms=arms, fixed_horizon=False)[0].fixed_p is None


def test_comparisons_refuse_more_than_ten_arms_and_duplicate_keys():
    control = arm(CONTROL, 1000, 30)
    with pytest.raises(ValueError, match="1 to 10 variants besides the control, got 11"):
        stats.compare_arms(control=control, arms=[arm(f"v{i}", 1000, 30) for i in range(11)])
    with pytest.raises(ValueError, match="arm keys must be unique"):
        stats.compare_arms(control=control, arms=[arm("v1", 1000, 30), arm("v1", 900, 20)])
    with pytest.raises(ValueError, match="the control's key 'control' is also an arm's"):
        stats.compare_arms(control=control, arms=[arm(CONTROL, 1000, 30)])
    with pytest.raises(ValueError, match="segment 'students': 1 to 10 variants"):
        stats.compare_segments(segments={"students": (control, [])})


# --- the Bayesian view ----------------------------------------------------------------


def _probability_second_is_higher(a1, b1, a2, b2):
    """P(Y > X), X ~ Beta(a1, b1), Y ~ Beta(a2, b2), a2 a whole number, in closed form:
    the sum over i < a2 of B(a1 + i, b1 + b2) / ((b2 + i) B(1 + i, b2) B(a1, b1))
    (Evan Miller, "Formulas for Bayesian A/B testing", 2015)."""
    total = 0.0
    for i in range(int(a2)):
        total += math.exp(
            betaln(a1 + i, b1 + b2) - math.log(b2 + i) - betaln(1 + i, b2) - betaln(a1, b1)
        )
    return total


@pytest.mark.parametrize(
    ("first", "second"), [((1000, 35), (1000, 30)), ((250, 4), (4000, 80)), ((60, 0), (60, 1))]
)
def test_probability_best_of_two_matches_the_closed_form(first, second):
    best = stats.probability_best(arms=[arm("a", *first), arm("b", *second)])
    expected = _probability_second_is_higher(
        1 + first[1], 1 + first[0] - first[1], 1 + second[1], 1 + second[0] - second[1]
    )
    assert best["b"] == pytest.approx(expected, abs=2e-4)
    assert best["a"] + best["b"] == pytest.approx(1)


def _monte_carlo(arms, draws=400_000):
    """P(best) and expected loss from seeded draws, with the loss's standard error."""
    rng = np.random.default_rng(2026)
    a = np.array([1 + x.successes for x in arms], float)
    b = np.array([1 + x.exposures - x.successes for x in arms], float)
    sample = rng.beta(a[:, None], b[:, None], size=(len(arms), draws))
    best = np.bincount(sample.argmax(axis=0), minlength=len(arms)) / draws
    regret = sample.max(axis=0)[None, :] - sample
    return best, regret.mean(axis=1), regret.std(axis=1) / math.sqrt(draws)


@pytest.mark.parametrize(
    "counts",
    [
        # Five arms of an ordinary experiment.
        [(20_000, 600), (45_000, 1_400), (45_000, 1_350), (45_000, 1_500), (45_000, 1_420)],
        # Very different widths (the control with a million exposures, one arm with 40):
        # the grid falls back to each arm's own points.
        [(1_000_000, 30_000), (40, 2), (5_000, 160)],
    ],
)
def test_probability_best_and_expected_loss_match_a_seeded_monte_carlo(counts):
    arms = [arm(f"a{i}", n, s) for i, (n, s) in enumerate(counts)]
    posterior = stats.posteriors(arms=arms)
    best, loss, loss_se = _monte_carlo(arms)
    for i, a in enumerate(arms):
        # Monte Carlo's standard error at 400,000 draws is below 0.0008.
        assert posterior[a.arm].probability_best == pytest.approx(best[i], abs=0.003)
        assert posterior[a.arm].expected_loss == pytest.approx(loss[i], abs=4 * loss_se[i] + 1e-7)
    assert sum(p.probability_best for p in posterior.values()) == pytest.approx(1)


def test_posterior_summary_is_the_beta_distribution_of_scipy():
    posterior = stats.posteriors(arms=[arm("v1", 2000, 70)])["v1"]
    beta = scipy_stats.beta(71, 1931)
    assert posterior.mean == pytest.approx(beta.mean())
    assert (posterior.low, posterior.high) == pytest.approx(beta.ppf([0.025, 0.975]))
    assert posterior.probability_best == 1 and posterior.expected_loss == pytest.approx(0, abs=1e-9)


def test_equal_arms_are_equally_likely_best():
    best = stats.probability_best(arms=[arm(f"v{i}", 3000, 90) for i in range(4)])
    assert list(best.values()) == pytest.approx([0.25] * 4, abs=1e-6)


# --- the sample ratio -----------------------------------------------------------------


def test_sample_ratio_statistic_and_p_value_are_scipys_chisquare():
    shares = equal_split(arms=["v1", "v2", "v3", "v4"])
    exposures = {CONTROL: 1_060, "v1": 2_250, "v2": 2_190, "v3": 2_300, "v4": 2_200}
    result = stats.sample_ratio_check(exposures=exposures, shares=shares)
    total = sum(exposures.values())
    expected = scipy_stats.chisquare(
        list(exposures.values()), [total * shares[k] for k in exposures]
    )
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.observed[CONTROL] == pytest.approx(1_060 / total)


def test_sample_ratio_fires_on_a_broken_split_and_not_on_a_fair_one():
    rng = np.random.default_rng(1)
    shares = equal_split(arms=["v1", "v2", "v3", "v4"])
    keys = list(shares)
    fair = rng.multinomial(50_000, [shares[k] for k in keys])
    broken = fair.copy()
    broken[1] = int(broken[1] * 0.95)  # an arm loses 5% of its exposures
    fair_check = stats.sample_ratio_check(
        exposures=dict(zip(keys, fair, strict=True)), shares=shares
    )
    broken_check = stats.sample_ratio_check(
        exposures=dict(zip(keys, broken, strict=True)), shares=shares
    )
    assert fair_check.enough_data and not fair_check.mismatch
    assert broken_check.mismatch and broken_check.p_value < 0.001


def test_sample_ratio_has_no_verdict_on_little_traffic_and_flags_an_arm_not_meant_to_be_served():
    shares = {CONTROL: 0.5, "v1": 0.5, "v2": 0.0}
    small = stats.sample_ratio_check(exposures={CONTROL: 300, "v1": 100, "v2": 0}, shares=shares)
    assert not small.enough_data and not small.mismatch and small.p_value is None
    served = stats.sample_ratio_check(exposures={CONTROL: 300, "v1": 300, "v2": 1}, shares=shares)
    assert served.mismatch


@pytest.mark.parametrize(
    ("exposures", "shares", "message"),
    [
        (
            {CONTROL: 10, "v1": 10},
            {CONTROL: 0.5, "v1": 0.6},
            "shares must sum to 1, they sum to 1.1",
        ),
        ({CONTROL: 10, "v1": 10}, {"v1": 1.0}, "shares must include the control"),
        ({CONTROL: 10}, {CONTROL: 0.5, "v1": 0.5}, r"missing exposures: \['v1'\]"),
        ({CONTROL: 10, "v1": -1}, {CONTROL: 0.5, "v1": 0.5}, "arm 'v1': exposures must be a whole"),
        ({CONTROL: 10, "v1": 1}, {CONTROL: 0.5, "v1": -0.5}, "arm 'v1': share must be between"),
    ],
)
def test_sample_ratio_refuses_bad_input_naming_what_is_wrong(exposures, shares, message):
    with pytest.raises(ValueError, match=message):
        stats.sample_ratio_check(exposures=exposures, shares=shares)


# --- decisions ------------------------------------------------------------------------


def _analyse(control, arms, **kw):
    shares = kw.pop("shares", None) or equal_split(arms=[a.arm for a in arms])
    return stats.analyse(control=control, arms=arms, shares=shares, **kw)


def _split(total, shares):
    return {k: round(total * s) for k, s in shares.items()}


def test_a_clearly_worse_arm_is_a_loser_and_a_clearly_best_one_is_proposed():
    shares = equal_split(arms=["v1", "v2", "v3"])
    n = _split(100_000, shares)
    control = arm(CONTROL, n[CONTROL], round(n[CONTROL] * 0.030))
    arms = [
        arm("v1", n["v1"], round(n["v1"] * 0.040)),
        arm("v2", n["v2"], round(n["v2"] * 0.022)),
        arm("v3", n["v3"], round(n["v3"] * 0.031)),
    ]
    decisions = _analyse(control, arms, shares=shares).decisions
    assert decisions["v1"].decision == Decision.WINNER_PROPOSED
    assert decisions["v2"].decision == Decision.LOSER
    assert decisions["v3"].decision == Decision.KEEP_RUNNING
    assert "worse than the control" in decisions["v2"].reason


def test_a_sample_ratio_mismatch_blocks_every_decision():
    shares = equal_split(arms=["v1", "v2", "v3"])
    n = _split(100_000, shares)
    n["v3"] = int(n["v3"] * 0.9)
    control = arm(CONTROL, n[CONTROL], round(n[CONTROL] * 0.030))
    arms = [
        arm("v1", n["v1"], round(n["v1"] * 0.040)),
        arm("v2", n["v2"], round(n["v2"] * 0.022)),
        arm("v3", n["v3"], round(n["v3"] * 0.031)),
    ]
    analysis = _analyse(control, arms, shares=shares)
    assert analysis.sample_ratio.mismatch
    assert {d.decision for d in analysis.decisions.values()} == {Decision.KEEP_RUNNING}
    assert all(d.reason.startswith("blocked") for d in analysis.decisions.values())


def test_probability_of_being_best_alone_proposes_no_winner():
    """v1 is very likely the best arm, but not yet better than the control by the
    corrected sequential test: keep running."""
    shares = {CONTROL: 0.4, "v1": 0.3, "v2": 0.3}
    control = arm(CONTROL, 24_000, 720)  # 3.0%
    arms = [arm("v1", 18_000, 630), arm("v2", 18_000, 540)]  # 3.5%, 3.0%
    analysis = _analyse(control, arms, shares=shares)
    assert analysis.posterior["v1"].probability_best >= 0.95
    assert not analysis.comparisons[0].better
    assert analysis.decisions["v1"].decision == Decision.KEEP_RUNNING


def test_no_winner_until_every_arm_has_the_minimum_sample():
    shares = equal_split(arms=["v1", "v2"])
    n = _split(100_000, shares)
    control = arm(CONTROL, n[CONTROL], round(n[CONTROL] * 0.030))
    arms = [arm("v1", n["v1"], round(n["v1"] * 0.040)), arm("v2", n["v2"], round(n["v2"] * 0.02))]
    assert _analyse(control, arms, shares=shares).decisions["v1"].decision == (
        Decision.WINNER_PROPOSED
    )
    strict = _analyse(control, arms, shares=shares, min_exposures=50_000)
    assert strict.decisions["v1"].decision == Decision.KEEP_RUNNING
    assert strict.decisions["v1"].reason == "not enough data yet"


# --- wear-out -------------------------------------------------------------------------


def _days(rng, lifts, control_rate=0.03, exposures=4_000):
    arm_days, control_days = [], []
    for lift in lifts:
        arm_days.append(arm("v1", exposures, int(rng.binomial(exposures, control_rate * lift))))
        control_days.append(arm(CONTROL, exposures, int(rng.binomial(exposures, control_rate))))
    return arm_days, control_days


def test_wear_out_finds_a_lift_that_fades_and_not_one_that_holds():
    rng = np.random.default_rng(3)
    fading = _days(rng, np.linspace(1.4, 1.0, 21))
    steady = _days(rng, [1.3] * 21)
    result = stats.wear_out(arm_days=fading[0], control_days=fading[1])
    assert result.wearing_out and result.trend < 0 and result.high < 0 < result.days
    assert not stats.wear_out(arm_days=steady[0], control_days=steady[1]).wearing_out


def test_wear_out_slope_is_the_weighted_least_squares_slope_of_statsmodels():
    rng = np.random.default_rng(4)
    arm_days, control_days = _days(rng, np.linspace(1.3, 1.1, 14))
    result = stats.wear_out(arm_days=arm_days, control_days=control_days)
    y, w = [], []
    for a, c in zip(arm_days, control_days, strict=True):
        p1, p0 = a.rate, c.rate
        y.append(math.log(p1 / p0))
        w.append(1 / ((1 - p1) / a.successes + (1 - p0) / c.successes))
    fit = WLS(y, np.column_stack([np.ones(14), np.arange(14)]), weights=w).fit()
    assert math.log1p(result.trend) == pytest.approx(fit.params[1])
    # Known variances, not estimated: the slope's SE is WLS's without the scale.
    assert result.p_value == pytest.approx(
        scipy_stats.norm.cdf(fit.params[1] / (fit.bse[1] / math.sqrt(fit.scale)))
    )


def test_wear_out_needs_enough_days_and_matching_ones():
    rng = np.random.default_rng(5)
    arm_days, control_days = _days(rng, [1.2] * 5)
    short = stats.wear_out(arm_days=arm_days, control_days=control_days)
    assert short.days == 5 and short.p_value is None and not short.wearing_out
    with pytest.raises(ValueError, match="must cover the same days, got 5 and 4"):
        stats.wear_out(arm_days=arm_days, control_days=control_days[:4])


# --- explanations ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(explain.EXPLANATIONS))
def test_each_explanation_is_two_sentences(name):
    text = explain.EXPLANATIONS[name]
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    assert len(sentences) == 2, sentences


def test_an_overwhelming_difference_is_compared_without_underflowing_the_level():
    # z about 38.5: the sequential p-value is a denormal float, and alpha * p once
    # rounded to 0 and made the corrected interval's level 0 (a ValueError).
    control = arm(CONTROL, 100_000, 2_000)
    [comparison] = stats.compare_arms(control=control, arms=[arm("v1", 100_000, 5_229)])
    assert comparison.adjusted_p < 1e-100
    assert comparison.low is not None and comparison.low > 0
