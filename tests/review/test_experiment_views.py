"""The experiment pages and actions, for every role: the list, one experiment's page,
stopping, pausing and resuming, starting one from the focus view, approving into an
experiment, and the metrics page's links."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils.html import escape

from generation.models import Variant
from review.experiments import explain
from review.models import Experiment, ExperimentArm, ReviewEvent
from review.services import experiments as svc
from tests.experiment_data import approved_slot, arm_traffic
from tests.factories import PromptVersionFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
ROLES = {"copywriter": ["copywriter"], "lead": ["marketing lead"]}


def _login(client, role: str):
    user = UserFactory(username=role, groups=ROLES[role])
    client.force_login(user)
    return user


@pytest.fixture
def running():
    live, (a, b) = approved_slot(challengers=2)
    experiment = svc.experiment_start(
        variant_ids=[a.pk, b.pk], user=None, settings=svc.Settings(min_exposures=500)
    )
    return experiment, live, a, b


def _urls(experiment, variant) -> list[tuple[str, str, dict]]:
    return [
        ("get", reverse("review:experiments"), {}),
        ("get", reverse("review:experiment", args=[experiment.pk]), {}),
        ("post", reverse("review:experiment-stop", args=[experiment.pk]), {"confirm": "on"}),
        (
            "post",
            reverse("review:experiment-arm", args=[experiment.pk, f"v{variant.pk}", "pause"]),
            {},
        ),
        ("post", reverse("review:experiment-new", args=[variant.pk]), {"variants": [variant.pk]}),
        ("post", reverse("review:approve-experiment", args=[variant.pk]), {}),
    ]


# --- roles ----------------------------------------------------------------------------


@pytest.mark.parametrize("hx", [False, True], ids=["plain", "htmx"])
def test_anonymous_users_are_sent_to_log_in(client, running, hx):
    experiment, _live, a, _b = running
    for method, url, body in _urls(experiment, a):
        response = getattr(client, method)(url, body, headers=HX if hx else {})
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    assert Experiment.objects.get().is_running


def test_a_copywriter_reads_but_cannot_act(client, running):
    experiment, live, a, _b = running
    _login(client, "copywriter")
    page = client.get(reverse("review:experiment", args=[experiment.pk]))
    assert page.status_code == 200
    assert b"Stop the experiment" not in page.content
    assert b"Pause" not in page.content
    assert client.get(reverse("review:experiments")).status_code == 200
    for method, url, body in _urls(experiment, a)[2:]:
        assert getattr(client, method)(url, body).status_code == 403, url
    experiment.refresh_from_db()
    assert experiment.is_running
    assert not experiment.arms.filter(status=ExperimentArm.Status.PAUSED).exists()
    # The focus view links the experiment, and offers no form to start one.
    focus = client.get(reverse("review:variant", args=[live.pk]))
    assert f"Experiment {experiment.pk}</a> runs on this slot".encode() in focus.content


def test_a_lead_sees_the_actions(client, running):
    experiment, _live, a, _b = running
    _login(client, "lead")
    page = client.get(reverse("review:experiment", args=[experiment.pk])).content.decode()
    assert "Stop the experiment" in page
    assert f'aria-label="Pause v{a.pk}"' in page
    assert 'aria-label="Pause control"' not in page  # the control is never paused


# --- the experiment's page --------------------------------------------------------------


def test_the_page_shows_arms_intervals_decisions_history_and_methods(client, running):
    experiment, live, a, b = running
    arm_traffic(
        experiment,
        {
            "control": (1000, 50),
            f"v{live.pk}": (3000, 150),
            f"v{a.pk}": (3000, 300),
            f"v{b.pk}": (3000, 140),
        },
    )
    _login(client, "copywriter")
    page = client.get(reverse("review:experiment", args=[experiment.pk])).content.decode()
    assert "winner proposed" in page
    assert "The split is as intended" in page
    assert 'class="range better"' in page  # the winner's interval, drawn above zero
    assert page.count('class="interval-bar"') == 3  # every variant; not the control
    assert "Share history" in page and "start" in page
    for text in (explain.SEQUENTIAL, explain.HOLM, explain.SAMPLE_RATIO, explain.FIXED_SPLIT):
        assert escape(text) in page
    assert "Started an experiment with it" in page  # the decisions, from the audit trail
    assert page.count("too few days") == 3  # wear-out needs a week of days


def test_a_broken_split_warns_that_automatic_decisions_are_blocked(client, running):
    experiment, live, a, b = running
    arm_traffic(
        experiment,
        {
            "control": (3000, 100),
            f"v{live.pk}": (1000, 50),
            f"v{a.pk}": (1000, 90),
            f"v{b.pk}": (1000, 50),
        },
    )
    _login(client, "copywriter")
    page = client.get(reverse("review:experiment", args=[experiment.pk])).content.decode()
    assert "automatic decisions are blocked" in page
    assert "winner proposed" not in page


def test_copy_on_the_page_is_escaped(client):
    _live, (a,) = approved_slot(challengers=1)
    Variant.objects.filter(pk=a.pk).update(text="<script>alert(1)</script>")
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    _login(client, "copywriter")
    page = client.get(reverse("review:experiment", args=[experiment.pk])).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_list_shows_running_experiments_first(client, running):
    experiment, _live, _a, _b = running
    _other_live, (other,) = approved_slot(challengers=1)
    stopped = svc.experiment_start(variant_ids=[other.pk], user=None)
    svc.experiment_stop(experiment=stopped, user=None)
    _login(client, "copywriter")
    page = client.get(reverse("review:experiments")).content.decode()
    assert page.index(f"#{experiment.pk}<") < page.index(f"#{stopped.pk}<")
    assert client.get(reverse("review:experiments"), {"prompt": "nope"}).status_code == 404


def test_the_nav_links_the_experiments(client):
    _login(client, "copywriter")
    page = client.get(reverse("review:metrics")).content.decode()
    assert f'href="{reverse("review:experiments")}"' in page


# --- a lead's actions -------------------------------------------------------------------


def test_a_lead_stops_and_publishes_a_variant(client, running):
    experiment, live, a, b = running
    _login(client, "lead")
    url = reverse("review:experiment-stop", args=[experiment.pk])
    response = client.post(url, {"promote": a.pk, "reason": "clear", "confirm": "on"}, follow=True)
    assert f"variant {a.pk} is live" in response.content.decode()
    for v in (live, a, b):
        v.refresh_from_db()
    assert (live.status, a.status, b.status) == ("retired", "published", "retired")


def test_stopping_needs_a_confirmation(client, running):
    experiment, _live, _a, _b = running
    _login(client, "lead")
    url = reverse("review:experiment-stop", args=[experiment.pk])
    response = client.post(url, {}, follow=True)
    assert "Tick the box to confirm" in response.content.decode()
    experiment.refresh_from_db()
    assert experiment.is_running


def test_stopping_a_stopped_experiment_says_so(client, running):
    experiment, _live, _a, _b = running
    svc.experiment_stop(experiment=experiment, user=None)
    _login(client, "lead")
    url = reverse("review:experiment-stop", args=[experiment.pk])
    response = client.post(url, {"confirm": "on"}, follow=True)
    assert "has stopped" in response.content.decode()


def test_a_lead_pauses_and_resumes_an_arm_but_never_the_control(client, running):
    experiment, _live, a, _b = running
    _login(client, "lead")
    pause = reverse("review:experiment-arm", args=[experiment.pk, f"v{a.pk}", "pause"])
    client.post(pause, {"reason": "dull"})
    arm = experiment.arms.get(variant=a)
    assert (arm.status, arm.pause_reason) == ("paused", "dull")
    client.post(reverse("review:experiment-arm", args=[experiment.pk, f"v{a.pk}", "resume"]))
    arm.refresh_from_db()
    assert arm.status == "active"
    control = reverse("review:experiment-arm", args=[experiment.pk, "control", "pause"])
    response = client.post(control, follow=True)
    assert "control is never paused" in response.content.decode()
    bad = reverse("review:experiment-arm", args=[experiment.pk, "control", "delete"])
    assert client.post(bad).status_code == 404


# --- starting one from the focus view ---------------------------------------------------


def test_the_focus_view_offers_a_lead_the_slots_approved_variants(client):
    live, _others = approved_slot(challengers=5)
    _login(client, "lead")
    page = client.get(reverse("review:variant", args=[live.pk])).content.decode()
    assert "Start the experiment" in page
    ticked = (
        page.count('name="variants" value="') - page.count('" checked>') + page.count(" checked>")
    )
    assert ticked == 6  # every candidate listed
    assert page.count(" checked> Variant") == 4  # up to 4 ticked by default
    assert f'value="{live.pk}" checked' in page


def test_a_lead_starts_a_three_arm_experiment_from_the_focus_view(client):
    live, (a, b) = approved_slot(challengers=2)
    lead = _login(client, "lead")
    url = reverse("review:experiment-new", args=[live.pk])
    body = {
        "variants": [live.pk, a.pk],
        "allocation": "fixed",
        "metric": "click",
        "correction": "holm",
        "control_share": "20",
        "floor": "1",
        "cadence_minutes": "15",
        "min_exposures": "1000",
        "auto_pause_losers": "on",
    }
    response = client.post(url, body)
    experiment = Experiment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("review:experiment", args=[experiment.pk])
    assert experiment.started_by == lead
    assert {arm.key for arm in experiment.arms.all()} == {"control", f"v{live.pk}", f"v{a.pk}"}
    weights = svc.weights_in_force(experiment).weights
    assert weights["control"] == pytest.approx(0.2)
    assert weights[f"v{a.pk}"] == pytest.approx(0.4)
    b.refresh_from_db()
    assert b.status == Variant.Status.RETIRED  # not ticked: not an arm


def test_shares_set_by_hand_must_sum_to_100(client):
    live, (a, _b) = approved_slot(challengers=2)
    _login(client, "lead")
    url = reverse("review:experiment-new", args=[live.pk])
    body = {
        "variants": [live.pk, a.pk],
        "custom_shares": "on",
        "share_control": "10",
        f"share_v{live.pk}": "40",
        f"share_v{a.pk}": "40",
        "allocation": "fixed",
        "metric": "click",
        "correction": "holm",
        "control_share": "10",
        "floor": "1",
        "cadence_minutes": "15",
        "min_exposures": "1000",
    }
    response = client.post(url, body)
    assert response.status_code == 200
    assert "Shares must sum to 100%, they sum to 90%" in response.content.decode()
    assert not Experiment.objects.exists()
    body[f"share_v{a.pk}"] = "50"
    assert client.post(url, body).status_code == 302
    assert svc.weights_in_force(Experiment.objects.get()).weights[f"v{a.pk}"] == pytest.approx(0.5)


def test_a_refused_start_shows_the_error_on_the_focus_view(client):
    live, (_a, _b) = approved_slot(challengers=2)
    _login(client, "lead")
    url = reverse("review:experiment-new", args=[live.pk])
    response = client.post(url, {"variants": [], "control_share": "10"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "This field is required" in page  # variants
    assert not Experiment.objects.exists()
    unknown = client.post(url, {"variants": [999999]})
    assert "Select a valid choice" in unknown.content.decode()


# --- approving into an experiment -------------------------------------------------------


def _in_review(live: Variant) -> Variant:
    """A new variant of `live`'s slot, from a later prompt version, in review."""
    version = PromptVersionFactory(prompt=live.prompt, number=live.prompt_version.number + 50)
    return VariantFactory(
        prompt_version=version, prompt=live.prompt, product=live.product, segment=live.segment
    )


def test_a_lead_approves_a_variant_into_the_running_experiment(client, running):
    experiment, live, _a, _b = running
    fresh = _in_review(live)
    _login(client, "lead")
    focus = client.get(reverse("review:variant", args=[fresh.pk])).content.decode()
    assert f"Approve and add to experiment {experiment.pk}" in focus
    assert "replaces it and stops" in focus
    response = client.post(
        reverse("review:approve-experiment", args=[fresh.pk]),
        {"revision": fresh.revision, "view": "focus"},
        headers=HX,
    )
    assert f"approved into experiment {experiment.pk}" in response.content.decode()
    fresh.refresh_from_db()
    assert fresh.status == Variant.Status.TESTING
    assert experiment.arms.filter(variant=fresh).exists()
    actions = list(fresh.review_events.order_by("id").values_list("action", "reason"))
    assert actions[0] == ("approve", f"into experiment {experiment.pk}")
    assert actions[1][0] == "exp_join"
    live.refresh_from_db()
    assert live.status == Variant.Status.PUBLISHED  # not replaced


def test_a_copywriter_is_not_offered_the_experiment(client, running):
    _experiment, live, _a, _b = running
    fresh = _in_review(live)
    _login(client, "copywriter")
    focus = client.get(reverse("review:variant", args=[fresh.pk])).content.decode()
    assert "Approve and add to experiment" not in focus
    assert "stops <a" in focus  # they are told what approving does


def test_a_stale_approval_into_an_experiment_is_refused(client, running):
    experiment, live, _a, _b = running
    fresh = _in_review(live)
    _login(client, "lead")
    client.post(
        reverse("review:approve-experiment", args=[fresh.pk]),
        {"revision": fresh.revision + 5, "view": "focus"},
    )
    fresh.refresh_from_db()
    assert fresh.status == Variant.Status.IN_REVIEW
    assert not experiment.arms.filter(variant=fresh).exists()


# --- the metrics page -------------------------------------------------------------------


def test_the_metrics_page_links_each_live_slot_to_its_experiment_or_to_starting_one(
    client, running
):
    experiment, live, _a, _b = running
    idle = VariantFactory(status=Variant.Status.PUBLISHED, prompt_version=live.prompt_version)
    _login(client, "lead")
    page = client.get(reverse("review:metrics"), {"prompt": live.prompt.slug}).content.decode()
    assert f'href="{reverse("review:experiment", args=[experiment.pk])}"' in page
    assert f'href="{reverse("review:variant", args=[idle.pk])}#experiment-panel"' in page
    _login(client, "copywriter")
    page = client.get(reverse("review:metrics"), {"prompt": live.prompt.slug}).content.decode()
    assert "Start an experiment" not in page
    assert f"Experiment {experiment.pk}</a>" in page


def test_the_focus_view_events_include_the_experiments(client, running):
    _experiment, _live, a, _b = running
    _login(client, "copywriter")
    page = client.get(reverse("review:variant", args=[a.pk])).content.decode()
    assert ReviewEvent.Action.EXPERIMENT_START.label in page


def test_the_metrics_page_summarises_running_experiments_with_their_check(client, running):
    experiment, live, a, b = running
    arm_traffic(
        experiment,
        {
            "control": (1000, 50),
            f"v{live.pk}": (3000, 150),
            f"v{a.pk}": (3000, 300),
            f"v{b.pk}": (3000, 140),
        },
    )
    _login(client, "copywriter")
    page = client.get(reverse("review:metrics"), {"prompt": live.prompt.slug}).content.decode()
    section = page[page.index('id="experiments"') : page.index('id="live-slots"')]
    assert f"Experiment {experiment.pk}</a>" in section
    assert "the split is as intended" in section
    assert section.count("winner proposed") == 1
    assert f'data-arm="v{a.pk}"' in section


def test_the_demo_path_simulated_traffic_makes_one_arm_win_on_both_pages(client):
    """The issue's demo: a lead starts a 3-arm experiment from the focus view, then
    `simulate_engagement --experiment` sends visitors through the live path and the
    engagement service, and the better arm wins on the experiment and metrics pages."""
    live, (challenger, _other) = approved_slot(challengers=2)
    _login(client, "lead")
    body = {
        "variants": [live.pk, challenger.pk],
        "allocation": "fixed",
        "metric": "click",
        "correction": "holm",
        "control_share": "10",
        "floor": "1",
        "cadence_minutes": "15",
        "min_exposures": "500",
        "auto_pause_losers": "on",
    }
    client.post(reverse("review:experiment-new", args=[live.pk]), body)
    experiment = Experiment.objects.get()
    rates = f"control=0.05,v{live.pk}=0.05,v{challenger.pk}=0.10"
    call_command(
        "simulate_engagement",
        "--experiment",
        str(experiment.pk),
        "--rates",
        rates,
        "--visitors",
        "10000",
        "--seed",
        "3",
        stdout=StringIO(),
    )
    page = client.get(reverse("review:experiment", args=[experiment.pk])).content.decode()
    row = page[page.index(f'data-arm="v{challenger.pk}"') :]
    assert "winner proposed" in row[: row.index("</tr>")]
    assert "The split is as intended" in page
    metrics = client.get(reverse("review:metrics"), {"prompt": live.prompt.slug}).content.decode()
    section = metrics[metrics.index('id="experiments"') : metrics.index('id="live-slots"')]
    assert section.count("winner proposed") == 1
    assert "the split is as intended" in section


# --- challengers ------------------------------------------------------------------------


def test_a_lead_writes_a_challenger_from_the_experiment_page(client, running, offline_writer):
    from generation.models import GenerationRun

    experiment, live, _a, _b = running
    page = reverse("review:experiment", args=[experiment.pk])
    _login(client, "copywriter")
    assert 'id="challengers"' not in client.get(page).content.decode()
    url = reverse("review:experiment-challengers", args=[experiment.pk])
    assert client.post(url).status_code == 403
    assert not GenerationRun.objects.exists()

    _login(client, "lead")
    assert 'id="challengers"' in client.get(page).content.decode()
    response = client.post(url, {"budget": "0.50"}, follow=True)
    (run,) = GenerationRun.objects.all()
    assert run.total == 1 and run.budget == Decimal("0.50")
    assert f"run {run.pk} writes its challenger" in response.content.decode()
    assert run.prompt_version.prompt == live.prompt


def test_a_bad_budget_or_a_stopped_experiment_writes_no_challenger(client, running, offline_writer):
    from generation.models import GenerationRun

    experiment, _live, _a, _b = running
    _login(client, "lead")
    url = reverse("review:experiment-challengers", args=[experiment.pk])
    versions = experiment.prompt.versions.count()
    response = client.post(url, {"budget": "lots"}, follow=True)
    page = response.content.decode()
    assert "The budget must be a number of dollars, not &#x27;lots&#x27;" in page
    svc.experiment_stop(experiment=experiment, user=None)
    response = client.post(url, follow=True)
    assert "has stopped" in response.content.decode()
    assert not GenerationRun.objects.exists()
    assert experiment.prompt.versions.count() == versions
