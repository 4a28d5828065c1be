"""How often the metrics' verdict is wrong, by simulation against a known truth.

    .venv/bin/python -m bench.metrics                     # 10,000 experiments a scenario, ~5 s
    .venv/bin/python -m bench.metrics --experiments 1000  # the CI smoke run

Each experiment is a variant and its control (the base copy) at realistic rates: a true
control CTR drawn uniformly from 0.5% to 5%, and each arm's impressions drawn
log-uniformly from 100 to 10,000, independently (arms are rarely the same size). Clicks
are drawn binomially from the true rates, then judged by review.metrics.compare, the
function behind the dashboard and the *Underperforming* flag.

* null: the variant's true CTR equals the control's. Any verdict but "no significant
  difference" or "not enough data" is a false positive; the nominal rate is 5%, and
  half of it (2.5%) is a false *Underperforming* flag.
* +20%: the variant's true CTR is 1.2 × the control's. The share judged "better" is the
  power.

The baseline, on the same simulated counts: the rule the dashboard used before (the
unpooled Wald interval of the difference, excluding 0, with 100 impressions an arm),
which flagged 13–22% of identical variants in issue 15's simulations.

Figures one a line, `name: value (target ...)`; nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import secrets
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
FPR_TARGET = 0.05


def _setup_django() -> None:
    sys.path.insert(0, str(PROJECT_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hyperpers.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(40))
    import django

    django.setup()


def binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


def wald_verdict(x1: int, n1: int, x0: int, n0: int, *, min_trials: int = 100) -> str:
    """The old rule: the unpooled Wald interval of p1 − p0 excludes 0."""
    if n1 < min_trials or n0 < min_trials:
        return "not enough data"
    p1, p0 = x1 / n1, x0 / n0
    margin = 1.959964 * math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    if p1 - p0 + margin < 0:
        return "worse"
    if p1 - p0 - margin > 0:
        return "better"
    return "no significant difference"


def simulate(experiments: int, lift: float, seed: int) -> list[tuple[int, int, int, int]]:
    rng = random.Random(f"{seed}:{lift}")
    counts = []
    for _ in range(experiments):
        control_ctr = rng.uniform(0.005, 0.05)
        n1 = round(math.exp(rng.uniform(math.log(100), math.log(10_000))))
        n0 = round(math.exp(rng.uniform(math.log(100), math.log(10_000))))
        counts.append(
            (binomial(rng, n1, control_ctr * lift), n1, binomial(rng, n0, control_ctr), n0)
        )
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    _setup_django()
    from review import metrics

    started = time.monotonic()
    print(f"experiments: {args.experiments} a scenario, seed {args.seed}")
    null = simulate(args.experiments, 1.0, args.seed)
    lifted = simulate(args.experiments, 1.2, args.seed)

    def share(counts, judge, verdicts: set[str]) -> float:
        return sum(judge(*c) in verdicts for c in counts) / len(counts)

    def ours(x1, n1, x0, n0) -> str:
        return metrics.compare(x1, n1, x0, n0, confidence=0.95, min_trials=100).verdict

    # The exact binomial standard error of a rate measured over `experiments`.
    se = math.sqrt(FPR_TARGET * (1 - FPR_TARGET) / args.experiments)
    fpr = share(null, ours, {"better", "worse"})
    flagged = share(null, ours, {"worse"})
    wald_fpr = share(null, wald_verdict, {"better", "worse"})
    wald_flagged = share(null, wald_verdict, {"worse"})
    power = share(lifted, ours, {"better"})
    wald_power = share(lifted, wald_verdict, {"better"})
    judged = 1 - share(null, ours, {"not enough data"})
    big = [c for c in lifted if min(c[1], c[3]) >= 5000]
    met = "met" if fpr <= FPR_TARGET else "NOT met"
    print(f"false_positive_rate: {fpr:.3f} (target <= {FPR_TARGET}, {met}; ±{se:.3f} s.e.)")
    print(f"underperforming_false_flag_rate: {flagged:.3f} (printed; nominal 0.025)")
    print(f"wald_false_positive_rate: {wald_fpr:.3f} (baseline: the old rule, same counts)")
    print(f"wald_underperforming_false_flag_rate: {wald_flagged:.3f} (baseline)")
    ratio = fpr / wald_fpr if wald_fpr else float("nan")
    verdict = "met" if ratio < 1 else "NOT met"
    print(f"false_positive_ratio_to_wald: {ratio:.2f} (target < 1, {verdict})")
    print(f"power_at_20pct_uplift: {power:.3f} (printed; the old rule: {wald_power:.3f})")
    if big:
        print(
            f"power_at_20pct_uplift_5000_plus: {share(big, ours, {'better'}):.3f} "
            f"({len(big)} experiments with 5,000+ impressions in each arm)"
        )
    print(f"judged_share_null: {judged:.3f} (the rest had too little data for a verdict)")
    print(f"total: {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
