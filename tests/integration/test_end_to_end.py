"""The whole path through real parts: files → database → Celery worker → offline
writer over HTTP → review view → delivery API."""

import random
import time

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from generation import services
from generation.models import Brand, Customer, GenerationRun, Product, Prompt, Variant
from tests.factories import ProductFactory, PromptVersionFactory, SegmentFactory, UserFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _wait_for(run: GenerationRun, timeout: float = 120) -> GenerationRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status not in (GenerationRun.Status.PENDING, GenerationRun.Status.RUNNING):
            return run
        time.sleep(0.25)
    pytest.fail(f"run {run.pk} did not finish in {timeout}s: {run.succeeded}+{run.failed}")


def test_a_real_worker_writes_every_slot_of_a_run_exactly_once(celery_worker_process):
    version = PromptVersionFactory()
    products = ProductFactory.create_batch(5)
    segments = SegmentFactory.create_batch(4)

    run = _wait_for(
        services.run_create(prompt=version.prompt, products=products, segments=segments)
    )

    assert (run.status, run.total, run.succeeded, run.failed) == ("finished", 20, 20, 0)
    variants = Variant.objects.filter(run=run)
    assert variants.count() == 20
    assert set(variants.values_list("status", flat=True)) == {Variant.Status.IN_REVIEW}
    assert run.prompt_tokens == sum(variants.values_list("prompt_tokens", flat=True)) > 0


def _generated_customers(n: int, subcategories: list[str]) -> None:
    rng = random.Random(7)
    Customer.objects.bulk_create(
        Customer(
            external_id=f"C{i:05d}",
            language=rng.choice(["en", "en", "de"]),
            attributes={
                "preferred_subcategory": rng.choice(subcategories),
                "value_tier": rng.choice(["low", "medium", "high"]),
                "region": rng.choice(["north", "south"]),
                "email": f"c{i}@example.com",
            },
        )
        for i in range(n)
    )


def test_luma_catalog_to_live_copy(celery_worker_process, luma_products, client, offline_writer):
    # 1. Import the real Magento export.
    result = services.products_import(path=luma_products)
    assert result.created == Product.objects.count() == 147
    hoodie = Product.objects.get(sku="MH01")
    assert "<" not in hoodie.description and hoodie.subcategory

    # 2. Segments from generated customers who prefer the hoodie's subcategory.
    _generated_customers(300, [hoodie.subcategory])
    segments = services.segments_build(by=["preferred_subcategory", "value_tier"])
    assert len(segments) == 3 and sum(s.member_count for s in segments) == 300

    # 3. Generate through the worker and the offline writer.
    brand = Brand.objects.create(name="Luma", voice="Plain and warm.", protected_terms=["Luma"])
    prompt = Prompt.objects.create(slug="product-page", name="Product page", brand=brand)
    services.prompt_version_create(
        prompt=prompt,
        template="Rewrite {product_name} for {segment_name} in {language}.",
        model="offline-writer-1",
    )
    run = _wait_for(services.run_create(prompt=prompt, products=[hoodie], segments=segments))
    # A third of the customers read German: each segment gets an English and a German slot.
    assert (run.succeeded, run.failed) == (6, 0)
    assert sorted(Variant.objects.filter(run=run).values_list("language", flat=True)) == [
        "de", "de", "de", "en", "en", "en",
    ]  # fmt: skip
    assert all("c1@example.com" not in str(r["body"]) for r in offline_writer.requests)

    # 4. A copywriter approves one through the review view, over HTMX.
    client.force_login(UserFactory(username="cw", groups=["copywriter"]))
    variant = Variant.objects.filter(run=run, language="en").first()
    response = client.post(
        reverse("review:approve", args=[variant.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200

    # 5. The delivery API serves it; another segment still gets the base copy.
    api = APIClient()
    token = Token.objects.create(user=UserFactory(username="shop"))
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    live = api.get(
        "/api/v1/live/",
        {"prompt": "product-page", "product": "MH01", "segment": variant.segment.slug},
    ).json()
    assert (live["fallback"], live["variant_id"], live["text"]) == (False, variant.pk, variant.text)
    other = next(s for s in segments if s != variant.segment)
    fallback = api.get(
        "/api/v1/live/", {"prompt": "product-page", "product": "MH01", "segment": other.slug}
    ).json()
    assert fallback["fallback"] is True and fallback["text"] == hoodie.description
