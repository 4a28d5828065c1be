"""Issue 17 item 2: a slot running an experiment serves each visitor one arm, picked
without a query, and the events quoting an arm's exposure id record it."""

import json
import math
import os
import random
import subprocess
import sys

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from generation.models import Product, Variant
from review import delivery
from review.auth import api_token_create
from review.delivery import Exposure, visitor_hash
from review.experiments.allocation import pick_arm
from review.models import EngagementEvent, Experiment, ExperimentWeights
from review.rest import live as api
from review.services import experiments as svc
from tests.factories import (
    CustomerFactory,
    PromptFactory,
    PromptVersionFactory,
    SegmentFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

LIVE = "/api/v1/live/"
BATCH = "/api/v1/live/batch/"
EVENTS = "/api/v1/events/"
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _client(kind: str) -> APIClient:
    _token, key = api_token_create(name=f"{kind} client", kind=kind)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def reader():
    return _client("read")


@pytest.fixture
def writer():
    return _client("write")


def _slot(language: str = "en", translations: dict | None = None):
    """A segment slot with its published variant and an approved challenger (retired),
    of a prompt without a holdout."""
    prompt = PromptFactory(slug="pdp", holdout_percent=0, languages=["en", "de"])
    segment = SegmentFactory(rules={"value_tier": "high"})
    live = VariantFactory(
        status=Variant.Status.PUBLISHED,
        prompt_version=PromptVersionFactory(prompt=prompt, number=1),
        segment=segment,
        language=language,
        text="Live copy",
    )
    if translations:
        Product.objects.filter(pk=live.product_id).update(translations=translations)
    challenger = VariantFactory(
        status=Variant.Status.RETIRED,
        prompt_version=PromptVersionFactory(prompt=prompt, number=2),
        product=live.product,
        segment=segment,
        language=language,
        text="Challenger copy",
    )
    return live, challenger


@pytest.fixture
def slot():
    return _slot()


def _start(live, challenger, shares=None) -> Experiment:
    return svc.experiment_start(variant_ids=[challenger.pk], user=None, shares=shares)


def _params(variant, **extra):
    return {
        "prompt": variant.prompt.slug,
        "product": variant.product.sku,
        "segment": variant.segment.slug,
        **extra,
    }


def _weights(experiment: Experiment) -> ExperimentWeights:
    return experiment.weights.latest()


def _visitor_for(experiment: Experiment, arm: str) -> str:
    """A visitor whom pick_arm gives `arm` under the shares in force."""
    weights = _weights(experiment).weights
    for i in range(10_000):
        visitor = f"cookie-{i}"
        if pick_arm(experiment_key=experiment.key, visitor=visitor, weights=weights).arm == arm:
            return visitor
    raise AssertionError(f"no visitor gets {arm}")


def _arms(experiment: Experiment) -> list[str]:
    return sorted(_weights(experiment).weights)


def _database_only(monkeypatch):
    """Every answer from live_copy's database path, as a process without the block."""
    monkeypatch.setattr(delivery, "rendered_from_snapshot", lambda *args: None)
    monkeypatch.setattr(delivery, "live_from_snapshot", lambda *args: None)
    monkeypatch.setattr(delivery, "_live_for_customer", lambda *args: None)


# ---------------------------------------------------------------- serving an arm


def test_a_visitor_gets_an_arm_and_an_e3_exposure_id_that_says_so(reader, slot):
    live, challenger = slot
    experiment = _start(live, challenger)
    weights = _weights(experiment)
    for arm in _arms(experiment):
        visitor = _visitor_for(experiment, arm)
        body = reader.get(LIVE, _params(live, visitor=visitor)).json()
        assert (body["experiment"], body["arm"]) == (experiment.pk, arm)
        exposure = Exposure.decode(body["exposure_id"])
        assert exposure.arm == arm
        assert exposure.experiment_id == experiment.pk
        assert exposure.weights_id == weights.pk
        assert exposure.probability == pytest.approx(weights.weights[arm], abs=1e-6)
        assert exposure.randomized is True
        assert exposure.visitor == visitor_hash(visitor) != visitor
        if arm == "control":
            assert (body["source"], body["fallback_reason"]) == ("base_copy", "experiment_control")
            assert body["fallback"] is True
            assert body["text"] == live.product.description
            assert body["variant_id"] is None and body["prompt_version"] is None
        else:
            variant = live if arm == f"v{live.pk}" else challenger
            assert (body["source"], body["variant_id"]) == ("segment", variant.pk)
            assert body["text"] == variant.text
            assert body["prompt_version"] == variant.prompt_version.number
        # The same visitor, again: the same arm and the same body.
        again = reader.get(LIVE, _params(live, visitor=visitor)).json()
        assert again == body


def test_without_a_visitor_the_live_variant_serves_not_randomized(reader, slot):
    live, challenger = slot
    experiment = _start(live, challenger)
    for params in (_params(live), _params(live, visitor="")):
        body = reader.get(LIVE, params).json()
        assert (body["variant_id"], body["text"], body["source"]) == (
            live.pk,
            "Live copy",
            "segment",
        )
        assert (body["experiment"], body["arm"]) == (experiment.pk, f"v{live.pk}")
        exposure = Exposure.decode(body["exposure_id"])
        assert exposure.randomized is False and exposure.visitor == ""
        assert exposure.probability == pytest.approx(0.45, abs=1e-6)  # its share
        assert exposure.weights_id == _weights(experiment).pk


@pytest.mark.parametrize(
    ("control", "message"),
    [(0.1, "shares must sum to 1, they sum to 0.9"), ("0.2", "'>=' not supported")],
)
def test_shares_that_are_not_a_split_leave_the_slot_plain_and_are_logged(
    reader, slot, caplog, control, message
):
    """Shares written past experiment_start's checks (summing to 0.9, or a share that is
    text) are refused once, when the snapshot reads them, not on every visitor's
    request, and the slot serves its published variant."""
    live, challenger = slot
    experiment = _start(live, challenger)
    ExperimentWeights.objects.create(
        experiment=experiment,
        weights={"control": control, f"v{live.pk}": 0.4, f"v{challenger.pk}": 0.4},
        reason="manual",
    )
    delivery.live_changed(
        prompt_id=live.prompt_id, segment_id=live.segment_id, product_id=live.product_id
    )
    with caplog.at_level("ERROR", logger="review.delivery"):
        body = reader.get(LIVE, _params(live, visitor="cookie-1")).json()
    assert (body["experiment"], body["variant_id"], body["text"]) == (None, live.pk, "Live copy")
    assert f"experiment {experiment.pk}: its shares are not a split" in caplog.text
    assert message in caplog.text


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"segment_id": None, "segment": None, "customer_id": 9, "customer": "C-9"},
        {"variant_id": None, "prompt_version": None, "fallback_reason": "no_live_variant"},
        {"text": 'Say "hi" \\ to a\ttab, a\nline, \x00, \x1f, \u2028, ü, 漢字 and 🏃'},
        {"language": "de-CH", "language_reason": "base_language", "product": 'SKU "1"/ü'},
        {
            "experiment_id": 4,
            "weights_id": 7,
            "arm": "v12",
            "probability": 0.45,
            "randomized": True,
            "visitor": "00ff00ff00ff00ff",
        },
        {
            "variant_id": None,
            "prompt_version": None,
            "source": "base_copy",
            "fallback_reason": "experiment_control",
            "experiment_id": 4,
            "weights_id": 7,
            "arm": "control",
            "probability": 0.1,
        },
    ],
)
def test_a_live_answers_body_is_its_dict_as_the_api_renders_it(fields):
    """Live.body writes the JSON itself, for speed: byte for byte what rendering as_dict
    writes (and DRF's JSONRenderer: the fast path and the view agree, tested above)."""
    live = delivery.Live(
        **{
            "prompt_id": 1,
            "prompt": "pdp",
            "product_id": 2,
            "product": "SKU-1",
            "segment_id": 3,
            "segment": "high-value",
            "customer_id": None,
            "customer": None,
            "variant_id": 12,
            "prompt_version": 2,
            "text": "Live copy",
            "source": "segment",
            "fallback_reason": None,
            **fields,
        }
    )
    assert live.body() == delivery.render(live.as_dict())
    assert json.loads(live.body())["exposure_id"] == live.exposure().encode()


def test_a_slot_without_an_experiment_answers_as_before(reader, slot):
    live, _challenger = slot
    body = reader.get(LIVE, _params(live, visitor="cookie-1")).json()
    assert (body["experiment"], body["arm"], body["variant_id"]) == (None, None, live.pk)
    assert body["exposure_id"].startswith("e2.")
    assert Exposure.decode(body["exposure_id"]).experiment_id is None


def test_the_arm_is_stable_across_processes(reader, slot):
    """pick_arm hashes with blake2b, not Python's hash(): other interpreters with other
    hash seeds pick what this web process served."""
    live, challenger = slot
    experiment = _start(live, challenger)
    visitors = [f"device-{i}" for i in range(40)]
    served = [reader.get(LIVE, _params(live, visitor=v)).json()["arm"] for v in visitors]
    assert len(set(served)) == 3
    code = (
        "import json, sys\n"
        "from review.experiments.allocation import pick_arm\n"
        "key, weights, visitors = json.load(sys.stdin)\n"
        "print(json.dumps([pick_arm(experiment_key=key, visitor=v, weights=weights).arm "
        "for v in visitors]))\n"
    )
    payload = json.dumps([experiment.key, _weights(experiment).weights, visitors])
    for seed in ("1", "2", "random"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=payload,
            capture_output=True,
            text=True,
            cwd=PROJECT_DIR,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
        )
        assert json.loads(done.stdout) == served


def test_arm_shares_match_the_weights_over_many_visitors(slot, settings):
    settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS = 60  # the same block for every visitor
    live, challenger = slot
    shares = {"control": 20, f"v{live.pk}": 30, f"v{challenger.pk}": 50}
    _start(live, challenger, shares=shares)
    rng = random.Random(17)
    n = 20_000
    counts: dict[str, int] = dict.fromkeys(shares, 0)
    for _ in range(n):
        visitor = f"{rng.getrandbits(64):016x}"
        (answer,) = delivery.live_from_snapshot(
            "pdp", [live.product.sku], live.segment.slug, "", visitor
        )
        counts[answer.arm] += 1
    for arm, percent in shares.items():
        p = percent / 100
        # Five standard deviations of Binomial(n, p): a bias of a point shows, and with
        # the seed fixed the draw is the same every run.
        assert abs(counts[arm] - n * p) <= 5 * math.sqrt(n * p * (1 - p)), counts


def test_a_paused_arms_visitors_move_and_nobody_else(reader, slot):
    live, challenger = slot
    third = VariantFactory(
        status=Variant.Status.RETIRED,
        prompt_version=PromptVersionFactory(prompt=live.prompt, number=3),
        product=live.product,
        segment=live.segment,
        text="Third copy",
    )
    experiment = svc.experiment_start(variant_ids=[challenger.pk, third.pk], user=None)
    visitors = [f"v-{i}" for i in range(300)]

    def arms() -> list[str]:
        results = reader.get(LIVE, _params(live)).json()  # warm, then each visitor
        assert results["experiment"] == experiment.pk
        return [reader.get(LIVE, _params(live, visitor=v)).json()["arm"] for v in visitors]

    before = arms()
    paused = f"v{challenger.pk}"
    assert paused in before
    svc.experiment_arm_pause(
        arm=experiment.arms.get(variant=challenger), user=None, reason="losing"
    )
    after = arms()
    assert paused not in after
    for old, new in zip(before, after, strict=True):
        assert new == old or old == paused


def test_experiment_changes_reach_the_live_path_at_once(reader, slot):
    """Start, pause and stop each bump the slot's bucket: the block is read again and no
    visitor is served a stale arm."""
    live, challenger = slot
    visitor = "someone"
    assert reader.get(LIVE, _params(live, visitor=visitor)).json()["experiment"] is None

    experiment = _start(live, challenger)
    arm = f"v{challenger.pk}"
    visitor = _visitor_for(experiment, arm)
    with CaptureQueriesContext(connection) as queries:
        body = reader.get(LIVE, _params(live, visitor=visitor)).json()
    assert (body["experiment"], body["arm"], body["text"]) == (
        experiment.pk,
        arm,
        "Challenger copy",
    )
    reads = [q["sql"] for q in queries if "review_experiment" in q["sql"]]
    assert len(reads) == 1 and "e.product_id" in reads[0]  # the bucket's, not the block's

    svc.experiment_arm_pause(arm=experiment.arms.get(variant=challenger), user=None, reason="x")
    body = reader.get(LIVE, _params(live, visitor=visitor)).json()
    assert body["arm"] != arm and body["experiment"] == experiment.pk
    assert Exposure.decode(body["exposure_id"]).weights_id == _weights(experiment).pk

    svc.experiment_stop(experiment=experiment, user=None)
    body = reader.get(LIVE, _params(live, visitor=visitor)).json()
    assert (body["experiment"], body["arm"], body["variant_id"]) == (None, None, live.pk)
    assert body["exposure_id"].startswith("e2.")


def test_a_challengers_text_saved_reaches_its_visitors_at_once(reader, slot):
    """An arm's variant is `testing`: a save of its text (an admin's fix) bumps the
    slot's bucket as a published variant's does, rather than wait for the safety net."""
    live, challenger = slot
    experiment = _start(live, challenger)
    visitor = _visitor_for(experiment, f"v{challenger.pk}")
    assert reader.get(LIVE, _params(live, visitor=visitor)).json()["text"] == "Challenger copy"
    challenger.refresh_from_db()
    assert challenger.status == Variant.Status.TESTING
    challenger.text = "Challenger, fixed"
    challenger.save(update_fields=["text"])
    assert reader.get(LIVE, _params(live, visitor=visitor)).json()["text"] == "Challenger, fixed"


def test_a_new_weights_row_reaches_the_live_path(reader, slot):
    """The beat writes new shares (a bandit): the exposure ids name the new row."""
    live, challenger = slot
    experiment = _start(live, challenger)
    reader.get(LIVE, _params(live, visitor="x"))
    row = ExperimentWeights.objects.create(
        experiment=experiment,
        weights={"control": 0.1, f"v{live.pk}": 0.0, f"v{challenger.pk}": 0.9},
        reason="thompson",
    )
    delivery.live_changed(
        prompt_id=live.prompt_id, segment_id=live.segment_id, product_id=live.product_id
    )
    visitor = _visitor_for(experiment, f"v{challenger.pk}")
    exposure = Exposure.decode(
        reader.get(LIVE, _params(live, visitor=visitor)).json()["exposure_id"]
    )
    assert (exposure.weights_id, exposure.probability) == (row.pk, pytest.approx(0.9))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row versions")
@pytest.mark.parametrize("change", ["stopped", "new weights", "challenger text", "none"])
def test_a_quiet_experiment_change_is_found_when_its_bucket_is_due_by_age(
    reader, slot, settings, change
):
    """The snapshot's safety net covers the experiment rows a slot is read from: a write
    behind the app's back (no signal, no epoch) is found by the check of row versions
    once the bucket is due by age; with nothing changed, no copy is read."""
    live, challenger = slot
    experiment = _start(live, challenger)
    visitor = _visitor_for(experiment, f"v{challenger.pk}")
    assert reader.get(LIVE, _params(live, visitor=visitor)).json()["text"] == "Challenger copy"
    expected = {
        "stopped": "Live copy",  # the published variant, no experiment
        "new weights": live.product.description,  # all traffic to the control
        "challenger text": "Edited quietly",
        "none": "Challenger copy",
    }[change]
    if change == "stopped":
        Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.STOPPED)
    elif change == "new weights":
        ExperimentWeights.objects.bulk_create(
            [
                ExperimentWeights(
                    experiment=experiment,
                    weights={"control": 1.0, f"v{live.pk}": 0.0, f"v{challenger.pk}": 0.0},
                    reason="quiet",
                )
            ]
        )
    elif change == "challenger text":
        Variant.objects.filter(pk=challenger.pk).update(text="Edited quietly")
    block = delivery.snapshot.block(live.prompt.slug, live.segment.slug)
    block.loaded[live.product_id % delivery.BUCKETS] -= settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
    block.verified -= settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS
    with CaptureQueriesContext(connection) as queries:
        body = reader.get(LIVE, _params(live, visitor=visitor)).json()
    read = [q["sql"] for q in queries if "v.text" in q["sql"]]
    assert body["text"] == expected
    assert (read == []) == (change == "none")


# ---------------------------------------------------------------- snapshot and database


@pytest.mark.parametrize(
    ("language", "translations", "asked"),
    [
        ("en", None, None),
        ("de", {"de": {"description": "Deutsche Grundbeschreibung"}}, "de"),
        ("de", {"de": {"description": "Deutsche Grundbeschreibung"}}, "de-ch"),
        ("de", None, "de"),
    ],
    ids=["default language", "de", "de-ch asks, de slot", "de without base copy"],
)
def test_the_snapshot_and_the_database_agree_for_every_arm(
    reader, monkeypatch, language, translations, asked
):
    live, challenger = _slot(language=language, translations=translations)
    experiment = _start(live, challenger)
    extra = {"language": asked} if asked else {}
    visitors = ["", *(_visitor_for(experiment, arm) for arm in _arms(experiment))]
    fast = [reader.get(LIVE, _params(live, visitor=v, **extra)) for v in visitors]
    batch = [
        reader.get(
            BATCH,
            {
                "prompt": "pdp",
                "segment": live.segment.slug,
                "products": live.product.sku,
                "visitor": v,
                **extra,
            },
        )
        for v in visitors
    ]
    assert {r.json()["arm"] for r in fast} == set(_arms(experiment))
    control = next(r.json() for r in fast if r.json()["arm"] == "control")
    if translations:
        assert control["text"] == "Deutsche Grundbeschreibung"
        assert control["language"] == "de"
    else:
        assert control["text"] == live.product.description
        assert control["language"] == "en"
    _database_only(monkeypatch)
    slow = [reader.get(LIVE, _params(live, visitor=v, **extra)) for v in visitors]
    slow_batch = [
        reader.get(
            BATCH,
            {
                "prompt": "pdp",
                "segment": live.segment.slug,
                "products": live.product.sku,
                "visitor": v,
                **extra,
            },
        )
        for v in visitors
    ]
    for a, b in zip(fast + batch, slow + slow_batch, strict=True):
        assert a.status_code == b.status_code == 200
        assert a.content == b.content
        assert a["ETag"] == b["ETag"]


def test_the_fast_path_and_the_drf_view_agree_with_a_visitor(reader, slot, monkeypatch):
    live, challenger = slot
    _start(live, challenger)
    handed_over = []
    view = api._live_view
    monkeypatch.setattr(api, "_live_view", lambda request: handed_over.append(1) or view(request))
    fast = reader.get(LIVE, _params(live, visitor="a b/ü"))  # quoted, not ASCII unquoted
    assert handed_over == []
    slow = reader.get(LIVE, _params(live, visitor="a b/ü", utm_source="mail"))
    assert handed_over == [1]
    assert fast.content == slow.content and fast["ETag"] == slow["ETag"]
    # Whitespace around the id: the field trims it, so LiveView answers.
    trimmed = reader.get(LIVE, _params(live, visitor=" a b/ü "))
    assert handed_over == [1, 1]
    assert trimmed.content == fast.content


# ---------------------------------------------------------------- customers, pins


def test_a_customer_of_the_segment_gets_the_visitors_arm(reader, slot, monkeypatch):
    live, challenger = slot
    experiment = _start(live, challenger)
    customer = CustomerFactory(attributes={"value_tier": "high"})
    params = {"prompt": "pdp", "product": live.product.sku, "customer": customer.external_id}
    fast = {}
    for arm in _arms(experiment):
        visitor = _visitor_for(experiment, arm)
        fast[visitor] = reader.get(LIVE, {**params, "visitor": visitor})
        body = fast[visitor].json()
        assert (body["arm"], body["customer"]) == (arm, customer.external_id)
        assert Exposure.decode(body["exposure_id"]).customer_id == customer.pk
    _database_only(monkeypatch)
    for visitor, response in fast.items():
        assert reader.get(LIVE, {**params, "visitor": visitor}).content == response.content


@pytest.mark.parametrize("database", [False, True], ids=["snapshot", "database"])
def test_a_customers_own_variant_is_in_no_experiment(reader, slot, monkeypatch, database):
    live, challenger = slot
    experiment = _start(live, challenger)
    customer = CustomerFactory(attributes={"value_tier": "high"})
    own = VariantFactory(
        status=Variant.Status.PUBLISHED,
        prompt_version=live.prompt_version,
        product=live.product,
        segment=None,
        customer=customer,
        text="Written for one",
    )
    if database:
        _database_only(monkeypatch)
    visitor = _visitor_for(experiment, "control")
    body = reader.get(
        LIVE,
        {
            "prompt": "pdp",
            "product": live.product.sku,
            "customer": customer.external_id,
            "visitor": visitor,
        },
    ).json()
    assert (body["source"], body["variant_id"], body["text"]) == ("customer", own.pk, own.text)
    assert (body["experiment"], body["arm"]) == (None, None)
    assert body["exposure_id"].startswith("e2.")


def test_a_customer_in_the_holdout_stays_there(reader, slot):
    live, challenger = slot
    experiment = _start(live, challenger)
    live.prompt.holdout_percent = 100
    live.prompt.save()
    customer = CustomerFactory(attributes={"value_tier": "high"})
    visitor = _visitor_for(experiment, f"v{challenger.pk}")
    body = reader.get(
        LIVE,
        {
            "prompt": "pdp",
            "product": live.product.sku,
            "customer": customer.external_id,
            "visitor": visitor,
        },
    ).json()
    assert (body["fallback_reason"], body["experiment"], body["arm"]) == ("holdout", None, None)


def test_a_pinned_variant_is_in_no_experiment(reader, slot):
    live, challenger = slot
    _start(live, challenger)
    # A challenger serving as an arm is live copy: a sent e-mail showing it re-renders.
    params = {**_params(live), "variant": challenger.pk, "visitor": "x"}
    body = reader.get(LIVE, params).json()
    assert (body["source"], body["variant_id"], body["experiment"]) == (
        "pinned",
        challenger.pk,
        None,
    )
    assert body["exposure_id"].startswith("e2.")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("path", [LIVE, BATCH])
def test_a_visitor_over_200_characters_is_a_400_naming_it(reader, slot, path):
    live, challenger = slot
    _start(live, challenger)
    params = _params(live, visitor="x" * 201)
    if path == BATCH:
        params["products"] = params.pop("product")
    with CaptureQueriesContext(connection) as queries:
        response = reader.get(path, params)
    assert response.status_code == 400
    assert list(response.json()) == ["visitor"]
    assert "200 characters" in response.json()["visitor"][0]
    # Refused before any copy was looked up, and nothing written.
    assert not [q for q in queries if "generation_variant" in q["sql"]]
    assert not delivery.snapshot._blocks
    assert reader.get(path, {**params, "visitor": "x" * 200}).status_code == 200


# ---------------------------------------------------------------- engagement


def _event(exposure_id: str, kind: str = "impression", event_id: str = "e-1") -> dict:
    return {"event_id": event_id, "type": kind, "exposure_id": exposure_id}


def test_events_quoting_an_arm_record_it(reader, writer, slot):
    live, challenger = slot
    experiment = _start(live, challenger)
    weights = _weights(experiment)
    visitor = _visitor_for(experiment, "control")
    randomized = reader.get(LIVE, _params(live, visitor=visitor)).json()["exposure_id"]
    default = reader.get(LIVE, _params(live)).json()["exposure_id"]
    response = writer.post(
        EVENTS,
        [_event(randomized), _event(randomized, "click", "e-2"), _event(default, event_id="e-3")],
        format="json",
    )
    assert response.status_code == 200, response.json()
    control = EngagementEvent.objects.get(event_id="e-2")
    assert (control.experiment_id, control.weights_id, control.arm) == (
        experiment.pk,
        weights.pk,
        "control",
    )
    assert control.variant_id is None
    assert control.probability == pytest.approx(0.10, abs=1e-6)
    assert (control.randomized, control.visitor) == (True, visitor_hash(visitor))
    plain = EngagementEvent.objects.get(event_id="e-3")
    assert (plain.arm, plain.variant_id, plain.randomized, plain.visitor) == (
        f"v{live.pk}",
        live.pk,
        False,
        "",
    )
    counts = svc.experiment_counts(experiment)
    assert counts.control.exposures == 1 and counts.control.successes == 1
    assert counts.non_randomized == 1


def test_a_forged_arm_is_refused(reader, writer, slot):
    """The exposure id is signed: changing its arm, probability or visitor breaks it."""
    live, challenger = slot
    experiment = _start(live, challenger)
    visitor = _visitor_for(experiment, "control")
    exposure_id = reader.get(LIVE, _params(live, visitor=visitor)).json()["exposure_id"]
    payload, signature = exposure_id.rsplit(":", 1)
    parts = payload.split(".")
    assert parts[0] == "e3" and len(parts) == 12
    forgeries = []
    for index, value in ((5, str(challenger.pk)), (9, "999999"), (10, "0"), (11, "0" * 16)):
        changed = list(parts)
        changed[index] = value
        forgeries.append(".".join(changed) + ":" + signature)
    forgeries.append(payload + ":" + signature[:-2] + "AA")
    for forged in forgeries:
        response = writer.post(
            EVENTS, [_event(exposure_id), _event(forged, event_id="bad")], format="json"
        )
        assert response.status_code == 400
        assert list(response.json()) == ["events[1].exposure_id"]
        assert (
            "not an exposure id issued by this API" in response.json()["events[1].exposure_id"][0]
        )
    assert not EngagementEvent.objects.exists()


def test_an_event_on_an_experiment_that_was_deleted_is_refused(reader, writer, slot):
    live, challenger = slot
    experiment = _start(live, challenger)
    exposure_id = reader.get(LIVE, _params(live, visitor="x")).json()["exposure_id"]
    svc.experiment_stop(experiment=experiment, user=None)
    Experiment.objects.filter(pk=experiment.pk).delete()
    response = writer.post(EVENTS, [_event(exposure_id)], format="json")
    assert response.status_code == 400
    message = response.json()["events[0].exposure_id"][0]
    assert "experiment it names no longer exists" in message
    assert not EngagementEvent.objects.exists()


@pytest.mark.parametrize("value", ["e2.1.2.3.0.4.en", "e3.1.2.3.0.0.de-ch.5.6.100000.1.00ff", "ü"])
def test_exposure_ids_are_signed_as_djangos_signer_signs_them(value):
    assert delivery._sign(value) == delivery._signer.sign(value)
    assert delivery._signer.unsign(delivery._sign(value)) == value


def test_the_live_path_hashes_with_the_experiments_own_key(slot):
    live, challenger = slot
    experiment = _start(live, challenger)
    assert delivery.experiment_key(experiment.pk) == experiment.key
