"""Delivery negotiates the language: language=, Accept-Language, the customer's own,
then the prompt's default; every answer says which language it served and why."""

import pytest
from rest_framework.test import APIClient

from generation.models import Variant
from review import delivery, services
from review.auth import api_token_create
from review.delivery import Exposure
from review.models import EngagementEvent
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


@pytest.fixture
def reader() -> APIClient:
    _token, key = api_token_create(name="shop", kind="read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def shop():
    """A segment with English and German copy live; the product has French base copy."""
    version = PromptVersionFactory(prompt=PromptFactory(slug="pdp", holdout_percent=0))
    segment = SegmentFactory(
        slug="everyone", rules={"value_tier": "high"}, summary={"language": {"en": 0.5, "de": 0.5}}
    )
    product = ProductFactory(
        description="A warm hoodie.",
        translations={"fr": {"name": "Sweat", "description": "Un sweat chaud."}},
    )
    live = {}
    for language, text in (("en", "Warm copy"), ("de", "Warmer Text")):
        live[language] = VariantFactory(
            prompt_version=version,
            product=product,
            segment=segment,
            language=language,
            status=Variant.Status.PUBLISHED,
            text=text,
        )
    return version.prompt, product, segment, live


def _get(reader, prompt, product, segment, **extra):
    headers = {}
    if "accept_language" in extra:
        headers["HTTP_ACCEPT_LANGUAGE"] = extra.pop("accept_language")
    params = {"prompt": prompt.slug, "product": product.sku, "segment": segment.slug, **extra}
    return reader.get(LIVE, params, **headers)


def _said(body: dict) -> tuple:
    return body["text"], body["language"], body["language_reason"], body["fallback_reason"]


@pytest.mark.parametrize(
    ("asked", "said"),
    [
        ({}, ("Warm copy", "en", "default", None)),
        ({"language": "de"}, ("Warmer Text", "de", "exact", None)),
        ({"language": "de-CH"}, ("Warmer Text", "de", "base_language", None)),
        ({"accept_language": "de-AT, en;q=0.5"}, ("Warmer Text", "de", "base_language", None)),
        (
            {"language": "fr-CH"},
            ("Un sweat chaud.", "fr", "base_language", "no_variant_in_language"),
        ),
        ({"language": "it"}, ("Warm copy", "en", "no_variant_in_language", None)),
        ({"accept_language": "it, *;q=0.1"}, ("Warm copy", "en", "no_variant_in_language", None)),
    ],
)
def test_a_segment_request_is_served_in_the_language_asked_for(reader, shop, asked, said):
    prompt, product, segment, _live = shop

    response = _get(reader, prompt, product, segment, **asked)

    assert response.status_code == 200, response.content
    body = response.json()
    assert _said(body) == said
    assert Exposure.decode(body["exposure_id"]).language == said[1]
    assert "Accept-Language" in response["Vary"]


def test_a_language_with_no_variant_and_no_base_copy_falls_back_to_the_default_base_copy(
    reader, shop
):
    prompt, product, segment, live = shop
    for variant in live.values():
        variant.status = Variant.Status.RETIRED
        variant.save(update_fields=["status"])
    VariantFactory(
        prompt_version=live["de"].prompt_version,
        product=product,
        segment=segment,
        language="es",
        status=Variant.Status.PUBLISHED,
        text="Texto",
    )

    body = _get(reader, prompt, product, segment, language="it").json()

    assert _said(body) == (
        "A warm hoodie.",
        "en",
        "no_variant_in_language",
        "no_variant_in_language",
    )
    assert body["source"] == "base_copy" and body["variant_id"] is None
    nothing = _get(reader, prompt, ProductFactory(), segment).json()
    assert nothing["fallback_reason"] == "no_live_variant"  # none asked: nothing live yet
    english = _get(reader, prompt, ProductFactory(), segment, language="en-GB").json()
    assert _said(english)[1:] == ("en", "base_language", "no_live_variant")


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        ({"language": "klingon"}, "'klingon' is not a language tag"),
        ({"accept_language": "de;q=lots"}, "is not a list of language tags"),
        ({"accept_language": "xx-yy"}, "'xx-yy' is not a language tag"),
    ],
)
def test_a_malformed_language_gets_400_naming_it(reader, shop, asked, message):
    prompt, product, segment, _live = shop

    response = _get(reader, prompt, product, segment, **asked)

    assert response.status_code == 400
    assert message in str(response.json())


def test_a_customer_is_served_in_their_own_language(reader, shop):
    prompt, product, segment, _live = shop
    swiss = CustomerFactory(language="de-ch", attributes={"value_tier": "high"})
    english = CustomerFactory(language="en", attributes={"value_tier": "high"})

    asked = {"prompt": prompt.slug, "product": product.sku}
    german = reader.get(LIVE, {**asked, "customer": swiss.external_id}).json()
    default = reader.get(LIVE, {**asked, "customer": english.external_id}).json()
    overridden = reader.get(LIVE, {**asked, "customer": swiss.external_id, "language": "en"}).json()

    assert _said(german) == ("Warmer Text", "de", "base_language", None)
    assert german["segment"] == segment.slug
    assert _said(default)[:2] == ("Warm copy", "en")
    assert _said(overridden) == ("Warm copy", "en", "exact", None)


def test_the_batch_endpoint_negotiates_per_product(reader, shop):
    prompt, product, segment, _live = shop
    english_only = ProductFactory()
    VariantFactory(
        prompt_version=_live["en"].prompt_version,
        product=english_only,
        segment=segment,
        language="en",
        status=Variant.Status.PUBLISHED,
        text="Only English",
    )

    response = reader.get(
        BATCH,
        {
            "prompt": prompt.slug,
            "products": f"{product.sku},{english_only.sku}",
            "segment": segment.slug,
        },
        HTTP_ACCEPT_LANGUAGE="de",
    )

    results = response.json()["results"]
    assert [_said(r) for r in results] == [
        ("Warmer Text", "de", "exact", None),
        ("Only English", "en", "no_variant_in_language", None),
    ]


def test_approving_a_variant_retires_only_the_live_one_in_its_language(shop):
    prompt, product, segment, live = shop
    newer = VariantFactory(
        prompt_version=PromptVersionFactory(prompt=prompt),
        product=product,
        segment=segment,
        language="de",
        status=Variant.Status.IN_REVIEW,
        text="Neuer Text",
    )

    services.variant_approve(variant=newer, user=UserFactory())

    statuses = {
        v.language: v.status for v in Variant.objects.filter(pk__in=[v.pk for v in live.values()])
    }
    assert statuses == {"en": Variant.Status.PUBLISHED, "de": Variant.Status.RETIRED}


@pytest.mark.parametrize("asked", ["", "en", "de", "de-ch", "fr-ch", "it", "en-gb"])
def test_the_snapshot_and_the_database_give_the_same_answer_in_every_language(
    shop, asked, monkeypatch
):
    prompt, product, segment, _live = shop
    delivery.snapshot.clear()
    wanted = [asked] if asked else []

    cached = delivery.live_copy(
        prompt_slug=prompt.slug, skus=[product.sku], segment_slug=segment.slug, wanted=wanted
    )
    monkeypatch.setattr(delivery, "live_from_snapshot", lambda *args: None)
    read = delivery.live_copy(
        prompt_slug=prompt.slug, skus=[product.sku], segment_slug=segment.slug, wanted=wanted
    )

    assert [c.as_dict() for c in cached] == [r.as_dict() for r in read]
    held = delivery.snapshot.block(prompt.slug, segment.slug, asked)
    assert held is not None and held.slots is not None  # it came from the snapshot


def test_the_fast_path_answers_a_language_byte_for_byte_as_liveview(reader, shop):
    prompt, product, segment, _live = shop
    params = {"prompt": prompt.slug, "product": product.sku, "segment": segment.slug}

    fast = reader.get(LIVE, {**params, "language": "de-CH"})
    # An Accept-Language header sends the request to LiveView (DRF), which must agree;
    # language= wins over the header.
    view = reader.get(LIVE, {**params, "language": "de-CH"}, HTTP_ACCEPT_LANGUAGE="fr")

    assert fast.status_code == 200 and fast.json()["language"] == "de"
    assert fast.content == reader.get(LIVE, {**params, "language": "de-ch"}).content
    assert view.content == fast.content and view["ETag"] == fast["ETag"]


def test_engagement_keeps_the_language_the_copy_was_served_in(reader, shop):
    prompt, product, segment, _live = shop
    _token, key = api_token_create(name="journey tool", kind="write")
    writer = APIClient()
    writer.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    german = _get(reader, prompt, product, segment, language="de").json()

    response = writer.post(
        "/api/v1/events/",
        {"events": [{"event_id": "e-1", "type": "click", "exposure_id": german["exposure_id"]}]},
        format="json",
    )

    assert response.status_code in (200, 201, 202), response.content
    assert EngagementEvent.objects.get(event_id="e-1").language == "de"
