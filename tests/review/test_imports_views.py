"""The imports page: upload, the worker's record of it, its report or every bad row."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from generation import services
from generation.models import Customer, Import, Product
from generation.tasks import import_run
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

IMPORTS = reverse("review:imports")
CATALOG = (
    "sku,name,category,subcategory,description\n"
    "RUN-1,AeroStride Runner,Run,Running Shoes,A light shoe for daily miles.\n"
)


@pytest.fixture
def lead(client, settings, tmp_path):
    settings.IMPORT_DIR = tmp_path
    client.force_login(UserFactory(username="lead", groups=["marketing lead"]))
    return client


def _upload(client, name: str, body: bytes, **fields):
    return client.post(IMPORTS, {"file": SimpleUploadedFile(name, body), **fields})


def test_a_lead_uploads_a_catalog_and_follows_it_to_its_report(lead, tmp_path):
    response = _upload(lead, "catalog.csv", CATALOG.encode(), kind="products")
    record = Import.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "review:import", args=[record.pk]
    )
    assert (record.status, record.via, record.requested_by) == ("queued", "web", "lead")
    assert not Product.objects.exists()  # the request only recorded it

    waiting = lead.get(response["Location"])
    assert b"Queued" in waiting.content and b"waiting for a worker" in waiting.content
    assert b'hx-trigger="every 1s"' in waiting.content

    import_run.apply(args=[record.pk])
    page = lead.get(response["Location"], HTTP_HX_REQUEST="true")
    assert page.status_code == 200 and b"<html" not in page.content  # the partial only
    assert b"Imported" in page.content and b"hx-trigger" not in page.content
    assert Product.objects.count() == 1 and list(tmp_path.iterdir()) == []
    listing = lead.get(IMPORTS).content.decode()
    assert "catalog.csv" in listing and "1 new, 0 updated" in listing


def test_every_bad_customer_row_is_listed_and_nothing_is_written(lead):
    body = b"external_id,value_tier\nC1,high\n,low\nC3,\n,medium\n"
    _upload(lead, "cdp.csv", body, kind="customers")
    record = Import.objects.get()
    import_run.apply(args=[record.pk])
    page = lead.get(reverse("review:import", args=[record.pk])).content.decode()
    assert "Nothing was imported" in page and "cdp.csv: 2 bad row(s)" in page
    assert "line 3, column &#x27;external_id&#x27;" in page and "line 5" in page
    assert "column mapping" in page  # every error is in the id column: a hint to map it
    assert not Customer.objects.exists()


def test_skip_invalid_imports_the_good_rows_through_a_source(lead):
    services.customer_source_save(
        slug="acme", mapping={"columns": {"ID": "external_id", "TIER": "value_tier"}}
    )
    _upload(
        lead,
        "acme.csv",
        b"ID,TIER\nA1,high\n,low\n",
        kind="customers",
        source="acme",
        skip_invalid="1",
    )
    record = Import.objects.get()
    assert record.source.slug == "acme" and record.options == {"skip_invalid": True}
    import_run.apply(args=[record.pk])
    page = lead.get(reverse("review:import", args=[record.pk])).content.decode()
    assert "Bad rows skipped" in page and "Skipped rows" in page
    assert Customer.objects.get().attributes == {"value_tier": "high"}


@pytest.mark.parametrize(
    "name, body, fields, status, message",
    [
        ("c.csv", CATALOG.encode(), {}, 400, "Choose what the file holds"),
        ("c.csv", CATALOG.encode(), {"kind": "orders"}, 400, "Choose what the file holds"),
        (
            "c.xlsx",
            CATALOG.encode(),
            {"kind": "products"},
            400,
            "the file name &#x27;c.xlsx&#x27; does not tell",
        ),
        ("c.parquet", b"PAR1", {"kind": "products"}, 400, "does not tell"),
        ("c.csv", b"", {"kind": "products"}, 400, "c.csv is empty"),
        (
            "c.csv",
            CATALOG.encode(),
            {"kind": "customers", "source": "ghost"},
            400,
            "Unknown source",
        ),
        ("c.csv", CATALOG.encode() * 10, {"kind": "products"}, 413, "IMPORT_MAX_BYTES"),
    ],
)
def test_a_refused_upload_says_why_on_the_page_and_records_nothing(
    lead, settings, tmp_path, name, body, fields, status, message
):
    settings.IMPORT_MAX_BYTES = 500
    response = _upload(lead, name, body, **fields)
    assert response.status_code == status
    assert message in response.content.decode()
    assert not Import.objects.exists() and list(tmp_path.iterdir()) == []


def test_a_missing_file_is_named(lead):
    response = lead.post(IMPORTS, {"kind": "products"})
    assert response.status_code == 400 and "Choose a file" in response.content.decode()


def test_copywriters_do_not_import(client):
    client.force_login(UserFactory(username="cw", groups=["copywriter"]))
    assert client.get(IMPORTS).status_code == 403
    assert _upload(client, "c.csv", CATALOG.encode(), kind="products").status_code == 403
    assert not Import.objects.exists()


def test_file_names_and_errors_are_escaped(lead):
    _upload(lead, "<img src=x onerror=alert(1)>.csv", b"sku,name\n<b>,<i>\n", kind="products")
    record = Import.objects.get()
    import_run.apply(args=[record.pk])
    page = lead.get(reverse("review:import", args=[record.pk])).content.decode()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;.csv" in page
    listing = lead.get(IMPORTS).content.decode()
    assert "<img src=x" not in listing and "&lt;img src=x" in listing
