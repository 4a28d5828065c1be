"""review/experiments/allocation.py: shares that sum to 1 and keep their floors, and a
visitor who keeps their arm. Pure: no database."""

import math
import os
import subprocess
import sys

import pytest
from scipy import stats as scipy_stats

from review.experiments import allocation
from review.experiments.allocation import CONTROL
from review.experiments.stats import ArmCounts

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- shares ---------------------------------------------------------------------------


def test_equal_split_keeps_the_controls_share_and_shares_the_rest():
    shares = allocation.equal_split(arms=["v1", "v2", "v3", "v4"])
    assert shares == pytest.approx(
        {CONTROL: 0.1, "v1": 0.225, "v2": 0.225, "v3": 0.225, "v4": 0.225}
    )
    assert sum(shares.values()) == pytest.approx(1)


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        ({CONTROL: 0.1, "v1": 0.8}, "shares must sum to 1, they sum to 0.9"),
        ({"v1": 0.5, "v2": 0.5}, "shares must include the control, 'control'"),
        ({CONTROL: 1.2, "v1": -0.2}, "arm 'control': share must be between 0 and 1, got 1.2"),
        ({CONTROL: 0.5, "v1": float("nan")}, "arm 'v1': share must be between 0 and 1"),
        ({CONTROL: 0.5, "v1": "half"}, "arm 'v1': share is not a number: 'half'"),
        ({CONTROL: 1.0}, "1 to 10 variants besides the control, got 0"),
        (
            {CONTROL: 0.12, **{f"v{i}": 0.08 for i in range(11)}},
            "1 to 10 variants besides the control, got 11",
        ),
    ],
)
def test_a_fixed_split_refuses_bad_shares_naming_what_is_wrong(shares, message):
    with pytest.raises(ValueError, match=message):
        allocation.fixed_split(shares=shares)


def test_a_fixed_split_accepts_rounding_in_the_shares():
    shares = {CONTROL: 0.1, "v1": 0.3, "v2": 0.3, "v3": 0.3000000001}
    assert allocation.fixed_split(shares=shares)["v3"] == 0.3000000001


def _counts(*pairs):
    return [ArmCounts(f"v{i + 1}", n, s) for i, (n, s) in enumerate(pairs)]


@pytest.mark.parametrize(
    "arms",
    [
        _counts((0, 0), (0, 0), (0, 0), (0, 0)),
        _counts((5000, 150), (5000, 200), (5000, 120), (5000, 100)),
        _counts((90000, 2700), (2000, 40), (2000, 41), (90000, 3600)),
        _counts(*[(10000, 300 + 10 * i) for i in range(10)]),
    ],
)
def test_thompson_weights_sum_to_one_and_keep_the_floor_and_the_controls_share(arms):
    weights = allocation.thompson_weights(arms=arms, control_share=0.1, floor=0.01)
    assert sum(weights.values()) == pytest.approx(1, abs=1e-12)
    assert weights[CONTROL] == 0.1
    assert set(weights) == {CONTROL, *(a.arm for a in arms)}
    assert all(weights[a.arm] >= 0.01 - 1e-12 for a in arms)


def test_thompson_weights_favour_the_arm_likely_best_and_split_evenly_without_data():
    even = allocation.thompson_weights(arms=_counts((0, 0), (0, 0), (0, 0), (0, 0)))
    assert [even[f"v{i}"] for i in range(1, 5)] == pytest.approx([0.225] * 4)
    weights = allocation.thompson_weights(
        arms=_counts((5000, 150), (5000, 200), (5000, 120), (5000, 100))
    )
    assert max(weights, key=lambda k: weights[k] if k != CONTROL else 0) == "v2"
    assert weights["v2"] > 0.8
    assert weights["v4"] == pytest.approx(0.01, abs=1e-6)  # hopeless: the floor


def test_thompson_weights_refuse_bad_parameters():
    arms = _counts((100, 3), (100, 4))
    with pytest.raises(ValueError, match=r"floor must be between 0 and \(1 − control_share\)"):
        allocation.thompson_weights(arms=arms, control_share=0.1, floor=0.5)
    with pytest.raises(ValueError, match=r"control_share must be between 0 and 1, got 1\.0"):
        allocation.thompson_weights(arms=arms, control_share=1.0)
    with pytest.raises(ValueError, match="1 to 10 variants besides the control, got 11"):
        allocation.thompson_weights(arms=_counts(*[(100, 3)] * 11))
    with pytest.raises(ValueError, match="'control' is the control's key, not a variant's"):
        allocation.thompson_weights(arms=[ArmCounts(CONTROL, 100, 3), *arms])


def test_shares_served_weights_each_period_by_its_exposures():
    even = {CONTROL: 0.2, "v1": 0.4, "v2": 0.4}
    skewed = {CONTROL: 0.2, "v1": 0.7, "v2": 0.1}
    served = allocation.shares_served(periods=[(1000, even), (3000, skewed)])
    assert served == pytest.approx({CONTROL: 0.2, "v1": 0.625, "v2": 0.175})
    with pytest.raises(ValueError, match="no exposures in any period"):
        allocation.shares_served(periods=[(0, even)])


# --- pick_arm -------------------------------------------------------------------------

WEIGHTS = {CONTROL: 0.1, "v1": 0.5, "v2": 0.25, "v3": 0.14, "v4": 0.01}


def test_pick_arm_gives_a_visitor_the_same_arm_every_time_with_its_share():
    first = allocation.pick_arm(experiment_key="e1", visitor="visitor-1", weights=WEIGHTS)
    again = allocation.pick_arm(experiment_key="e1", visitor="visitor-1", weights=dict(WEIGHTS))
    assert first == again
    assert first.probability == WEIGHTS[first.arm]


def test_pick_arm_is_the_same_in_another_process_whatever_its_hash_seed():
    visitors = [f"visitor-{i}" for i in range(200)]
    here = [
        allocation.pick_arm(experiment_key="e7", visitor=v, weights=WEIGHTS).arm for v in visitors
    ]
    code = (
        "from review.experiments.allocation import pick_arm\n"
        f"w = {WEIGHTS!r}\n"
        "print(','.join(pick_arm(experiment_key='e7', visitor=f'visitor-{i}', weights=w).arm "
        "for i in range(200)))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=PROJECT_DIR,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip().split(",") == here


def test_pick_arm_frequencies_follow_the_weights_over_many_visitors():
    visitors = 100_000
    seen = dict.fromkeys(WEIGHTS, 0)
    for i in range(visitors):
        seen[allocation.pick_arm(experiment_key="e2", visitor=str(i), weights=WEIGHTS).arm] += 1
    test = scipy_stats.chisquare(list(seen.values()), [visitors * w for w in WEIGHTS.values()])
    assert test.pvalue > 0.001, seen
    # And not one experiment's assignment copied into another's.
    other = [
        allocation.pick_arm(experiment_key="e3", visitor=str(i), weights=WEIGHTS).arm
        for i in range(2000)
    ]
    same = [
        allocation.pick_arm(experiment_key="e2", visitor=str(i), weights=WEIGHTS).arm
        for i in range(2000)
    ]
    agreement = sum(a == b for a, b in zip(other, same, strict=True)) / 2000
    assert agreement < 0.40  # independent draws agree Σ w² = 0.34 of the time


def test_a_visitor_moves_only_when_their_arms_share_falls():
    before = {CONTROL: 0.1, "v1": 0.3, "v2": 0.3, "v3": 0.3}
    # v1 grows, v2 and v3 shrink: nobody leaves v1 or the control.
    grown = {CONTROL: 0.1, "v1": 0.6, "v2": 0.15, "v3": 0.15}
    # v3 is paused: only its visitors move.
    paused = {CONTROL: 0.1, "v1": 0.45, "v2": 0.45, "v3": 0.0}
    moved_from = {"grown": set(), "paused": set()}
    for i in range(5000):
        old = allocation.pick_arm(experiment_key="e4", visitor=str(i), weights=before).arm
        new = allocation.pick_arm(experiment_key="e4", visitor=str(i), weights=grown).arm
        if new != old:
            moved_from["grown"].add(old)
        new = allocation.pick_arm(experiment_key="e4", visitor=str(i), weights=paused).arm
        if new != old:
            moved_from["paused"].add(old)
    assert moved_from["grown"] == {"v2", "v3"}  # the control and v1 keep theirs
    assert moved_from["paused"] == {"v3"}


def test_pick_arm_refuses_shares_that_do_not_sum_to_one_or_are_negative():
    with pytest.raises(ValueError, match=r"shares must sum to 1, they sum to 0\.9"):
        allocation.pick_arm(experiment_key="e", visitor="x", weights={CONTROL: 0.1, "v1": 0.8})
    with pytest.raises(ValueError, match=r"arm 'v1': share must be >= 0, got -0\.5"):
        allocation.pick_arm(experiment_key="e", visitor="x", weights={CONTROL: 1.5, "v1": -0.5})


def test_the_live_path_never_loads_numpy_or_scipy():
    code = (
        "import sys\n"
        "from review.experiments.allocation import pick_arm\n"
        "pick_arm(experiment_key='e', visitor='x', weights={'control': 0.5, 'v1': 0.5})\n"
        "print(sorted(m for m in ('numpy', 'scipy', 'statsmodels') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_pick_under_a_split_checked_once_is_pick_arm():
    # The live snapshot checks an experiment's shares when it reads them (split_of) and
    # calls pick for each visitor: the same arm and probability as pick_arm, arm order
    # and paused arms included.
    for weights in (WEIGHTS, dict(reversed(WEIGHTS.items())), {**WEIGHTS, "v1": 0.0, "v2": 0.75}):
        split = allocation.split_of(weights)
        for i in range(3000):
            assert allocation.pick(split, experiment_key="e5", visitor=str(i)) == (
                allocation.pick_arm(experiment_key="e5", visitor=str(i), weights=weights)
            )
    split = allocation.split_of({CONTROL: 0.1, "v1": 0.0, "v2": 0.9})
    assert (split.share(CONTROL), split.share("v1"), split.share("v2")) == (0.1, 0.0, 0.9)
    assert split.share("v404") == 0.0


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({CONTROL: 0.1, "v1": 0.8}, r"shares must sum to 1, they sum to 0\.9"),
        ({CONTROL: 1.5, "v1": -0.5}, r"arm 'v1': share must be >= 0, got -0\.5"),
        ({CONTROL: math.nan, "v1": 1.0}, r"arm 'control': share must be >= 0, got nan"),
        ({"v1": 0.5, "v2": 0.5}, r"shares must include the control, 'control'"),
    ],
)
def test_a_split_refuses_what_pick_arm_refuses(weights, message):
    with pytest.raises(ValueError, match=message):
        allocation.split_of(weights)
