"""Issue 18's first run: a marketing lead on an empty instance (no brand, products,
customers, segments nor prompts; only their own account) does the queue page's
checklist in the browser, step by step, following its links, and sees each step
ticked as its data appears: brand → the Luma catalog → a CDP export mapped column by
column → segments → a prompt from a starter → a run (a real worker and the offline
writer) → review in the queue → live copy fetched over REST with a token made on the
tokens page."""

import json
import random
import re
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from generation.importers import read_products
from generation.models import (
    Brand,
    Customer,
    GenerationRun,
    Product,
    Prompt,
    PromptVersion,
    Segment,
    Variant,
)
from tests.conftest import SHARED_DATA
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LUMA_CATALOG = SHARED_DATA / "luma" / "configurable_products.csv"
STEPS = ["brand", "catalog", "customers", "segments", "prompt", "run", "review", "live"]
# A handful of the catalog's products (men's hoodies, a jacket, women's tees): with the
# three value tiers, nine variants for the worker to write.
SKUS = ["MH01", "MJ01", "WS01"]
TIERS = ["hoch", "mittel", "niedrig"]
CUSTOMERS = 50
# Slow steps on a loaded CI machine: a worker importing, then writing nine variants.
WORKER_MS = 120_000


def _kunden(path: Path, subcategories: list[str]) -> Path:
    """A CDP export with its own column names: a German one, favourite subcategories
    from the catalog, a value tier, and a personal e-mail address."""
    pick = random.Random(18)
    lines = ["Kunden-ID,Lieblingskategorie,Wert,E-Mail"]
    for i in range(1, CUSTOMERS + 1):
        # Every tier has members whatever the seed: the run is over all three.
        tier = TIERS[i % len(TIERS)]
        lines.append(f"K-{i:03d},{pick.choice(subcategories)},{tier},kunde{i}@example.com")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _open_checklist(page, live_server) -> None:
    page.goto(f"{live_server.url}/review/")
    expect(page.locator("#setup")).to_be_visible()


def _expect_ticked(page, done: int) -> None:
    """The first `done` steps are ticked, the others not, and the next one is pointed at."""
    setup = page.locator("#setup")
    expect(setup.locator("h2")).to_contain_text(f"{done} of {len(STEPS)} steps done")
    for i, key in enumerate(STEPS):
        step = setup.locator(f'li[data-step="{key}"]')
        expect(step).to_have_class(re.compile(r"\bdone\b" if i < done else r"\btodo\b"))
        expect(step.locator(".tick")).to_have_text("✓" if i < done else "○")
    if done < len(STEPS):
        expect(setup.locator(f'li[data-step="{STEPS[done]}"]')).to_have_class(
            re.compile(r"\bnext\b")
        )


def _follow(page, step: str) -> None:
    """Open the page of a step through the checklist's own link."""
    page.locator(f'#setup li[data-step="{step}"] a').click()


def _live_copy(live_server, key: str, **params: str) -> dict:
    """GET /api/v1/live/ as a web shop would: plain HTTP with the token."""
    request = urllib.request.Request(
        f"{live_server.url}/api/v1/live/?{urllib.parse.urlencode(params)}",
        headers={"Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_a_lead_does_the_whole_checklist_on_an_empty_instance(
    page, live_server, log_in, screenshot, start_worker, import_uploads, tmp_path
):
    if not LUMA_CATALOG.exists():
        pytest.skip(f"{LUMA_CATALOG} is absent (../shared/data is only in this workplace)")
    UserFactory(username="lead", groups=["marketing lead"])
    for model in (Brand, Product, Customer, Segment, Prompt, GenerationRun, Variant):
        assert not model.objects.exists(), f"the instance is not empty: {model.__name__}"
    subcategories = sorted({p.subcategory for p in read_products(LUMA_CATALOG)})
    kunden = _kunden(tmp_path / "kunden.csv", subcategories)
    start_worker(IMPORT_DIR=import_uploads)

    log_in("lead")
    _open_checklist(page, live_server)
    _expect_ticked(page, 0)
    screenshot("00-empty-checklist")

    # 1. The brand: the Brands link sends an empty instance to create its first.
    _follow(page, "brand")
    page.locator("#id_name").fill("Luma")
    page.get_by_label("Voice").fill("Warm, plain and active. We never promise results.")
    page.get_by_label("Banned phrases").fill("miracle\nguaranteed")
    page.get_by_role("button", name="Create brand").click()
    expect(page.locator(".messages")).to_contain_text("Created the brand Luma")
    screenshot("01-brand")
    _open_checklist(page, live_server)
    _expect_ticked(page, 1)

    # 2. The catalog: the Magento export, imported by the worker.
    _follow(page, "catalog")
    page.get_by_label("Catalog").check()
    page.get_by_label("File", exact=True).set_input_files(LUMA_CATALOG)
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_url(re.compile(r"/review/imports/\d+/$"))
    status = page.locator("#import-status")
    expect(status.locator(".import-report")).to_contain_text("Imported", timeout=WORKER_MS)
    expect(status.locator(".import-report")).to_contain_text("147")
    screenshot("02-catalog-imported")
    assert Product.objects.count() == 147
    _open_checklist(page, live_server)
    _expect_ticked(page, 2)

    # 3. The customers: our names for the export's columns, then the import.
    _follow(page, "customers")
    page.get_by_label("Customer file").set_input_files(kunden)
    page.get_by_role("button", name="Upload and map columns").click()
    page.wait_for_url(re.compile(r"/review/imports/map/[0-9a-f]{32}/$"))
    expect(page.get_by_label("External id: Kunden-ID")).to_be_checked()
    expect(page.get_by_label("Type of Lieblingskategorie")).to_have_value("choice")
    expect(page.get_by_label("Type of Wert")).to_have_value("choice")
    expect(page.get_by_label("Personal: E-Mail")).to_be_checked()
    page.get_by_label("Attribute of Lieblingskategorie").fill("preferred_subcategory")
    page.get_by_label("Attribute of Wert").fill("value_tier")
    page.get_by_label("Attribute of E-Mail").fill("email")
    page.get_by_role("button", name="Preview 20 rows").click()
    preview = page.locator("#mapping-preview")
    expect(preview.locator("thead")).to_contain_text("→ value_tier")
    expect(preview).to_contain_text("All 20 rows read without an error.")
    screenshot("03-mapped")
    page.get_by_label("Save the mapping as (source)").fill("Kunden CDP")
    page.get_by_role("button", name="Save mapping and import").click()
    page.wait_for_url(re.compile(r"/review/imports/\d+/$"))
    status = page.locator("#import-status")
    expect(status.locator(".import-report")).to_contain_text("Imported", timeout=WORKER_MS)
    expect(status).to_contain_text("read through Kunden CDP")
    screenshot("04-customers-imported")
    assert Customer.objects.count() == CUSTOMERS
    customer = Customer.objects.get(external_id="K-003")
    assert customer.attributes["value_tier"] == "hoch"
    assert customer.attributes["preferred_subcategory"] in subcategories
    _open_checklist(page, live_server)
    _expect_ticked(page, 3)

    # 4. Segments: one per value tier, generated from the imported attribute.
    _follow(page, "segments")
    page.locator('input[name="by"][value="value_tier"]').check()
    page.get_by_role("button", name="Generate segments").click()
    expect(page.locator(".messages")).to_contain_text("3 segments from every combination")
    table = page.locator("table.segments")
    for tier in TIERS:
        expect(table).to_contain_text(tier)
    screenshot("05-segments")
    assert sorted(Segment.objects.values_list("slug", flat=True)) == TIERS
    assert sum(Segment.objects.values_list("member_count", flat=True)) == CUSTOMERS
    _open_checklist(page, live_server)
    _expect_ticked(page, 4)

    # 5. A prompt from the product-page starter, for the brand just made.
    _follow(page, "prompt")
    expect(page.locator("#id_template")).not_to_be_empty()
    page.locator("#id_name").fill("Product page")
    page.locator("#id_slug").fill("product-page")
    expect(page.locator("#id_brand")).to_have_value(str(Brand.objects.get().pk))
    screenshot("06-prompt-starter")
    page.get_by_role("button", name="Create prompt").click()
    page.wait_for_url(re.compile(r"/review/prompts/product-page/$"))
    expect(page.locator(".messages")).to_contain_text("Created Product page with its v1")
    assert PromptVersion.objects.get().prompt.slug == "product-page"
    _open_checklist(page, live_server)
    _expect_ticked(page, 5)

    # 6. A run over three products and the three segments, written by the worker.
    _follow(page, "run")
    page.get_by_label("Prompt", exact=True).select_option("product-page")
    page.locator("details summary", has_text="Or list the SKUs").click()
    page.get_by_label("SKUs, one a line").fill("\n".join(SKUS))
    for tier in TIERS:
        page.locator(f'input[name="segments"][value="{tier}"]').check()
    expect(page.locator("#estimate")).to_contain_text("Estimate: 9 slots")
    screenshot("07-run-builder")
    page.get_by_role("button", name="Start the run").click()
    page.wait_for_url(re.compile(r"/review/runs/\d+/$"))
    progress = page.locator("#run-progress")
    expect(progress.locator("strong")).to_have_text("Finished", timeout=WORKER_MS)
    expect(progress).to_contain_text("9 written, 0 failed of 9")
    screenshot("08-run-finished")
    run = GenerationRun.objects.get()
    assert sorted(run.scope["segments"]) == TIERS
    _open_checklist(page, live_server)
    _expect_ticked(page, 6)

    # 7. The variants in the queue; the lead approves one.
    rows = page.locator("#queue article[id^='variant-']")
    expect(rows).to_have_count(9)
    screenshot("09-queue")
    first = rows.first
    variant = Variant.objects.get(pk=int(first.get_attribute("id").removeprefix("variant-")))
    assert variant.status == Variant.Status.IN_REVIEW
    first.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(f"#variant-{variant.pk}")).to_have_class(
        re.compile(r"\bstatus-published\b")
    )
    variant.refresh_from_db()
    assert variant.status == Variant.Status.PUBLISHED
    # Approved, but nothing has asked for it yet: seven steps of eight.
    _open_checklist(page, live_server)
    _expect_ticked(page, 7)
    screenshot("10-approved")

    # 8. Live copy: a read token from the tokens page, then the shop's plain request.
    page.locator('#setup li[data-step="live"] a').click()
    page.get_by_label("Name").fill("web shop (prod)")
    page.get_by_label("Read: live copy for delivery").check()
    page.get_by_role("button", name="Create token").click()
    key = page.locator("#new-key").input_value()
    assert key
    screenshot("11-token")
    body = _live_copy(
        live_server,
        key,
        prompt="product-page",
        product=variant.product.sku,
        segment=variant.segment.slug,
    )
    assert (body["variant_id"], body["source"], body["fallback"]) == (variant.pk, "segment", False)
    assert body["text"] == variant.text
    # The tokens page records the shop's use (a fresh GET: reloading would post again).
    page.get_by_role("link", name="API tokens").click()
    token_row = page.locator("#token-list tbody tr")
    expect(token_row).to_have_count(1)
    expect(token_row).to_contain_text("web shop (prod)")
    expect(token_row).not_to_contain_text("never")
    screenshot("12-token-used")
    # The shop fetched live copy: every step is done, and the queue stops showing the
    # checklist and links to it instead.
    page.goto(f"{live_server.url}/review/")
    expect(page.locator("#setup")).not_to_be_attached()
    page.locator(".setup-link").get_by_role("link", name="Setup").click()
    _expect_ticked(page, 8)
    expect(page.locator("#setup .notice")).to_contain_text("Every step is done")
