"""Experiments against a known truth: do the statistics cry wolf, and what do they cost?

    .venv/bin/python -m bench.experiments            # every scenario, a few minutes
    .venv/bin/python -m bench.experiments --smoke    # every scenario small, under a minute (CI)
    .venv/bin/python -m bench.experiments --help     # sizes, seed, the method's parameters

Each simulated experiment is one slot: the control (the base copy) and K = 4 variants,
for 14 days. Its traffic is drawn once, log-uniform from 500 to 10,000 exposures an
hour (110 to 2,250 a variant at the default split), times a daily cycle (0.4x at night,
1.6x in the afternoon); the control's true click-through rate uniform from 2% to 5%.
Exposures are drawn per step with numpy (Poisson, then multinomial over the shares in
force), clicks binomially from the true rates: counts, not visitors. Every hour the
experiment is judged by the real code, `review.experiments.stats.analyse` (sequential
comparisons, Holm across the arms, posteriors, the sample-ratio check, decisions), and
a Thompson experiment's shares come from `allocation.thompson_weights` every 15 minutes
(it is judged with `adaptive=True`, its intended split for the sample-ratio check from
`allocation.shares_served`). Decisions are recorded, not acted on: no arm is paused
mid-run.

Scenarios:

1. null: every variant's rate is the control's. `false_winner_rate` is the share of
   experiments in which some arm was ever proposed as a winner over the 336 hourly
   checks (target <= 0.05); `false_decision_rate` counts a false loser too. Baselines
   on the same counts: `naive_peeking_false_winner_rate`, an uncorrected fixed-horizon
   z-test (p < 0.05, better than the control) checked every hour, and
   `bayes_only_false_winner_rate`, the winner rule on the probability of being best
   alone (>= 95%, every arm past the minimum sample, no mismatch), without the
   sequential test. Run with a fixed split, then with Thompson sampling, where
   `fixed_split_test_false_loser_rate_thompson` is the baseline of judging the same
   counts as if the split had been fixed (`adaptive=False`).
2. power: one variant is 20% better than the control, the others equal to it.
   `power` is the share of experiments in which that variant was proposed within 14
   days, `days_to_decision` the median time it took (an experiment stops there).
3. regret: each variant's lift drawn uniformly from −20% to +20%. Clicks lost against
   serving the best arm to everyone, Thompson sampling over a fixed split:
   `regret_ratio` (lower is better), beside both policies' clicks.
4. broken split: one variant loses 5% of its exposures before they are logged (and the
   clicks that follow them). `srm_detection_rate` is the share of experiments whose
   sample-ratio check fires within 14 days; its false alarms come from scenario 1.
5. wear-out: one variant's lift falls from +30% to 0 over the 14 days, against one that
   holds +30%; `stats.wear_out` on the daily counts at day 14.

Figures one a line, `name: value (target ..., met|NOT met)`, with the number of
simulated experiments and a rate's standard error; nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import special

from review.experiments import allocation, stats
from review.experiments.allocation import CONTROL
from review.experiments.stats import ArmCounts, Decision

FALSE_WINNER_TARGET = 0.05
DAYS = 14
ARMS = 4
STEPS_AN_HOUR = 4  # Thompson sampling recomputes every 15 minutes (DEFAULT_CADENCE)
KEYS = [CONTROL, *(f"v{i}" for i in range(1, ARMS + 1))]
# The daily cycle of traffic, mean 1: 0.4x at 2 am, 1.6x at 2 pm.
CYCLE = 1 + 0.6 * np.sin(2 * np.pi * (np.arange(24) - 8) / 24)


@dataclass
class Truth:
    rates: np.ndarray  # control first
    traffic: float  # exposures an hour, on average
    unlogged: np.ndarray = field(default_factory=lambda: np.zeros(ARMS + 1))
    # The lift of each arm over time (wear-out): hour -> rates; None: constant.
    rates_at: Callable[[int], np.ndarray] | None = None


@dataclass
class Outcome:
    """The first hour (from 1) at which each thing happened; None: never."""

    winner: dict[str, int] = field(default_factory=dict)  # arm -> first hour proposed
    loser: dict[str, int] = field(default_factory=dict)
    naive_winner: int | None = None
    bayes_only_winner: int | None = None
    # Under Thompson sampling: a loser by the fixed-split form of the test (method 1).
    fixed_split_test_loser: int | None = None
    mismatch: int | None = None
    clicks: float = 0.0  # expected clicks of the exposures served
    regret: float = 0.0  # expected clicks lost against serving the best arm only
    daily: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def truth_draw(rng: np.random.Generator, lifts: np.ndarray) -> Truth:
    control = rng.uniform(0.02, 0.05)
    traffic = math.exp(rng.uniform(math.log(500), math.log(10_000)))
    return Truth(rates=control * np.concatenate(([1.0], 1 + lifts)), traffic=traffic)


def naive_winner(exposures: np.ndarray, clicks: np.ndarray, min_exposures: int) -> bool:
    """The baseline: some arm better than the control by a fixed-horizon, uncorrected
    pooled z-test at p < 0.05 (review/metrics.py's test), with the same minimum sample."""
    n0, x0, n, x = exposures[0], clicks[0], exposures[1:], clicks[1:]
    ok = (n >= min_exposures) & (n0 >= min_exposures)
    pooled = (x + x0) / (n + n0)
    se = np.sqrt(pooled * (1 - pooled) * (1 / np.maximum(n, 1) + 1 / max(n0, 1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x / np.maximum(n, 1) - x0 / max(n0, 1)) / se
    p = 2 * special.ndtr(-np.abs(z))
    return bool(np.any(ok & (se > 0) & (z > 0) & (p < 0.05)))


def simulate(
    truth: Truth,
    *,
    rng: np.random.Generator,
    thompson: bool,
    judge: Literal["all", "sample_ratio", "none"],
    stop_at_winner: str | None = None,
    options: argparse.Namespace,
) -> Outcome:
    """One experiment, 15-minute steps under Thompson sampling, hourly under a fixed
    split (nothing changes in between). Every hour `judge` "all" runs `stats.analyse`,
    "sample_ratio" only its sample-ratio check, "none" nothing."""
    outcome = Outcome()
    shares = allocation.equal_split(arms=KEYS[1:])
    weights = np.array([shares[k] for k in KEYS])
    served = dict(shares)  # the exposure-weighted shares in force so far
    served_total = 0
    exposures = np.zeros(ARMS + 1, dtype=np.int64)
    clicks = np.zeros(ARMS + 1, dtype=np.int64)
    day_exposures = np.zeros(ARMS + 1, dtype=np.int64)
    day_clicks = np.zeros(ARMS + 1, dtype=np.int64)
    steps = STEPS_AN_HOUR if thompson else 1
    for hour in range(DAYS * 24):
        rates = truth.rates if truth.rates_at is None else truth.rates_at(hour)
        best = rates.max()
        for _ in range(steps):
            total = rng.poisson(truth.traffic * CYCLE[hour % 24] / steps)
            n = rng.multinomial(total, weights)
            outcome.clicks += float(n @ rates)
            outcome.regret += float(n @ (best - rates))
            logged = n - rng.binomial(n, truth.unlogged)
            x = rng.binomial(logged, rates)
            exposures += logged
            clicks += x
            day_exposures += logged
            day_clicks += x
            if thompson:
                # What the split should have produced: shares_served over (what came
                # before, this step), the running form of its exposure-weighted mean.
                step_shares = dict(zip(KEYS, weights.tolist(), strict=True))
                if served_total + total:
                    served = allocation.shares_served(
                        periods=[(served_total, served), (int(total), step_shares)]
                    )
                served_total += int(total)
                new = allocation.thompson_weights(
                    arms=[
                        ArmCounts(k, int(exposures[i]), int(clicks[i]))
                        for i, k in enumerate(KEYS)
                        if i
                    ]
                )
                weights = np.array([new[k] for k in KEYS])
        if hour % 24 == 23:
            outcome.daily.append((day_exposures.copy(), day_clicks.copy()))
            day_exposures[:] = 0
            day_clicks[:] = 0
        at = hour + 1
        if judge == "sample_ratio" and outcome.mismatch is None:
            check = stats.sample_ratio_check(
                exposures=dict(zip(KEYS, exposures.tolist(), strict=True)), shares=served
            )
            if check.mismatch:
                outcome.mismatch = at
        if judge != "all":
            continue
        counts = [ArmCounts(k, int(exposures[i]), int(clicks[i])) for i, k in enumerate(KEYS)]
        analysis = stats.analyse(
            control=counts[0],
            arms=counts[1:],
            shares=served,
            tuning=options.tuning,
            min_exposures=options.min_exposures,
            fixed_horizon=False,
            adaptive=thompson,
        )
        if analysis.sample_ratio.mismatch and outcome.mismatch is None:
            outcome.mismatch = at
        for arm, decision in analysis.decisions.items():
            if decision.decision == Decision.WINNER_PROPOSED:
                outcome.winner.setdefault(arm, at)
            elif decision.decision == Decision.LOSER:
                outcome.loser.setdefault(arm, at)
        if thompson and outcome.fixed_split_test_loser is None:
            plain = stats.compare_arms(
                control=counts[0],
                arms=counts[1:],
                tuning=options.tuning,
                min_exposures=options.min_exposures,
                fixed_horizon=False,
            )
            if any(c.worse for c in plain):
                outcome.fixed_split_test_loser = at
        if outcome.naive_winner is None and naive_winner(exposures, clicks, options.min_exposures):
            outcome.naive_winner = at
        if outcome.bayes_only_winner is None and not analysis.sample_ratio.mismatch:
            everyone = all(c.exposures >= options.min_exposures for c in counts)
            if everyone and any(
                analysis.posterior[k].probability_best >= stats.WINNER_PROBABILITY for k in KEYS[1:]
            ):
                outcome.bayes_only_winner = at
        if stop_at_winner is not None and stop_at_winner in outcome.winner:
            break
    return outcome


# --- figures --------------------------------------------------------------------------


def rate_line(name: str, hits: int, n: int, target: str | None, *, note: str = "") -> float:
    value = hits / n if n else float("nan")
    se = math.sqrt(value * (1 - value) / n) if n else float("nan")
    if target is None:
        verdict = "printed"
    else:
        verdict = f"target {target}, {'met' if eval_target(value, target) else 'NOT met'}"
    extra = f"; {note}" if note else ""
    print(f"{name}: {value:.3f} ({verdict}; ±{se:.3f} s.e., {hits}/{n} experiments{extra})")
    return value


def eval_target(value: float, target: str) -> bool:
    op, bound = target.split()
    return {"<=": value <= float(bound), ">=": value >= float(bound), "<": value < float(bound)}[op]


def null_scenario(options: argparse.Namespace, *, thompson: bool, count: int) -> None:
    suffix = "_thompson" if thompson else ""
    outcomes = []
    for i in range(count):
        rng = np.random.default_rng([options.seed, 1 + thompson, i])
        truth = truth_draw(rng, np.zeros(ARMS))
        outcomes.append(simulate(truth, rng=rng, thompson=thompson, judge="all", options=options))
    winners = sum(bool(o.winner) for o in outcomes)
    decisions = sum(bool(o.winner or o.loser) for o in outcomes)
    naive = sum(o.naive_winner is not None for o in outcomes)
    bayes = sum(o.bayes_only_winner is not None for o in outcomes)
    alarms = sum(o.mismatch is not None for o in outcomes)
    split = "Thompson sampling" if thompson else "fixed split"
    fwr = rate_line(
        f"false_winner_rate{suffix}",
        winners,
        count,
        f"<= {FALSE_WINNER_TARGET}",
        note=f"null, {split}, hourly checks for {DAYS} days, Holm across {ARMS} arms",
    )
    rate_line(
        f"false_decision_rate{suffix}",
        decisions,
        count,
        f"<= {FALSE_WINNER_TARGET}",
        note="a winner proposed or a loser paused",
    )
    naive_rate = rate_line(
        f"naive_peeking_false_winner_rate{suffix}",
        naive,
        count,
        None,
        note="baseline: fixed-horizon z-test, uncorrected, every hour",
    )
    rate_line(
        f"bayes_only_false_winner_rate{suffix}",
        bayes,
        count,
        None,
        note="baseline: P(best) >= 0.95 alone, without the sequential test",
    )
    if thompson:
        rate_line(
            "fixed_split_test_false_loser_rate_thompson",
            sum(o.fixed_split_test_loser is not None for o in outcomes),
            count,
            None,
            note="baseline: the same counts judged as if the split had been fixed (adaptive=False)",
        )
    if naive_rate:
        ratio = fwr / naive_rate
        print(
            f"false_winner_ratio_to_naive{suffix}: {ratio:.3f} (target < 1, "
            f"{'met' if ratio < 1 else 'NOT met'})"
        )
    rate_line(
        f"srm_false_alarm_rate{suffix}",
        alarms,
        count,
        None,
        note=f"p < {stats.SRM_ALPHA} at any hourly check, split as intended",
    )


def power_scenario(options: argparse.Namespace, *, thompson: bool, count: int) -> None:
    suffix = "_thompson" if thompson else ""
    lifts = np.zeros(ARMS)
    lifts[0] = 0.20
    hours, wrong, losers = [], 0, 0
    for i in range(count):
        rng = np.random.default_rng([options.seed, 3 + thompson, i])
        truth = truth_draw(rng, lifts)
        outcome = simulate(
            truth, rng=rng, thompson=thompson, judge="all", stop_at_winner="v1", options=options
        )
        if "v1" in outcome.winner:
            hours.append(outcome.winner["v1"])
        wrong += any(arm != "v1" for arm in outcome.winner)
        losers += bool(outcome.loser)
    split = "Thompson sampling" if thompson else "fixed split"
    rate_line(
        f"power{suffix}",
        len(hours),
        count,
        None,
        note=f"+20% arm proposed within {DAYS} days, {split}",
    )
    if hours:
        days = np.array(hours) / 24
        print(
            f"days_to_decision{suffix}: {np.median(days):.1f} (printed; median of "
            f"{len(hours)} experiments, quartiles {np.percentile(days, 25):.1f}–"
            f"{np.percentile(days, 75):.1f} days)"
        )
    else:
        print(f"days_to_decision{suffix}: nan (printed; no winner proposed)")
    rate_line(
        f"wrong_winner_rate{suffix}",
        wrong,
        count,
        f"<= {FALSE_WINNER_TARGET}",
        note="an equal arm proposed before the +20% one",
    )
    rate_line(
        f"false_loser_rate_under_lift{suffix}",
        losers,
        count,
        f"<= {FALSE_WINNER_TARGET}",
        note="some arm paused though none is worse",
    )


def regret_scenario(options: argparse.Namespace, *, count: int) -> None:
    fixed = {"clicks": 0.0, "regret": 0.0}
    bandit = {"clicks": 0.0, "regret": 0.0}
    for i in range(count):
        draw = np.random.default_rng([options.seed, 5, i])
        truth = truth_draw(draw, draw.uniform(-0.2, 0.2, ARMS))
        for policy, totals in ((False, fixed), (True, bandit)):
            # The same experiment under both policies: same truth, same seed.
            rng = np.random.default_rng([options.seed, 6, i])
            outcome = simulate(truth, rng=rng, thompson=policy, judge="none", options=options)
            totals["clicks"] += outcome.clicks
            totals["regret"] += outcome.regret
    best = fixed["clicks"] + fixed["regret"]
    ratio = bandit["regret"] / fixed["regret"] if fixed["regret"] else float("nan")
    print(
        f"clicks_fixed_split: {fixed['clicks']:,.0f} (printed; expected clicks, {count} "
        f"experiments with lifts from −20% to +20%)"
    )
    print(
        f"clicks_thompson: {bandit['clicks']:,.0f} (printed; the best arm everywhere: {best:,.0f})"
    )
    print(f"clicks_lost_fixed_split: {fixed['regret']:,.0f} (printed; the baseline)")
    print(f"clicks_lost_thompson: {bandit['regret']:,.0f} (printed)")
    print(
        f"regret_ratio: {ratio:.3f} (target < 1, {'met' if ratio < 1 else 'NOT met'}; "
        f"clicks lost, Thompson / fixed split; the control's fixed "
        f"{allocation.DEFAULT_CONTROL_SHARE:.0%} counts in both)"
    )


def srm_scenario(options: argparse.Namespace, *, count: int) -> None:
    hours = []
    for i in range(count):
        rng = np.random.default_rng([options.seed, 7, i])
        truth = truth_draw(rng, np.zeros(ARMS))
        truth.unlogged[1] = 0.05
        outcome = simulate(truth, rng=rng, thompson=False, judge="sample_ratio", options=options)
        if outcome.mismatch is not None:
            hours.append(outcome.mismatch)
    rate_line(
        "srm_detection_rate",
        len(hours),
        count,
        ">= 0.95",
        note="one arm loses 5% of its exposures, fixed split",
    )
    if hours:
        print(f"srm_hours_to_detection: {np.median(hours):.0f} (printed; median)")


def wear_out_scenario(options: argparse.Namespace, *, count: int) -> None:
    found = false_alarms = 0
    for i in range(count):
        rng = np.random.default_rng([options.seed, 8, i])
        truth = truth_draw(rng, np.zeros(ARMS))
        base = truth.rates.copy()

        def rates_at(hour: int, base: np.ndarray = base) -> np.ndarray:
            rates = base.copy()
            rates[1] = base[0] * (1 + 0.30 * (1 - hour / (DAYS * 24)))  # wears out
            rates[2] = base[0] * 1.30  # holds
            return rates

        truth.rates_at = rates_at
        outcome = simulate(truth, rng=rng, thompson=False, judge="none", options=options)
        arm_days = {
            k: [ArmCounts(k, int(n[i]), int(x[i])) for n, x in outcome.daily]
            for i, k in enumerate(KEYS)
        }
        control = arm_days[CONTROL]
        found += stats.wear_out(arm_days=arm_days["v1"], control_days=control).wearing_out
        false_alarms += stats.wear_out(arm_days=arm_days["v2"], control_days=control).wearing_out
    rate_line(
        "wear_out_detection_rate",
        found,
        count,
        None,
        note=f"lift falling from +30% to 0 over {DAYS} days, read at day {DAYS}",
    )
    rate_line(
        "wear_out_false_alarm_rate",
        false_alarms,
        count,
        None,
        note=f"a steady +30% arm; nominal {stats.WEAR_OUT_ALPHA}, a one-sided test read once",
    )


SIZES = {
    # scenario: (full run, --smoke)
    "null": (300, 20),
    "null_thompson": (80, 4),
    "power": (200, 10),
    "power_thompson": (100, 4),
    "regret": (40, 3),
    "srm": (200, 10),
    "wear_out": (200, 10),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every scenario small (CI)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--tuning",
        type=int,
        default=stats.DEFAULT_TUNING,
        help="N* of the sequential interval (default %(default)s)",
    )
    parser.add_argument("--min-exposures", type=int, default=stats.DEFAULT_MIN_EXPOSURES)
    for name, (full, smoke) in SIZES.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=None,
            help=f"experiments (default {full}, {smoke} with --smoke)",
        )
    options = parser.parse_args()
    for name, (full, smoke) in SIZES.items():
        if getattr(options, name) is None:
            setattr(options, name, smoke if options.smoke else full)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: nproc {os.cpu_count()}, load average {load}")
    print(f"python: {sys.version.split()[0]}, numpy {np.__version__}, seed {options.seed}")
    print(
        f"method: sequential tuning N* = {options.tuning:,}, minimum {options.min_exposures:,} "
        f"exposures an arm, alpha {stats.DEFAULT_ALPHA}, {stats.DEFAULT_CORRECTION}; "
        f"{ARMS} variants + control, {DAYS} days"
    )
    started = time.monotonic()
    scenarios: list[tuple[str, str, Callable[[argparse.Namespace, int], None]]] = [
        ("null, fixed split", "null", lambda o, n: null_scenario(o, thompson=False, count=n)),
        ("null, Thompson", "null_thompson", lambda o, n: null_scenario(o, thompson=True, count=n)),
        ("+20%, fixed split", "power", lambda o, n: power_scenario(o, thompson=False, count=n)),
        (
            "+20%, Thompson",
            "power_thompson",
            lambda o, n: power_scenario(o, thompson=True, count=n),
        ),
        ("regret", "regret", lambda o, n: regret_scenario(o, count=n)),
        ("broken split", "srm", lambda o, n: srm_scenario(o, count=n)),
        ("wear-out", "wear_out", lambda o, n: wear_out_scenario(o, count=n)),
    ]
    for label, size, run in scenarios:
        count = getattr(options, size)
        if not count:
            continue
        begun = time.monotonic()
        print(f"== {label}: {count} experiments", flush=True)
        run(options, count)
        print(f"({label}: {time.monotonic() - begun:.0f}s)", flush=True)
    print(f"total: {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
