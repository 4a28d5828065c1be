"""One-to-one messages: requests, review policies, callbacks, privacy settings."""

from __future__ import annotations

import base64
import json
import os

import pytest

from generation import callbacks, prompting
from generation.models import Prompt, Variant
from generation.services import messages
from review import policy
from review.models import ReviewEvent
from tests.factories import (
    CustomerFactory,
    ProductFactory,
    PromptVersionFactory,
    SegmentFactory,
    VariantFactory,
)
from tests.review.test_rest_api import API, as_

pytestmark = pytest.mark.django_db


@pytest.fixture
def version():
    return PromptVersionFactory()


def _message(version, customer, **fields):
    return VariantFactory(
        prompt_version=version, segment=None, customer=customer, purpose="restock", **fields
    )


def test_asking_twice_for_a_message_returns_the_same_one(
    version, django_capture_on_commit_callbacks
):
    product, customer = ProductFactory(), CustomerFactory()
    with django_capture_on_commit_callbacks() as queued:
        first, created = messages.message_create(
            prompt=version.prompt, product=product, customer=customer, purpose=" back  in stock "
        )
    assert created and first.purpose == "back in stock" and len(queued) == 1
    again, created = messages.message_create(
        prompt=version.prompt, product=product, customer=customer, purpose="back in stock"
    )
    assert (again.pk, created) == (first.pk, False)
    other, created = messages.message_create(
        prompt=version.prompt, product=product, customer=customer, purpose="birthday"
    )
    assert created and other.pk != first.pk


def test_a_failed_message_asked_for_again_is_queued_again(version):
    variant = _message(version, CustomerFactory(), status=Variant.Status.FAILED, error="timeout")
    again, created = messages.message_create(
        prompt=version.prompt, product=variant.product, customer=variant.customer, purpose="restock"
    )
    assert created and (again.pk, again.status, again.error) == (variant.pk, "queued", "")


@pytest.mark.parametrize(
    ("purpose", "message"), [("  ", "Say what the message is for"), ("x" * 301, "longer than 300")]
)
def test_a_message_needs_a_purpose(version, purpose, message):
    with pytest.raises(messages.MessageError, match=message) as error:
        messages.message_create(
            prompt=version.prompt, product=ProductFactory(), customer=CustomerFactory(),
            purpose=purpose,
        )  # fmt: skip
    assert error.value.field == "purpose"


def test_the_last_three_received_messages_are_the_context_newest_first(version):
    from django.utils import timezone

    customer = CustomerFactory()
    now = timezone.now()
    for days, text in enumerate(["fourth", "third", "second", "first"]):
        _message(
            version,
            customer,
            status=Variant.Status.RETIRED if days else Variant.Status.PUBLISHED,
            text=text,
            published=now - timezone.timedelta(days=days),
        )
    _message(version, customer, text="never sent", status=Variant.Status.REJECTED)
    assert prompting.previous_messages(customer) == ["fourth", "third", "second"]


# --- review policy ------------------------------------------------------------------------


def _written(version, *, checks_failed=0, n=1):
    return [_message(version, CustomerFactory(), checks_failed=checks_failed) for _ in range(n)]


def test_review_all_leaves_every_variant_to_people(version):
    [variant] = _written(version)
    assert policy.policy_apply([variant.pk]) == {"auto": 0, "sampled": 0, "held": 0}
    variant.refresh_from_db()
    assert (variant.status, variant.policy_outcome) == ("in_review", "")


def test_auto_publishes_what_passes_and_holds_what_fails(version):
    Prompt.objects.filter(pk=version.prompt_id).update(review_policy="auto")
    [good] = _written(version)
    [bad] = _written(version, checks_failed=1)
    assert policy.policy_apply([good.pk, bad.pk]) == {"auto": 1, "sampled": 0, "held": 1}
    good.refresh_from_db()
    bad.refresh_from_db()
    assert (good.status, good.policy_outcome) == ("published", "auto")
    assert (bad.status, bad.policy_outcome) == ("in_review", "held")
    event = ReviewEvent.objects.get(variant=good)
    assert (event.action, event.user, event.reason) == ("approve", None, policy.POLICY_REASON)
    assert messages.policy_counts(version.prompt) == {"auto": 1, "sampled": 0, "held": 1}


def test_a_sample_is_reviewed_and_the_rest_published(version):
    Prompt.objects.filter(pk=version.prompt_id).update(
        review_policy="sample", review_sample_percent=30
    )
    variants = _written(version, n=60)
    counts = policy.policy_apply([v.pk for v in variants])
    sampled = [v.pk for v in variants if policy.in_sample(v.pk, 30)]
    assert counts == {"auto": 60 - len(sampled), "sampled": len(sampled), "held": 0}
    assert 5 <= len(sampled) <= 35  # a stable hash, not a coin per call
    assert set(Variant.objects.filter(pk__in=sampled).values_list("status", flat=True)) == {
        "in_review"
    }


def test_in_sample_is_stable_and_close_to_its_share():
    picks = [policy.in_sample(i, 20) for i in range(10_000)]
    assert picks == [policy.in_sample(i, 20) for i in range(10_000)]
    assert 0.18 < sum(picks) / len(picks) < 0.22
    assert not any(policy.in_sample(i, 0) for i in range(100))
    assert all(policy.in_sample(i, 100) for i in range(100))


# --- allowlist ---------------------------------------------------------------------------


def test_the_allowlist_refuses_personal_attributes_by_name(version):
    from generation import services

    services.customer_source_save(
        slug="cdp",
        mapping={"columns": {"ID": "external_id", "LOYALTY_NO": {"attribute": "loyalty_no",
                                                                   "personal": True}}},
    )  # fmt: skip
    with pytest.raises(messages.MessageError, match="email, loyalty_no are personal"):
        messages.prompt_allowlist_save(
            prompt=version.prompt, attributes=["value_tier", "email", "loyalty_no"]
        )
    prompt = messages.prompt_allowlist_save(prompt=version.prompt, attributes=[" value_tier "])
    assert prompt.allowed_attributes == ["value_tier"]


def test_an_attribute_a_source_marks_personal_never_reaches_the_prompt(version):
    from generation import services

    services.customer_source_save(
        slug="cdp",
        mapping={"columns": {"ID": "external_id", "LOYALTY_NO": {"attribute": "loyalty_no",
                                                                   "personal": True}}},
    )  # fmt: skip
    customer = CustomerFactory(
        external_id="EXT-123456", attributes={"loyalty_no": "LN-99881", "value_tier": "high"}
    )
    rendered = prompting.render(
        version=version,
        prompt=version.prompt,
        brand=version.prompt.brand,
        product=ProductFactory(),
        customer=customer,
        purpose="restock",
    )
    sent = json.dumps(rendered.messages)
    assert "value_tier" in sent and "restock" in sent
    assert "LN-99881" not in sent and "EXT-123456" not in sent


# --- callbacks ---------------------------------------------------------------------------


@pytest.fixture
def receiver(callback_receiver):
    return callback_receiver


def test_a_callback_posts_the_message_with_its_text_once_published(version, receiver):
    variant = _message(
        version, CustomerFactory(external_id="C9"), status="published", callback_url=receiver.url
    )
    assert callbacks.message_callback_send(variant_id=variant.pk) == 204
    [posted] = receiver.received
    assert posted["event"] == "message.published"
    assert posted["message"]["text"] == variant.text and posted["message"]["customer"] == "C9"


def test_a_rejected_message_is_told_without_its_text(version, receiver):
    variant = _message(version, CustomerFactory(), status="rejected", callback_url=receiver.url)
    callbacks.message_callback_send(variant_id=variant.pk)
    assert receiver.received[0]["message"]["text"] is None


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_callback_the_server_fails_is_retried(version, receiver, status):
    receiver.status = status
    variant = _message(version, CustomerFactory(), status="published", callback_url=receiver.url)
    with pytest.raises(callbacks.CallbackFailed, match=f"HTTP {status}"):
        callbacks.message_callback_send(variant_id=variant.pk)


def test_a_callback_follows_no_redirect_and_refusals_are_not_retried(version, receiver):
    receiver.status = 302
    variant = _message(version, CustomerFactory(), status="published", callback_url=receiver.url)
    assert callbacks.message_callback_send(variant_id=variant.pk) == 302
    assert len(receiver.received) == 1
    receiver.status = 410
    assert callbacks.message_callback_send(variant_id=variant.pk) == 410


def test_an_unreachable_callback_is_a_failure_to_retry(version):
    variant = _message(
        version, CustomerFactory(), status="published", callback_url="http://127.0.0.1:9/x"
    )
    with pytest.raises(callbacks.CallbackFailed):
        callbacks.message_callback_send(variant_id=variant.pk)


def test_approving_a_message_with_a_callback_queues_the_notification(
    version, django_capture_on_commit_callbacks, monkeypatch
):
    from generation import tasks
    from review.services import variant_approve

    sent = []
    monkeypatch.setattr(tasks.message_callback, "delay", lambda *args: sent.append(args))
    variant = _message(version, CustomerFactory(), callback_url="http://example.com/hook")
    with django_capture_on_commit_callbacks(execute=True):
        variant_approve(variant=variant, user=None)
    assert sent == [(variant.pk, "published")]


# --- API ---------------------------------------------------------------------------------


def _request(version, **extra):
    product, customer = ProductFactory(sku="SKU-1"), CustomerFactory(external_id="C-1")
    return {
        "prompt": version.prompt.slug,
        "product": product.sku,
        "customer": customer.external_id,
        "purpose": "back in stock",
        **extra,
    }


def test_a_write_token_asks_for_a_message_and_gets_202_with_its_url(version):
    journey_tool = as_("write")
    response = journey_tool.post(f"{API}/messages/", _request(version), format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["text"], body["purpose"]) == ("queued", None, "back in stock")
    assert response["Location"].endswith(f"/api/v1/messages/{body['id']}/")
    got = journey_tool.get(f"{API}/messages/{body['id']}/")
    assert got.status_code == 200 and got.json()["id"] == body["id"]


def test_a_token_reads_only_the_messages_it_asked_for(version):
    """Issue 15: any write token read any message, whoever asked for it."""
    mine = as_("write").post(f"{API}/messages/", _request(version), format="json").json()
    other_token = as_("write")

    refused = other_token.get(f"{API}/messages/{mine['id']}/")
    lead = as_("lead").get(f"{API}/messages/{mine['id']}/")

    assert refused.status_code == 404 and f"No message {mine['id']}" in refused.json()["detail"]
    assert lead.status_code == 200  # people (leads) read every message


@pytest.mark.parametrize(("role", "expected"), [("read", 403), ("copywriter", 403), ("lead", 202)])
def test_who_may_ask_for_messages(version, role, expected):
    response = as_(role).post(f"{API}/messages/", _request(version), format="json")
    assert response.status_code == expected


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("customer", "ghost", "Unknown customer 'ghost'"),
        ("product", "NOPE", "Unknown product 'NOPE'"),
        ("prompt", "nope", "Unknown prompt 'nope'"),
        ("wait", 31, "less than or equal to 30"),
        ("callback_url", "not a url", "valid URL"),
    ],
)
def test_a_bad_message_request_names_the_field(version, field, value, message):
    response = as_("write").post(
        f"{API}/messages/", _request(version, **{field: value}), format="json"
    )
    assert response.status_code == 400
    assert message in str(response.json()[field])


def test_a_message_run_over_a_segment_writes_one_per_member(
    version, django_capture_on_commit_callbacks
):
    for tier in ["high", "high", "low"]:
        CustomerFactory(attributes={"value_tier": tier})
    SegmentFactory(slug="vip", rules={"value_tier": "high"})
    ProductFactory(sku="SKU-9")
    body = {
        "prompt": version.prompt.slug,
        "product": "SKU-9",
        "purpose": "vip night",
        "segment": "vip",
    }
    with django_capture_on_commit_callbacks() as started:
        response = as_("write").post(f"{API}/messages/runs/", body, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["total"] == 2 and len(started) == 1
    assert Variant.objects.filter(purpose="vip night", customer__isnull=False).count() == 2
    again = as_("write").post(f"{API}/messages/runs/", body, format="json")
    assert again.json()["total"] == 0


def test_a_message_run_names_unknown_customers(version):
    ProductFactory(sku="SKU-9")
    CustomerFactory(external_id="C1")
    response = as_("write").post(
        f"{API}/messages/runs/",
        {"prompt": version.prompt.slug, "product": "SKU-9", "purpose": "x",
         "customers": ["C1", "C2"]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json() == {"customers": ["Unknown customer 'C2'"]}


def test_erasing_a_customer_over_the_api(version):
    customer = CustomerFactory(external_id="ERASE-ME")
    _message(version, customer)
    assert as_("read").delete(f"{API}/customers/ERASE-ME/").status_code == 403
    response = as_("write").delete(f"{API}/customers/ERASE-ME/")
    assert response.status_code == 200 and response.json() == {"customer": 1, "variants": 1}
    assert as_("write").delete(f"{API}/customers/ERASE-ME/").status_code == 404


def test_prompt_settings_read_by_reviewers_changed_by_leads(version):
    url = f"{API}/prompts/{version.prompt.slug}/settings/"
    assert as_("copywriter").get(url).json()["review_policy"] == "review_all"
    assert as_("copywriter").patch(url, {"review_policy": "auto"}, format="json").status_code == 403
    response = as_("lead").patch(
        url, {"review_policy": "sample", "review_sample_percent": 25,
              "allowed_attributes": ["value_tier"]}, format="json",
    )  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json() | {"policy_counts": None} == {
        "slug": version.prompt.slug, "review_policy": "sample", "review_sample_percent": 25,
        "policy_counts": None, "allowed_attributes": ["value_tier"],
        "languages": [], "language_min_share": 10,
    }  # fmt: skip
    refused = as_("lead").patch(url, {"allowed_attributes": ["email"]}, format="json")
    assert refused.status_code == 400 and "personal" in str(refused.json())


def test_a_lead_sets_the_languages_a_prompt_writes_in(version):
    url = f"{API}/prompts/{version.prompt.slug}/settings/"
    assert as_("copywriter").patch(url, {"languages": ["de"]}, format="json").status_code == 403

    response = as_("lead").patch(
        url, {"languages": ["de_CH", "de", "DE"], "language_min_share": 20}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["languages"], response.json()["language_min_share"]) == (
        ["de-ch", "de"],
        20,
    )
    refused = as_("lead").patch(url, {"languages": ["en", "klingon"]}, format="json")
    assert refused.status_code == 400 and "'klingon' is not a language tag" in str(refused.json())
    version.prompt.refresh_from_db()
    assert version.prompt.languages == ["de-ch", "de"]  # a refused list changes nothing


# --- found in review ---------------------------------------------------------------------


def test_messages_for_two_purposes_stay_live_side_by_side(version):
    from review.services import variant_approve

    customer = CustomerFactory()
    first = _message(version, customer)
    second = VariantFactory(
        prompt_version=version, product=first.product, segment=None, customer=customer,
        purpose="birthday",
    )  # fmt: skip
    variant_approve(variant=first, user=None)
    variant_approve(variant=second, user=None)
    assert set(Variant.objects.filter(customer=customer).values_list("purpose", "status")) == {
        ("restock", "published"),
        ("birthday", "published"),
    }
    # A new message for the same purpose replaces the old one.
    newer = VariantFactory(
        prompt_version=PromptVersionFactory(prompt=version.prompt, number=2),
        product=first.product, segment=None, customer=customer, purpose="restock",
    )  # fmt: skip
    variant_approve(variant=newer, user=None)
    first.refresh_from_db()
    assert first.status == "retired"


def test_the_policy_holds_a_regenerated_variant_for_people(version):
    Prompt.objects.filter(pk=version.prompt_id).update(review_policy="auto")
    variant = _message(version, CustomerFactory(), regeneration_note="Shorter, please")
    assert policy.policy_apply([variant.pk])["held"] == 1
    variant.refresh_from_db()
    assert variant.status == "in_review"


def test_the_policy_holds_a_variant_whose_inputs_showed_weak_signs_of_instructions(version):
    """Issue 15: a paraphrased or homoglyph injection once went live under `auto`."""
    Prompt.objects.filter(pk=version.prompt_id).update(review_policy="auto")
    held = _message(version, CustomerFactory(), checks=[
        {"name": "input_injection", "passed": True, "message": "Weak signs", "hold": True}
    ])  # fmt: skip
    clean = _message(version, CustomerFactory(), checks=[
        {"name": "input_injection", "passed": True, "message": "No instruction-like text"}
    ])  # fmt: skip

    assert policy.policy_apply([held.pk, clean.pk]) == {"auto": 1, "sampled": 0, "held": 1}
    held.refresh_from_db()
    assert held.status == "in_review" and held.policy_outcome == "held"


def test_history_comes_from_the_prompts_own_brand_only(version):
    from django.utils import timezone

    customer = CustomerFactory()
    _message(version, customer, status="published", text="ours", published=timezone.now())
    other = PromptVersionFactory(prompt__brand__name="Another brand")
    VariantFactory(
        prompt_version=other, segment=None, customer=customer, purpose="x",
        status="published", text="theirs", published=timezone.now(),
    )  # fmt: skip
    assert prompting.previous_messages(customer, brand=version.prompt.brand) == ["ours"]


def test_callbacks_to_private_addresses_are_refused_unless_allowed(version, settings, receiver):
    settings.MESSAGE_CALLBACK_ALLOW_PRIVATE = False
    with pytest.raises(callbacks.CallbackRefused, match="not a public address"):
        callbacks.callback_url_check(receiver.url)
    settings.MESSAGE_CALLBACK_ALLOW_HTTP = False
    with pytest.raises(callbacks.CallbackRefused, match="https URLs only"):
        callbacks.callback_url_check("http://example.com/hook")
    with pytest.raises(messages.MessageError, match=r"not a public address|https URLs only"):
        messages.message_create(
            prompt=version.prompt, product=ProductFactory(), customer=CustomerFactory(),
            purpose="x", callback_url="https://127.0.0.1/hook",
        )  # fmt: skip
    variant = _message(version, CustomerFactory(), status="published", callback_url=receiver.url)
    assert callbacks.message_callback_send(variant_id=variant.pk) is None
    assert receiver.received == []


def test_a_callback_is_signed_with_the_shared_secret(version, settings, receiver):
    import hashlib
    import hmac

    settings.MESSAGE_CALLBACK_SECRET = "s3cret"
    variant = _message(version, CustomerFactory(), status="published", callback_url=receiver.url)

    assert callbacks.message_callback_send(variant_id=variant.pk) == 204

    body = json.dumps(receiver.received[0]).encode()
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert receiver.headers[0]["X-Hyperpers-Signature"] == f"sha256={expected}"


def test_a_callback_connects_to_the_address_it_checked_not_a_second_lookup(
    version, receiver, monkeypatch
):
    """DNS rebinding: the name resolves to the checked address once, then elsewhere.
    The POST still reaches the checked address, with the URL's own Host header, and the
    URL's userinfo as basic auth."""
    import socket

    real = socket.getaddrinfo
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        if host == "hooks.example":
            lookups.append(host)
            address = "127.0.0.1" if len(lookups) == 1 else "10.255.255.1"
            return real(address, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = receiver.server_port
    url = f"http://user:pa%40ss@hooks.example:{port}/hook"
    variant = _message(version, CustomerFactory(), status="published", callback_url=url)

    assert callbacks.message_callback_send(variant_id=variant.pk) == 204

    assert lookups == ["hooks.example"]
    assert receiver.headers[0]["Host"] == f"hooks.example:{port}"
    expected = base64.b64encode(b"user:pa@ss").decode()
    assert receiver.headers[0]["Authorization"] == f"Basic {expected}"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", False),  # NAT64 even of a public one: a gateway's business
        ("64:ff9b:1::a00:1", False),  # local-use NAT64
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("::a00:1", False),  # IPv4-compatible
        ("fec0::1", False),  # site-local
        ("fe80::1", False),
        ("::1", False),
    ],
)
def test_ipv6_forms_that_embed_an_ipv4_address_are_not_public(address, public):
    assert callbacks.address_public(address) is public


def test_the_callback_guards_are_on_even_with_debug_unless_a_setting_says_otherwise():
    """Settings read fresh in a subprocess: DEBUG=true alone opens neither guard."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MESSAGE_CALLBACK_ALLOW")} | {
        "DEBUG": "true",
        "DJANGO_SETTINGS_MODULE": "hyperpers.settings",
    }
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.MESSAGE_CALLBACK_ALLOW_HTTP, s.MESSAGE_CALLBACK_ALLOW_PRIVATE)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_credentials_in_a_url_never_reach_a_log_line(caplog):
    import logging

    from hyperpers.logs import ContextFilter

    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "callback to %s failed", ("https://u:secret@h/x",), None
    )
    ContextFilter().filter(record)

    assert record.getMessage() == "callback to https://***@h/x failed"


def test_a_customer_whose_id_has_a_slash_can_be_erased():
    CustomerFactory(external_id="crm/4711")
    response = as_("write").delete(f"{API}/customers/crm/4711/")
    assert response.status_code == 200, response.content
