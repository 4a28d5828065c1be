"""The delivery API: live copy for segments and customers, tokens, caching, engagement."""

import hashlib

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from generation.models import Variant
from review.auth import api_token_create
from review.delivery import Exposure, in_holdout
from review.models import ApiToken, EngagementEvent
from tests.factories import (
    CustomerFactory,
    ProductFactory,
    PromptFactory,
    PromptVersionFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

LIVE = "/api/v1/live/"
BATCH = "/api/v1/live/batch/"
EVENTS = "/api/v1/events/"


def _client(kind: str = "read", **token_fields) -> APIClient:
    _token, key = api_token_create(name=f"{kind} client", kind=kind, **token_fields)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def reader():
    return _client("read")


@pytest.fixture
def writer():
    return _client("write")


def _params(of, **overrides):
    return {
        "prompt": of.prompt.slug,
        "product": of.product.sku,
        "segment": of.segment.slug,
        **overrides,
    }


@pytest.fixture
def version():
    return PromptVersionFactory(prompt=PromptFactory(slug="pdp", holdout_percent=0))


# ---------------------------------------------------------------- who may read


def test_live_copy_needs_credentials():
    variant = VariantFactory()
    response = APIClient().get(LIVE, _params(variant))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_unknown_token_is_refused_by_name(reader):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer hp_r_not-a-real-key")
    response = client.get(LIVE, _params(VariantFactory()))
    assert response.status_code == 401
    assert response.json() == {"detail": "Unknown API token."}


def test_a_revoked_token_is_refused():
    token, key = api_token_create(name="old shop", kind="read")
    ApiToken.objects.filter(pk=token.pk).update(revoked="2026-01-01T00:00Z")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.get(LIVE, _params(VariantFactory()))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_a_write_token_cannot_read_live_copy(writer):
    response = writer.get(LIVE, _params(VariantFactory()))
    assert response.status_code == 403
    assert "read token" in response.json()["detail"]


@pytest.mark.parametrize("groups", [["copywriter"], ["marketing lead"]])
def test_people_signed_in_can_preview_live_copy(client, groups):
    client.force_login(UserFactory(groups=groups))
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    assert client.get(LIVE, _params(variant)).json()["variant_id"] == variant.pk


def test_a_token_over_its_rate_limit_gets_429_with_retry_after():
    client = _client("read", rate_per_minute=2)
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    codes = [client.get(LIVE, _params(variant)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    response = client.get(LIVE, _params(variant))
    assert 1 <= int(response["Retry-After"]) <= 60
    # Another token has a budget of its own.
    assert _client("read").get(LIVE, _params(variant)).status_code == 200


def test_only_a_hash_of_the_key_is_stored():
    token, key = api_token_create(name="shop", kind="read")
    token.refresh_from_db()
    assert key.startswith("hp_r_") and len(key) > 40
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {token.prefix, token.key_hash, token.name}
    assert key.startswith(token.prefix)


def test_the_admin_shows_a_new_key_once(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = client.post(
        "/admin/review/apitoken/add/",
        {"name": "web shop", "kind": "read", "rate_per_minute": 600},
        follow=True,
    )
    token = ApiToken.objects.get(name="web shop")
    shown = [str(m) for m in response.context["messages"] if "not be shown again" in str(m)]
    assert len(shown) == 1
    key = shown[0].split(" is ")[1].split(" ")[0]
    assert hashlib.sha256(key.encode()).hexdigest() == token.key_hash
    # The change page never shows it again.
    page = client.get(f"/admin/review/apitoken/{token.pk}/change/").content.decode()
    assert key not in page


def test_the_command_prints_a_working_key(capsys):
    call_command("create_api_token", "journey tool", "--kind", "write", "--rate", "100")
    key = capsys.readouterr().out.strip()
    token = ApiToken.objects.get(name="journey tool")
    assert (token.kind, token.rate_per_minute) == ("write", 100)
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()


# ---------------------------------------------------------------- live copy for a segment


def test_the_published_variant_is_served_with_what_attributes_it(reader):
    live = VariantFactory(status=Variant.Status.PUBLISHED, text="Live copy")
    response = reader.get(LIVE, _params(live))
    assert response.status_code == 200
    body = response.json()
    exposure = body.pop("exposure_id")
    assert body == {
        "prompt": live.prompt.slug,
        "product": live.product.sku,
        "segment": live.segment.slug,
        "customer": None,
        "variant_id": live.pk,
        "prompt_version": live.prompt_version.number,
        "source": "segment",
        "fallback": False,
        "fallback_reason": None,
        "language": "en",
        "language_reason": "default",
        "experiment": None,
        "arm": None,
        "text": "Live copy",
    }
    assert Exposure.decode(exposure) == Exposure(
        live.prompt_id, live.product_id, live.segment_id, None, live.pk, "en"
    )


def test_without_a_published_variant_the_base_copy_is_the_fallback_and_says_so(reader):
    in_review = VariantFactory(status=Variant.Status.IN_REVIEW)
    body = reader.get(LIVE, _params(in_review)).json()
    assert body["fallback"] is True and body["source"] == "base_copy"
    assert body["fallback_reason"] == "no_live_variant"
    assert body["variant_id"] is None and body["prompt_version"] is None
    assert body["text"] == in_review.product.description
    assert Exposure.decode(body["exposure_id"]).variant_id is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prompt", "nope", "Unknown prompt 'nope'"),
        ("product", "NOPE-1", "Unknown product 'NOPE-1'"),
        ("segment", "nope", "Unknown segment 'nope'"),
    ],
)
def test_unknown_names_get_404_naming_which(reader, field, value, message):
    variant = VariantFactory()
    response = reader.get(LIVE, _params(variant, **{field: value}))
    assert response.status_code == 404
    assert response.json() == {"detail": message}


def test_a_missing_parameter_gets_400_naming_it(reader):
    variant = VariantFactory()
    params = _params(variant)
    del params["product"]
    response = reader.get(LIVE, params)
    assert response.status_code == 400
    assert list(response.json()) == ["product"]


def test_segment_and_customer_together_are_refused(reader):
    variant = VariantFactory()
    response = reader.get(LIVE, _params(variant, customer="C1"))
    assert response.status_code == 400
    assert "either a segment or a customer" in response.json()["segment"][0]


def test_a_response_can_be_revalidated_with_its_etag(reader):
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    first = reader.get(LIVE, _params(live))
    assert first["Cache-Control"] == "public, max-age=60"
    again = reader.get(LIVE, _params(live), HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again["ETag"] == first["ETag"]

    # A new live variant changes the ETag: the cached copy is stale.
    Variant.objects.filter(pk=live.pk).update(status=Variant.Status.RETIRED)
    VariantFactory(
        status=Variant.Status.PUBLISHED,
        prompt_version=PromptVersionFactory(prompt=live.prompt),
        product=live.product,
        segment=live.segment,
        text="Newer copy",
    )
    fresh = reader.get(LIVE, _params(live), HTTP_IF_NONE_MATCH=first["ETag"])
    assert fresh.status_code == 200 and fresh.json()["text"] == "Newer copy"
    assert fresh["ETag"] != first["ETag"]


# ---------------------------------------------------------------- pinning


def test_a_pinned_variant_is_served_even_after_it_was_replaced(reader):
    old = VariantFactory(status=Variant.Status.RETIRED, text="What the e-mail said")
    VariantFactory(
        status=Variant.Status.PUBLISHED,
        prompt_version=PromptVersionFactory(prompt=old.prompt),
        product=old.product,
        segment=old.segment,
    )
    body = reader.get(LIVE, _params(old, variant=old.pk)).json()
    assert (body["variant_id"], body["source"], body["text"]) == (
        old.pk,
        "pinned",
        "What the e-mail said",
    )


@pytest.mark.parametrize("status", [Variant.Status.IN_REVIEW, Variant.Status.REJECTED])
def test_copy_that_was_never_live_cannot_be_pinned(reader, status):
    variant = VariantFactory(status=status)
    response = reader.get(LIVE, _params(variant, variant=variant.pk))
    assert response.status_code == 404
    assert "was never live" in response.json()["detail"]


def test_a_pin_must_be_copy_of_the_product_asked_for(reader):
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    other = ProductFactory()
    response = reader.get(LIVE, _params(variant, product=other.sku, variant=variant.pk))
    assert response.status_code == 404
    assert f"for product '{other.sku}'" in response.json()["detail"]


def test_a_read_token_cannot_pin_another_customers_message(reader):
    """Issue 15: live/?customer=C1&variant=<C2's message> pinned C2's message, and with
    segment= the answer went out Cache-Control: public."""
    from tests.factories import CustomerFactory

    theirs = VariantFactory(
        status=Variant.Status.PUBLISHED, segment=None, customer=CustomerFactory(), purpose="x",
        text="Private to them",
    )  # fmt: skip
    someone = CustomerFactory()
    segment = SegmentFactory()
    asked = {"prompt": theirs.prompt.slug, "product": theirs.product.sku, "variant": theirs.pk}

    as_other = reader.get(LIVE, {**asked, "customer": someone.external_id})
    as_segment = reader.get(LIVE, {**asked, "segment": segment.slug})
    as_them = reader.get(LIVE, {**asked, "customer": theirs.customer.external_id})

    for response in (as_other, as_segment):
        assert response.status_code == 404
        assert "Private to them" not in response.content.decode()
        assert f"Variant {theirs.pk} is not copy of prompt" in response.json()["detail"]
    assert as_them.status_code == 200 and as_them.json()["text"] == "Private to them"
    assert as_them["Cache-Control"].startswith("private")


def test_a_segment_variant_is_pinned_only_for_its_own_segment(reader):
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    other = SegmentFactory()

    response = reader.get(LIVE, _params(variant, segment=other.slug, variant=variant.pk))

    assert response.status_code == 404
    assert f"segment '{other.slug}'" in response.json()["detail"]


# ---------------------------------------------------------------- live copy for a customer


def _customer_setup(version):
    broad = SegmentFactory(slug="high-value", rules={"value_tier": "high"})
    narrow = SegmentFactory(
        slug="high-value-running",
        rules={"value_tier": "high", "preferred_subcategory": "Running Shoes"},
    )
    product = ProductFactory()
    for segment, text in ((broad, "For high value"), (narrow, "For high-value runners")):
        VariantFactory(
            prompt_version=version,
            product=product,
            segment=segment,
            status=Variant.Status.PUBLISHED,
            text=text,
        )
    return product, broad, narrow


def test_a_customer_gets_the_variant_of_their_most_specific_segment(reader, version):
    product, _broad, narrow = _customer_setup(version)
    customer = CustomerFactory()
    body = reader.get(
        LIVE, {"prompt": "pdp", "product": product.sku, "customer": customer.external_id}
    ).json()
    assert (body["segment"], body["text"], body["customer"]) == (
        narrow.slug,
        "For high-value runners",
        customer.external_id,
    )
    exposure = Exposure.decode(body["exposure_id"])
    assert (exposure.segment_id, exposure.customer_id) == (narrow.pk, customer.pk)


def test_a_customers_own_variant_wins_over_their_segments(reader, version):
    product, _broad, _narrow = _customer_setup(version)
    customer = CustomerFactory()
    own = VariantFactory(
        prompt_version=version,
        product=product,
        segment=None,
        customer=customer,
        status=Variant.Status.PUBLISHED,
        text="Just for you",
    )
    response = reader.get(
        LIVE, {"prompt": "pdp", "product": product.sku, "customer": customer.external_id}
    )
    body = response.json()
    assert (body["variant_id"], body["source"], body["text"]) == (
        own.pk,
        "customer",
        "Just for you",
    )
    assert response["Cache-Control"] == "private, max-age=60"


def test_a_customer_in_no_segment_gets_the_base_copy_and_why(reader, version):
    product, _broad, _narrow = _customer_setup(version)
    customer = CustomerFactory(attributes={"value_tier": "low"})
    body = reader.get(
        LIVE, {"prompt": "pdp", "product": product.sku, "customer": customer.external_id}
    ).json()
    assert (body["segment"], body["fallback"], body["fallback_reason"]) == (
        None,
        True,
        "no_matching_segment",
    )


def test_an_unknown_customer_gets_404(reader, version):
    product = ProductFactory()
    response = reader.get(LIVE, {"prompt": "pdp", "product": product.sku, "customer": "ghost"})
    assert response.status_code == 404
    assert response.json() == {"detail": "Unknown customer 'ghost'"}


def test_the_holdout_is_stable_and_about_the_share_asked_for(version):
    prompt = version.prompt
    prompt.holdout_percent = 10
    customers = [CustomerFactory.build(external_id=f"K{i}") for i in range(4000)]
    held = [c for c in customers if in_holdout(prompt, c)]
    assert 0.08 < len(held) / len(customers) < 0.12
    assert held == [c for c in customers if in_holdout(prompt, c)]


def test_customers_in_the_holdout_see_the_base_copy_as_control(reader, version):
    product, _broad, _narrow = _customer_setup(version)
    prompt = version.prompt
    prompt.holdout_percent = 50
    prompt.save(update_fields=["holdout_percent"])
    customers = [CustomerFactory() for _ in range(12)]
    held = [c for c in customers if in_holdout(prompt, c)]
    assert 0 < len(held) < len(customers)
    for customer in customers:
        body = reader.get(
            LIVE, {"prompt": "pdp", "product": product.sku, "customer": customer.external_id}
        ).json()
        if customer in held:
            assert (body["fallback"], body["fallback_reason"]) == (True, "holdout")
            assert body["text"] == product.description
        else:
            assert body["fallback"] is False


# ---------------------------------------------------------------- batch


def test_a_listing_page_gets_many_products_in_one_call_in_order(
    reader, version, django_assert_max_num_queries
):
    segment = SegmentFactory()
    products = [ProductFactory() for _ in range(30)]
    for product in products[::2]:
        VariantFactory(
            prompt_version=version,
            product=product,
            segment=segment,
            status=Variant.Status.PUBLISHED,
        )
    skus = [p.sku for p in reversed(products)]
    # Queries do not grow with the products asked for: the token (and, at most once a
    # minute, its last use), the prompts, the segments, the products counted, their
    # variants and their running experiments.
    with django_assert_max_num_queries(7):
        response = reader.get(
            BATCH, {"prompt": "pdp", "segment": segment.slug, "products": ",".join(skus)}
        )
    results = response.json()["results"]
    assert [r["product"] for r in results] == skus
    assert sum(not r["fallback"] for r in results) == 15
    assert len({r["exposure_id"] for r in results}) == 30


def test_a_batch_naming_unknown_products_names_them(reader, version):
    segment = SegmentFactory()
    known = ProductFactory()
    response = reader.get(
        BATCH, {"prompt": "pdp", "segment": segment.slug, "products": f"{known.sku},X-1,X-2"}
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "Unknown product 'X-1', 'X-2'"}


def test_a_batch_too_large_is_refused(reader, version, settings):
    settings.DELIVERY_BATCH_MAX = 3
    segment = SegmentFactory()
    response = reader.get(BATCH, {"prompt": "pdp", "segment": segment.slug, "products": "a,b,c,d"})
    assert response.status_code == 400
    assert "At most 3 products" in response.json()["products"][0]


# ---------------------------------------------------------------- engagement


def _exposure(reader, variant) -> str:
    return reader.get(LIVE, _params(variant)).json()["exposure_id"]


def test_an_event_is_recorded_once_however_often_it_is_sent(reader, writer):
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    event = {"event_id": "ev-1", "type": "click", "exposure_id": _exposure(reader, live)}
    first = writer.post(EVENTS, event, format="json")
    assert first.status_code == 200
    assert first.json() == {"received": 1, "recorded": 1, "duplicates": 0}
    again = writer.post(EVENTS, {"events": [event, event]}, format="json")
    assert again.json() == {"received": 2, "recorded": 0, "duplicates": 2}
    stored = EngagementEvent.objects.get()
    assert (stored.variant_id, stored.segment_id, stored.kind) == (
        live.pk,
        live.segment_id,
        "click",
    )


def test_two_integrations_with_overlapping_event_ids_both_count(reader, writer):
    """Issue 15: event ids were unique across every token, so a second integration's
    "ev-1" was dropped as a duplicate of the first's. They are unique per token."""
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    event = {"event_id": "ev-1", "type": "click", "exposure_id": _exposure(reader, live)}
    journey_tool = _client("write")

    first = writer.post(EVENTS, event, format="json").json()
    second = journey_tool.post(EVENTS, event, format="json").json()
    again = journey_tool.post(EVENTS, event, format="json").json()

    assert first["recorded"] == 1 and second["recorded"] == 1
    assert again == {"received": 1, "recorded": 0, "duplicates": 1}
    assert EngagementEvent.objects.filter(event_id="ev-1").count() == 2


def test_events_on_the_base_copy_are_the_control(reader, writer):
    in_review = VariantFactory()
    exposure = _exposure(reader, in_review)
    events = [
        {"event_id": f"imp-{i}", "type": "impression", "exposure_id": exposure} for i in range(3)
    ]
    events.append(
        {"event_id": "buy", "type": "conversion", "exposure_id": exposure, "value": "49.90"}
    )
    assert writer.post(EVENTS, events, format="json").json()["recorded"] == 4
    assert set(EngagementEvent.objects.values_list("variant_id", flat=True)) == {None}
    assert str(EngagementEvent.objects.get(kind="conversion").value) == "49.90"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"type": "clik"}, "events[1].type", "not a valid choice"),
        ({"exposure_id": "e1.1.1.0.0.1:forged"}, "events[1].exposure_id", "not an exposure id"),
        ({"event_id": ""}, "events[1].event_id", "may not be blank"),
        ({"value": "3.00"}, "events[1].value", "Only a conversion has a value"),
        ({"occurred": "2999-01-01T00:00:00Z"}, "events[1].occurred", "in the future"),
        ({"occurred": "yesterday"}, "events[1].occurred", "wrong format"),
    ],
)
def test_a_bad_event_gets_400_naming_it_and_nothing_of_the_batch_is_kept(
    reader, writer, change, field, message
):
    exposure = _exposure(reader, VariantFactory(status=Variant.Status.PUBLISHED))
    good = {"event_id": "ok", "type": "impression", "exposure_id": exposure}
    bad = {**good, "event_id": "bad", "type": "click", **change}
    response = writer.post(EVENTS, {"events": [good, bad]}, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field], errors
    assert message in errors[field][0]
    assert not EngagementEvent.objects.exists()


def test_an_event_on_copy_that_was_deleted_is_refused(reader, writer):
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    exposure = _exposure(reader, variant)
    variant.delete()
    response = writer.post(
        EVENTS, {"event_id": "late", "type": "click", "exposure_id": exposure}, format="json"
    )
    assert response.status_code == 400
    assert "variant it names no longer exists" in response.json()["events[0].exposure_id"][0]


def test_an_empty_or_oversized_batch_is_refused(writer, settings):
    assert "events" in writer.post(EVENTS, [], format="json").json()
    settings.ENGAGEMENT_BATCH_MAX = 2
    events = [{"event_id": str(i), "type": "click", "exposure_id": "x"} for i in range(3)]
    response = writer.post(EVENTS, events, format="json")
    assert response.status_code == 400
    assert "At most 2 events" in str(response.json())


def test_only_write_tokens_post_events(reader, client):
    assert reader.post(EVENTS, [], format="json").status_code == 403
    client.force_login(UserFactory(is_staff=True))
    assert client.post(EVENTS, [], content_type="application/json").status_code == 403
    assert APIClient().post(EVENTS, [], format="json").status_code == 401


# ---------------------------------------------------------------- the schema and its pages


def test_the_openapi_schema_validates():
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


@pytest.mark.parametrize("page", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_the_api_docs_are_served_from_our_own_static_files(client, page):
    html = client.get(page).content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    for cdn in ("cdn.", "unpkg", "jsdelivr", "googleapis"):
        assert cdn not in html
