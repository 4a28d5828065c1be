"""/api/v1/experiments/: who may read and steer, the analysis an experiment answers
with, and every bad input refused with its field named and nothing changed."""

import pytest
from rest_framework.test import APIClient

from generation.models import Variant
from review.auth import api_token_create
from review.models import Experiment, ExperimentArm, ExperimentWeights, ReviewEvent
from review.services import experiments as svc
from tests.experiment_data import approved_slot, arm_traffic
from tests.factories import UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

API = "/api/v1/experiments/"
GROUPS = {"copywriter": ["copywriter"], "lead": ["marketing lead"]}


def as_(role: str) -> APIClient:
    client = APIClient()
    if role in ("read", "write"):
        _token, key = api_token_create(name=f"{role} client", kind=role)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    elif role != "anonymous":
        client.force_authenticate(UserFactory(username=role, groups=GROUPS[role]))
    return client


@pytest.fixture
def slot():
    return approved_slot(challengers=2)


def _state() -> tuple:
    """Everything an experiment request may write, to compare before and after."""
    return (
        list(Experiment.objects.values_list("id", "status")),
        list(ExperimentArm.objects.values_list("id", "status")),
        ExperimentWeights.objects.count(),
        list(Variant.objects.order_by("id").values_list("id", "status", "revision")),
        ReviewEvent.objects.count(),
    )


@pytest.mark.parametrize(
    "role,expected",
    [("anonymous", 401), ("copywriter", 403), ("read", 403), ("lead", 201), ("write", 201)],
)
def test_leads_and_write_tokens_start_experiments(slot, role, expected):
    live, (a, b) = slot
    response = as_(role).post(API, {"variants": [a.pk, b.pk]}, format="json")
    assert response.status_code == expected, response.content
    if expected == 201:
        body = response.json()
        assert [arm["key"] for arm in body["arms"]] == [
            "control",
            f"v{live.pk}",
            f"v{a.pk}",
            f"v{b.pk}",
        ]
        assert body["arms"][0]["share"] == pytest.approx(0.10)
        assert response["Location"] == f"{API}{body['id']}/"
        started_by = ReviewEvent.objects.filter(action="exp_start").first().user
        assert (started_by is None) == (role == "write")  # a token is nobody's account


@pytest.mark.parametrize(
    "role,expected",
    [("anonymous", 401), ("copywriter", 200), ("read", 200), ("write", 200), ("lead", 200)],
)
def test_reviewers_and_every_token_read_experiments(slot, role, expected):
    _live, (a, _b) = slot
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    client = as_(role)
    assert client.get(API).status_code == expected
    assert client.get(f"{API}{experiment.pk}/").status_code == expected


def test_a_copywriter_cannot_stop_pause_or_add(slot):
    _live, (a, b) = slot
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    client = as_("copywriter")
    before = _state()
    for url, body in (
        (f"{API}{experiment.pk}/stop/", {}),
        (f"{API}{experiment.pk}/arms/", {"variant": b.pk}),
        (f"{API}{experiment.pk}/arms/v{a.pk}/pause/", {}),
    ):
        assert client.post(url, body, format="json").status_code == 403
    assert _state() == before


def test_the_list_filters_by_prompt_and_status_running_first(slot):
    _live, (a, _b) = slot
    stopped = svc.experiment_start(variant_ids=[a.pk], user=None)
    svc.experiment_stop(experiment=stopped, user=None)
    running = svc.experiment_start(variant_ids=[a.pk], user=None)
    _other_live, (other,) = approved_slot(challengers=1)
    svc.experiment_start(variant_ids=[other.pk], user=None)
    client = as_("read")

    ids = [e["id"] for e in client.get(API, {"prompt": a.prompt.slug}).json()["results"]]
    assert ids == [running.pk, stopped.pk]
    only = client.get(API, {"status": "stopped"}).json()["results"]
    assert [e["id"] for e in only] == [stopped.pk]
    assert client.get(API, {"status": "paused"}).status_code == 400


def test_an_experiment_answers_with_its_corrected_sequential_analysis(slot):
    live, (a, b) = slot
    experiment = svc.experiment_start(
        variant_ids=[a.pk, b.pk], user=None, settings=svc.Settings(min_exposures=500)
    )
    arm_traffic(
        experiment,
        {
            "control": (1000, 50),
            f"v{live.pk}": (3000, 150),
            f"v{a.pk}": (3000, 300),
            f"v{b.pk}": (3000, 140),
        },
    )
    body = as_("read").get(f"{API}{experiment.pk}/").json()
    arms = {arm["key"]: arm for arm in body["arms"]}
    winner = arms[f"v{a.pk}"]
    assert (winner["visitors"], winner["successes"]) == (3000, 300)
    comparison = winner["comparison"]
    assert comparison["significant"] and comparison["low"] > 0
    assert comparison["adjusted_p"] >= comparison["sequential_p"]  # corrected
    # The sequential interval is wider than the one-look test's: the price of peeking.
    assert comparison["low"] < comparison["fixed_low"]
    assert winner["probability_best"] > 0.95
    assert winner["decision"] == "winner proposed"
    assert arms["control"]["comparison"] is None
    assert body["sample_ratio"]["mismatch"] is False
    assert body["sample_ratio"]["expected"]["control"] == pytest.approx(0.10)
    assert body["weights_history"][0]["reason"] == "start"


def test_a_broken_split_is_flagged_and_blocks_decisions(slot):
    live, (a, _b) = slot
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    arm_traffic(
        experiment, {"control": (2000, 100), f"v{live.pk}": (2000, 100), f"v{a.pk}": (2000, 300)}
    )
    body = as_("read").get(f"{API}{experiment.pk}/").json()
    assert body["sample_ratio"]["mismatch"] is True
    assert {arm["decision"] for arm in body["arms"][1:]} == {"keep running"}
    assert "blocked" in body["arms"][2]["decision_reason"]


def test_stop_with_a_promotion_publishes_the_variant(slot):
    live, (a, _b) = slot
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    response = as_("lead").post(
        f"{API}{experiment.pk}/stop/", {"promote": a.pk, "reason": "clear winner"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "stopped"
    assert response.json()["winner"] == a.pk
    a.refresh_from_db(), live.refresh_from_db()
    assert (a.status, live.status) == ("published", "retired")


def test_add_pause_and_resume_an_arm(slot):
    _live, (a, b) = slot
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    client = as_("write")
    added = client.post(f"{API}{experiment.pk}/arms/", {"variant": b.pk}, format="json")
    assert added.status_code == 201, added.content
    assert f"v{b.pk}" in {arm["key"] for arm in added.json()["arms"]}
    paused = client.post(
        f"{API}{experiment.pk}/arms/v{b.pk}/pause/", {"reason": "dull"}, format="json"
    )
    assert paused.status_code == 200, paused.content
    arm = next(x for x in paused.json()["arms"] if x["key"] == f"v{b.pk}")
    assert (arm["status"], arm["share"], arm["pause_reason"]) == ("paused", 0.0, "dull")
    resumed = client.post(f"{API}{experiment.pk}/arms/v{b.pk}/resume/", format="json")
    assert resumed.status_code == 200
    arm = next(x for x in resumed.json()["arms"] if x["key"] == f"v{b.pk}")
    assert arm["status"] == "active" and arm["share"] > 0


# --- bad input: 400 naming the field, nothing changed -----------------------------------


def _refused(client, url, body, field, words):
    before = _state()
    response = client.post(url, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert words in str(response.json()[field])
    assert _state() == before


def test_an_experiment_with_one_arm_is_refused(slot):
    _refused(as_("lead"), API, {"variants": []}, "variants", "two arms at least")


def test_shares_that_do_not_sum_to_100_percent_are_refused(slot):
    live, (a, _b) = slot
    shares = {"control": 10, f"v{live.pk}": 40, f"v{a.pk}": 40}
    body = {"variants": [a.pk], "shares": shares}
    _refused(as_("lead"), API, body, "shares", "sum to 100%, they sum to 90%")


def test_a_variant_from_another_slot_is_refused(slot):
    _live, (a, _b) = slot
    stranger = VariantFactory(status=Variant.Status.RETIRED, prompt=a.prompt)
    body = {"variants": [a.pk, stranger.pk]}
    _refused(as_("lead"), API, body, "variants", "another slot")


def test_a_slot_with_no_approved_variant_is_refused():
    in_review = VariantFactory(status=Variant.Status.IN_REVIEW)
    _refused(as_("lead"), API, {"variants": [in_review.pk]}, "variants", "was not approved")
    retired = VariantFactory(status=Variant.Status.RETIRED)
    _refused(as_("lead"), API, {"variants": [retired.pk]}, "slot", "no approved variant live")


def test_pausing_the_control_is_refused(slot):
    _live, (a, _b) = slot
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    url = f"{API}{experiment.pk}/arms/control/pause/"
    _refused(as_("lead"), url, {}, "arm", "control is never paused")
    _refused(as_("lead"), f"{API}{experiment.pk}/arms/v999/pause/", {}, "arm", "no arm 'v999'")


def test_stopping_a_stopped_experiment_is_refused(slot):
    _live, (a, _b) = slot
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    svc.experiment_stop(experiment=experiment, user=None)
    _refused(as_("lead"), f"{API}{experiment.pk}/stop/", {}, "experiment", "has stopped")


def test_promoting_a_variant_that_is_not_an_arm_is_refused(slot):
    _live, (a, b) = slot
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    url = f"{API}{experiment.pk}/stop/"
    _refused(as_("lead"), url, {"promote": b.pk}, "promote", "not an arm")
    _refused(as_("lead"), url, {"promote": 99999}, "promote", "Unknown variant")


def test_bad_settings_name_their_field(slot):
    _live, (a, _b) = slot
    client = as_("lead")
    _refused(client, API, {"variants": [a.pk], "control_share": 1.5}, "control_share", "between")
    _refused(client, API, {"variants": [a.pk], "allocation": "greedy"}, "allocation", "valid")
    _refused(client, API, {"variants": [a.pk], "cadence_minutes": 0}, "cadence_minutes", "1 minute")
    _refused(client, API, {"variants": ["x"]}, "variants", "valid integer")


def test_adding_a_variant_of_another_slot_names_the_variant(slot):
    _live, (a, _b) = slot
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    stranger = VariantFactory(status=Variant.Status.RETIRED)
    url = f"{API}{experiment.pk}/arms/"
    _refused(as_("lead"), url, {"variant": stranger.pk}, "variant", "another slot")


def test_a_second_experiment_on_a_slot_is_a_conflict(slot):
    _live, (a, b) = slot
    svc.experiment_start(variant_ids=[a.pk], user=None)
    before = _state()
    response = as_("lead").post(API, {"variants": [b.pk]}, format="json")
    assert response.status_code == 409
    assert "slot" in response.json()
    assert _state() == before


def test_challengers_over_the_api(slot, offline_writer):
    from generation.models import GenerationRun

    live, (a, _b) = slot
    experiment = svc.experiment_start(variant_ids=[a.pk], user=None)
    url = f"/api/v1/experiments/{experiment.pk}/challengers/"
    refused = as_("write").post(url, {"budget": "-1"}, format="json")
    assert refused.status_code == 400 and "budget" in refused.json()
    assert not GenerationRun.objects.exists()
    made = as_("write").post(url, {}, format="json")
    assert made.status_code == 201, made.content
    run = GenerationRun.objects.get(pk=made.json()["run"])
    assert run.total == 1 and made.json()["prompt_version"] == live.prompt.current_version.number
    svc.experiment_stop(experiment=experiment, user=None)
    stopped = as_("write").post(url, {}, format="json")
    assert stopped.status_code == 400 and "has stopped" in str(stopped.json())
