"""A copywriter finds a product by typing in the search box (the list swaps in place)
and opens its page: the base copy and what is live for each segment."""

import re

import pytest
from playwright.sync_api import expect

from generation.models import Product
from tests.factories import ProductFactory, SegmentFactory, UserFactory, VariantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_copywriter_searches_products_and_opens_one(page, live_server, log_in, screenshot):
    UserFactory(username="copywriter", groups=["copywriter"])
    Product.objects.bulk_create(
        [Product(sku=f"TEE-{i:03d}", name=f"Cotton Tee {i}", description="x") for i in range(60)]
    )
    product = ProductFactory(
        sku="RUN-7", name="AeroStride Runner", description="A light shoe for daily miles."
    )
    segment = SegmentFactory(name="Trail regulars")
    VariantFactory(
        product=product, segment=segment, status="published", text="Made for your trail miles."
    )

    log_in("copywriter")
    page.get_by_role("link", name="Products").click()
    expect(page.locator("#products tbody tr")).to_have_count(50)  # one page of 61
    expect(page.locator(".pager")).to_contain_text("Page 1")
    page.evaluate("window.__sameDocument = true")

    page.get_by_label("Search").press_sequentially("aerostride", delay=20)
    expect(page.locator("#products tbody tr")).to_have_count(1)
    expect(page.locator("#products")).to_contain_text("AeroStride Runner")
    assert page.evaluate("window.__sameDocument") is True  # swapped in place, no reload
    expect(page).to_have_url(re.compile(r"/review/products/\?q=aerostride$"))
    screenshot("01-searched")

    page.get_by_role("link", name="RUN-7").click()
    expect(page.get_by_role("heading", name="AeroStride Runner")).to_be_visible()
    expect(page.locator("#base-copy")).to_contain_text("A light shoe for daily miles.")
    live = page.locator("#live-now")
    expect(live).to_contain_text("Trail regulars")
    expect(live).to_contain_text("Made for your trail miles.")
    screenshot("02-product")
