"""`manage.py simulate_engagement --experiment`: the demo's traffic, through the real
live path (delivery.live_copy with a visitor) and the engagement service, so that the
better arm wins the experiment's analysis."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count
from django.utils import timezone

from review.models import EngagementEvent
from review.services import experiments as svc
from tests.review.test_experiment_review import _start, experiment_slot

pytestmark = pytest.mark.django_db


@pytest.fixture
def slot():
    return experiment_slot()


def _simulate(experiment, *args):
    out = StringIO()
    call_command("simulate_engagement", "--experiment", str(experiment.pk), *args, stdout=out)
    return out.getvalue()


def test_simulated_traffic_through_the_live_path_makes_the_better_arm_win(slot):
    live, (a, b) = slot
    experiment = _start([live, a, b], {None: 25, live: 25, a: 25, b: 25}, min_exposures=300)
    rates = f"control=0.04,v{live.pk}=0.04,v{a.pk}=0.04,v{b.pk}=0.12"

    out = _simulate(experiment, "--rates", rates, "--visitors", "4000", "--seed", "3")

    events = EngagementEvent.objects.filter(experiment=experiment)
    assert events.filter(kind="impression", randomized=True).count() == 4000
    # Every event came from an exposure id the live path handed out: the arm served,
    # the shares in force and a visitor hash, one impression a visitor.
    by_arm = dict(events.filter(kind="impression").values_list("arm").annotate(n=Count("visitor")))
    assert set(by_arm) == {"control", f"v{live.pk}", f"v{a.pk}", f"v{b.pk}"}
    assert all(850 < n < 1150 for n in by_arm.values())  # 25% each, by the hash
    assert set(events.values_list("weights", flat=True)) == {svc.weights_in_force(experiment).pk}
    assert f"v{b.pk}: winner proposed" in out

    review = svc.experiment_review(experiment=experiment, now=timezone.now())
    assert review.proposed == f"v{b.pk}" and not review.mismatch
    experiment.refresh_from_db()
    assert experiment.proposed == b

    total = events.count()
    _simulate(experiment, "--rates", rates, "--visitors", "4000", "--seed", "3")
    assert events.count() == total  # same seed, same visitors and event ids: counted once


def test_simulated_traffic_under_thompson_moves_the_shares_toward_the_better_arm(slot):
    live, (a, _b) = slot
    experiment = _start([live, a], {None: 10, live: 45, a: 45}, allocation="thompson")
    rates = f"control=0.05,v{live.pk}=0.02,v{a.pk}=0.08"

    _simulate(experiment, "--rates", rates, "--visitors", "3000", "--rounds", "3")

    rows = list(experiment.weights.order_by("effective_from", "id"))
    # Reweighed after each round whose shares moved (once a's share is at its
    # ceiling, another round changes nothing and no row is written).
    assert rows[0].reason == "start" and len(rows) >= 2
    assert {r.reason for r in rows[1:]} == {"reweigh"}
    last = rows[-1].weights
    assert last["control"] == pytest.approx(0.10)
    assert last[f"v{a.pk}"] > 0.8 > last[f"v{live.pk}"] >= 0.01 - 1e-9
    # Later visitors were served under the later shares.
    events = EngagementEvent.objects.filter(experiment=experiment)
    used = set(events.values_list("weights", flat=True))
    assert {rows[0].pk, rows[1].pk} <= used <= {r.pk for r in rows}


@pytest.mark.parametrize(
    "args,message",
    [
        ([], "needs --rates"),
        (["--rates", "control=0.04"], "no rate for v"),
        (["--rates", "control=0.04,v1=x"], "'v1=x' is not arm=rate"),
        (["--rates", "control=1.5"], "'control=1.5' is not arm=rate"),
    ],
)
def test_simulating_an_experiment_names_what_is_wrong(slot, args, message):
    live, (a, _b) = slot
    experiment = _start([live, a], {None: 10, live: 45, a: 45})
    with pytest.raises(CommandError, match=message):
        _simulate(experiment, *args)
    assert not EngagementEvent.objects.exists()


def test_simulating_a_stopped_or_unknown_experiment_is_refused(slot):
    from django.core.management import call_command

    live, (a, _b) = slot
    experiment = _start([live, a], {None: 10, live: 45, a: 45})
    svc.experiment_stop(experiment=experiment, user=None)
    rates = f"control=0.04,v{live.pk}=0.04,v{a.pk}=0.05"
    with pytest.raises(CommandError, match="has stopped"):
        _simulate(experiment, "--rates", rates)
    with pytest.raises(CommandError, match="Unknown experiment 999999"):
        call_command("simulate_engagement", "--experiment", "999999", "--rates", rates)
