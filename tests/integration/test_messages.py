"""One-to-one messages through real parts: the API, a Celery worker, the offline
writer over HTTP, a callback receiver over HTTP."""

import json
import time

import pytest

from generation.models import GenerationRun, Prompt, Variant
from generation.services import messages
from review import policy
from tests.factories import CustomerFactory, ProductFactory, PromptVersionFactory, SegmentFactory
from tests.review.test_rest_api import API, as_

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver(callback_receiver):
    return callback_receiver


def _until(predicate, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    pytest.fail("timed out")


def _customer_data(offline_writer, purpose: str) -> dict:
    """The data block of the request the writer received for `purpose`."""
    for request in reversed(offline_writer.requests):
        user = request["body"]["messages"][-1]["content"]
        if purpose in user:
            return json.loads(user.split("<data>\n", 1)[1].rsplit("\n</data>", 1)[0])
    pytest.fail(f"the writer received no request for {purpose!r}")


def test_a_synchronous_message_is_written_checked_and_published_by_the_policy(
    celery_worker_process, offline_writer
):
    version = PromptVersionFactory(prompt__review_policy=Prompt.ReviewPolicy.AUTO)
    version.prompt.allowed_attributes = ["value_tier", "preferred_subcategory"]
    version.prompt.save()
    ProductFactory(sku="TRAIL-1")
    CustomerFactory(
        external_id="CUST-424242",
        language="de",
        attributes={
            "value_tier": "high",
            "preferred_subcategory": "Trail Running",
            "region": "north",
            "email": "kim@example.com",
        },
    )
    body = {
        "prompt": version.prompt.slug,
        "product": "TRAIL-1",
        "customer": "CUST-424242",
        "purpose": "back in stock",
        "wait": 30,
    }

    response = as_("write").post(f"{API}/messages/", body, format="json")

    assert response.status_code == 200, response.content
    message = response.json()
    assert message["status"] == "published" and message["policy_outcome"] == "auto"
    assert message["text"] and message["language"] == "de"
    # Exactly the allowed attributes reached the endpoint: no id, no e-mail, no region.
    data = _customer_data(offline_writer, "back in stock")
    assert data["audience"]["attributes"] == {
        "value_tier": "high",
        "preferred_subcategory": "Trail Running",
    }
    assert data["audience"]["purpose"] == "back in stock"
    raw = json.dumps(offline_writer.requests)
    assert "CUST-424242" not in raw and "kim@example.com" not in raw and "north" not in raw
    variant = Variant.objects.get(pk=message["id"])
    assert "purpose 'back in stock'" in variant.rationale

    # A second message sees the first as history.
    body |= {"purpose": "new season"}
    second = as_("write").post(f"{API}/messages/", body, format="json").json()
    assert second["status"] == "published"
    history = _customer_data(offline_writer, "new season")["audience"]["previous_messages"]
    assert history == [message["text"]]


def test_an_asynchronous_message_calls_back_once_a_reviewer_publishes_it(
    celery_worker_process, offline_writer, receiver
):
    version = PromptVersionFactory()  # review_all
    ProductFactory(sku="TRAIL-2")
    CustomerFactory(external_id="C-2")
    hook = receiver.url
    response = as_("write").post(
        f"{API}/messages/",
        {"prompt": version.prompt.slug, "product": "TRAIL-2", "customer": "C-2",
         "purpose": "welcome", "callback_url": hook},
        format="json",
    )  # fmt: skip
    assert response.status_code == 202
    pk = response.json()["id"]
    _until(lambda: Variant.objects.filter(pk=pk, status="in_review").exists())
    assert receiver.received == []  # written, but nobody has published it yet

    revision = Variant.objects.get(pk=pk).revision
    approved = as_("lead").post(
        f"{API}/variants/{pk}/approve/", {"revision": revision}, format="json"
    )
    assert approved.status_code == 200, approved.content

    [event] = _until(lambda: receiver.received)
    assert event["event"] == "message.published"
    assert event["message"]["id"] == pk and event["message"]["text"]


def test_a_run_over_a_segment_follows_the_sample_policy(celery_worker_process, offline_writer):
    version = PromptVersionFactory(
        prompt__review_policy=Prompt.ReviewPolicy.SAMPLE, prompt__review_sample_percent=40
    )
    product = ProductFactory()
    for i in range(20):
        CustomerFactory(attributes={"value_tier": "high" if i % 2 else "low"})
    segment = SegmentFactory(rules={"value_tier": "high"})

    run = messages.message_run_create(
        prompt=version.prompt, product=product, purpose="vip night", segment=segment
    )
    run = _until(
        lambda: GenerationRun.objects.filter(pk=run.pk, status="finished").first(), timeout=120
    )

    assert (run.total, run.succeeded, run.failed) == (10, 10, 0)
    counts = messages.policy_counts(version.prompt)
    assert sum(counts.values()) == 10
    variants = Variant.objects.filter(run=run)
    sampled = [v.pk for v in variants if policy.in_sample(v.pk, 40)]
    assert counts["sampled"] == len(sampled)
    assert variants.filter(status="published").count() == counts["auto"]
    assert variants.filter(status="in_review").count() == counts["sampled"] + counts["held"]
