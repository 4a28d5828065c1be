"""A lead imports a CDP export whose columns have names of their own: uploads it, reads
the mapping suggested, adjusts it, previews the first rows over HTMX (an error marked on
its cell), then saves the mapping and follows a real worker's import to its end."""

import re

import pytest
from playwright.sync_api import expect

from generation.models import Customer, CustomerSource, Import
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CATEGORIES = ["Running", "Yoga", "Hiking"]
KUNDEN = "Kunden-ID,Lieblingskategorie,E-Mail,Umsatz,Notiz\n" + "".join(
    f"K-{i},{CATEGORIES[i % 3]},kunde{i}@example.com,{i * 12.5},notiz {i}\n" for i in range(1, 31)
)


def test_a_lead_maps_a_cdp_exports_own_columns_previews_and_imports_it(
    page, live_server, log_in, screenshot, start_worker, tmp_path, import_uploads
):
    UserFactory(username="lead", groups=["marketing lead"])
    export = tmp_path / "kunden.csv"
    export.write_text(KUNDEN, encoding="utf-8")
    start_worker(IMPORT_DIR=import_uploads)

    log_in("lead")
    page.goto(f"{live_server.url}/review/imports/")
    page.get_by_role("link", name=re.compile("map its columns")).click()
    page.get_by_label("Customer file").set_input_files(export)
    page.get_by_role("button", name="Upload and map columns").click()
    page.wait_for_url(re.compile(r"/review/imports/map/[0-9a-f]{32}/$"))

    # What we suggest: the id by its name, a choice of the sampled categories, the
    # e-mail personal by its name, revenue a number; the suggestion is previewed.
    expect(page.get_by_label("External id: Kunden-ID")).to_be_checked()
    expect(page.get_by_label("Type of Lieblingskategorie")).to_have_value("choice")
    # In the order the rows hold them.
    expect(page.get_by_label("Choices of Lieblingskategorie")).to_have_value(
        "Yoga, Hiking, Running"
    )
    expect(page.get_by_label("Personal: E-Mail")).to_be_checked()
    expect(page.get_by_label("Type of Umsatz")).to_have_value("number")
    preview = page.locator("#mapping-preview")
    expect(preview).to_contain_text("All 20 rows read without an error.")
    screenshot("01-suggested")

    # The lead names the attributes our way, and narrows the choices too far.
    page.get_by_label("Attribute of Lieblingskategorie").fill("favourite_category")
    page.get_by_label("Choices of Lieblingskategorie").fill("Running, Yoga")
    page.get_by_label("Attribute of Umsatz").fill("revenue")
    page.get_by_label("Ignore: Notiz").check()
    page.evaluate("window.__sameDocument = true")
    page.get_by_role("button", name="Preview 20 rows").click()
    expect(preview).to_contain_text("7 of 20 rows cannot be imported")
    bad = preview.locator("td.error").first
    expect(bad).to_contain_text("'Hiking' is not one of Running, Yoga")
    expect(preview.locator("thead")).to_contain_text("→ favourite_category")
    assert page.evaluate("window.__sameDocument") is True  # swapped in place, no reload
    assert not CustomerSource.objects.exists() and not Import.objects.exists()
    screenshot("02-error-on-its-cell")

    page.get_by_label("Choices of Lieblingskategorie").fill("Running, Yoga, Hiking")
    page.get_by_role("button", name="Preview 20 rows").click()
    expect(preview).to_contain_text("All 20 rows read without an error.")
    page.get_by_label("Save the mapping as (source)").fill("Kunden CDP")
    page.get_by_role("button", name="Save mapping and import").click()

    page.wait_for_url(re.compile(r"/review/imports/\d+/$"))
    expect(page.locator(".messages")).to_contain_text("Saved the mapping as source Kunden CDP")
    status = page.locator("#import-status")
    expect(status).to_contain_text("Imported", timeout=60_000)
    expect(status).to_contain_text("read through Kunden CDP")
    expect(status.locator(".import-report")).to_contain_text("30")
    screenshot("03-imported")

    record = Import.objects.get()
    assert (record.status, record.result["created"], record.source.slug) == (
        "done",
        30,
        "kunden-cdp",
    )
    customer = Customer.objects.get(external_id="K-3")
    assert customer.attributes == {
        "favourite_category": "Running",
        "email": "kunde3@example.com",
        "revenue": 37.5,
    }
