"""Imports over the API, run by a real Celery worker: the request only records the
upload; the worker reads it, reports progress, and ends with the command's report."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from generation.models import Customer, Import, Product
from review.auth import api_token_create

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _until_finished(client: APIClient, url: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.2)
    pytest.fail(f"{url} did not finish in {timeout}s: {body}")


@pytest.fixture
def write_client() -> APIClient:
    client = APIClient()
    _token, key = api_token_create(name="cdp", kind="write")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_a_worker_imports_what_the_api_recorded(start_worker, write_client, tmp_path, settings):
    uploads = tmp_path / "imports"
    start_worker(IMPORT_DIR=uploads)
    settings.IMPORT_DIR = uploads  # the web side writes where the worker reads
    rows = "".join(f"C{i:05d},{['low', 'medium', 'high'][i % 3]}\n" for i in range(5000))
    upload = SimpleUploadedFile("cdp.csv", ("external_id,value_tier\n" + rows).encode())
    response = write_client.post("/api/v1/imports/customers/", {"file": upload})
    assert response.status_code == 202, response.content
    assert Customer.objects.count() == 0  # the request itself imported nothing

    record = _until_finished(write_client, response["Location"])

    assert record["status"] == "done", record
    assert record["result"]["created"] == 5000 and record["result"]["rows"] == 5000
    assert record["progress"]["done"] == 1.0
    assert Customer.objects.count() == 5000
    assert list(uploads.iterdir()) == []  # the upload is removed once imported

    bad = "sku,name,category,subcategory,description\nA-1,Shoe,Run,Road,Fine.\n,No SKU,Run,Road,x\n"
    response = write_client.post(
        "/api/v1/imports/products/", {"file": SimpleUploadedFile("catalog.csv", bad.encode())}
    )
    record = _until_finished(write_client, response["Location"])
    assert record["status"] == "failed"
    assert record["failure"]["file"][0].startswith("catalog.csv, line 3, column 'sku'")
    assert not Product.objects.exists()
    assert Import.objects.filter(status="done").count() == 1
