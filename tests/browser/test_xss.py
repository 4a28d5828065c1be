"""Markup in product and variant text is shown as text, never run."""

import json

import pytest
from playwright.sync_api import expect

from tests.factories import ProductFactory, UserFactory, VariantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT = "<script>window.__xss=1</script>"
IMG = '<img src=x onerror="window.__xss=1">'


def _expect_inert(page, region: str) -> None:
    """No element came out of the payloads, and none of them ran."""
    page.wait_for_load_state("networkidle")  # an <img src=x> would have failed by now
    assert page.locator(f"{region} img").count() == 0
    assert page.locator(f"{region} script").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_markup_in_product_and_variant_text_is_shown_as_text(page, live_server, log_in, screenshot):
    UserFactory(username="cw", groups=["copywriter"])
    product = ProductFactory(
        name=f"Runner {IMG}", description=f"Base copy {SCRIPT} and {IMG} for daily miles."
    )
    text = f"Variant copy {SCRIPT} with {IMG} for you."
    variant = VariantFactory(
        product=product,
        text=text,
        original_text=f"Model copy {IMG}",  # so the focus view shows the edit's diff too
        rationale=f"Because {SCRIPT}",
        checks=[{"name": "banned_phrases", "passed": False, "message": f"Says {IMG}"}],
        checks_failed=1,
    )
    log_in("cw")

    # The queue, as loaded.
    row = page.locator(f"#variant-{variant.pk}")
    expect(row.locator(".base .copy")).to_have_text(product.description)
    expect(row.locator(".generated .copy").first).to_have_text(text)
    expect(row.locator(".rationale")).to_contain_text(SCRIPT)
    expect(row.locator(".checks .fail")).to_contain_text(IMG)
    expect(row.locator("header a.open")).to_contain_text(IMG)
    _expect_inert(page, "#queue")
    screenshot("queue")

    # The queue again, swapped in by htmx (which runs scripts in what it swaps).
    page.evaluate("document.getElementById('queue').dataset.before = 'swap'")
    page.locator("nav.tabs a", has_text="In review").click()
    expect(page.locator("#queue:not([data-before])")).to_be_attached()
    expect(row.locator(".generated .copy").first).to_have_text(text)
    _expect_inert(page, "#queue")

    # The focus view: the diffs, the edit box, the checks and the title.
    page.goto(f"{live_server.url}/review/variants/{variant.pk}/")
    focus = page.locator("#focus")
    expect(focus.locator(".diff .base .copy")).to_have_text(product.description)
    expect(focus.locator(".diff .generated .copy")).to_have_text(text)
    expect(focus.locator("section.edited .copy")).to_contain_text(IMG)
    expect(focus.locator("details.edit textarea")).to_have_value(text)
    expect(focus.locator(".checks .fail")).to_contain_text(IMG)
    expect(page).to_have_title(f"{product.name} for {variant.audience} · Hyperpers")
    _expect_inert(page, "#focus")
    screenshot("focus")


def test_markup_in_imported_customer_data_is_shown_as_text(page, live_server, log_in, tmp_path):
    from generation import services
    from tests.factories import PromptVersionFactory, SegmentFactory

    UserFactory(username="lead", groups=["marketing lead"])
    path = tmp_path / "cdp.jsonl"
    records = [
        {"external_id": f"C{i}", "value_tier": "high", "city": IMG,
         "note": '=HYPERLINK("http://evil.example")'}
        for i in range(3)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    SegmentFactory(slug="vips", name=f"VIPs {SCRIPT}", rules={"value_tier": "high"})
    services.customers_import(path=path)
    version = PromptVersionFactory()
    from tests.factories import ProductFactory

    ProductFactory()
    log_in("lead")

    page.goto(f"{live_server.url}/review/segments/")
    expect(page.locator("table.segments")).to_contain_text(IMG)
    expect(page.locator("table.segments")).to_contain_text(SCRIPT)
    _expect_inert(page, "main")

    page.goto(f"{live_server.url}/review/prompts/{version.prompt.slug}/privacy/")
    expect(page.locator("pre.message").last).to_contain_text("onerror")
    _expect_inert(page, "main")
