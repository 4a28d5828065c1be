"""The workflow API: imports, segments, runs and variants, for each kind of caller."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from generation.models import Customer, GenerationRun, Import, Product, Segment, Variant
from review.auth import api_token_create
from review.models import ReviewEvent
from tests.factories import (
    CustomerFactory,
    ProductFactory,
    PromptFactory,
    PromptVersionFactory,
    RunFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

API = "/api/v1"
GROUPS = {"copywriter": ["copywriter"], "lead": ["marketing lead"], "staff": [], "nobody": []}


def as_(role: str) -> APIClient:
    """A client for `role`: anonymous, a person (session), or an API token."""
    client = APIClient()
    if role in ("read", "write"):
        _token, key = api_token_create(name=f"{role} client", kind=role)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    elif role != "anonymous":
        user = UserFactory(username=role, groups=GROUPS[role], is_staff=role == "staff")
        client.force_authenticate(user)
    return client


def _csv(name: str, text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


PRODUCTS_CSV = (
    "sku,name,category,subcategory,description\n"
    "RUN-1,AeroStride Runner,Run,Running Shoes,A light shoe for daily miles.\n"
    "RUN-2,AeroStride Trail,Run,Trail Shoes,Grip for muddy trails.\n"
)


# ---------------------------------------------------------------- imports


def imported(client: APIClient, url: str, data: dict) -> dict:
    """POST an import, run the task a worker would run, and read the record back."""
    from generation.tasks import import_run

    response = client.post(url, data, format="multipart")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued" and response["Location"] == response.json()["url"]
    import_run.apply(args=[response.json()["id"]])
    record = client.get(response["Location"])
    assert record.status_code == 200
    return record.json()


@pytest.mark.parametrize(
    "role, expected",
    [
        ("anonymous", 401),
        ("copywriter", 403),
        ("nobody", 403),
        ("read", 403),
        ("lead", 202),
        ("staff", 202),
        ("write", 202),
    ],
)
def test_leads_staff_and_write_tokens_import_products(role, expected, settings, tmp_path):
    settings.IMPORT_DIR = tmp_path
    client = as_(role)
    upload = {"file": _csv("catalog.csv", PRODUCTS_CSV)}
    if expected != 202:
        response = client.post(f"{API}/imports/products/", upload, format="multipart")
        assert response.status_code == expected, response.content
        assert not Import.objects.exists() and not list(tmp_path.iterdir())
        return
    record = imported(client, f"{API}/imports/products/", upload)
    assert record["status"] == "done" and record["failure"] is None
    assert record["result"] == {"created": 2, "updated": 0, "unchanged": 0}
    assert record["file"] == "catalog.csv" and record["kind"] == "products"
    assert record["requested_by"] == ("token write client" if role == "write" else role)
    assert record["progress"]["done"] == 1.0
    assert Product.objects.count() == 2
    assert not list(tmp_path.iterdir())  # the uploaded file is gone once imported


def test_importing_again_updates_by_sku():
    client = as_("write")
    imported(client, f"{API}/imports/products/", {"file": _csv("a.csv", PRODUCTS_CSV)})
    changed = PRODUCTS_CSV.replace("Grip for muddy trails.", "Grip for any trail.")
    record = imported(client, f"{API}/imports/products/", {"file": _csv("a.csv", changed)})
    assert record["result"] == {"created": 0, "updated": 1, "unchanged": 1}
    assert Product.objects.get(sku="RUN-2").description == "Grip for any trail."


def test_a_bad_row_names_the_uploaded_file_line_and_column_and_imports_nothing():
    bad = PRODUCTS_CSV + ",No SKU,Run,Running Shoes,Missing its SKU.\n"
    record = imported(as_("lead"), f"{API}/imports/products/", {"file": _csv("catalog.csv", bad)})
    assert record["status"] == "failed" and record["result"] is None
    failure = record["failure"]
    assert failure["line"] == 4 and failure["column"] == "sku"
    assert failure["file"][0].startswith("catalog.csv, line 4, column 'sku': ")
    assert "Nothing was imported" in failure["file"][0] and "/tmp" not in failure["file"][0]
    assert not Product.objects.exists()  # the two good rows before it are not written


def test_a_file_that_is_not_utf8_is_refused_for_the_whole_file():
    upload = SimpleUploadedFile("catalog.csv", "sku,name,description\nA,Café,x\n".encode("latin-1"))
    record = imported(as_("lead"), f"{API}/imports/products/", {"file": upload})
    assert record["status"] == "failed"
    assert record["failure"]["line"] is None and "not UTF-8" in record["failure"]["file"][0]


def test_the_format_comes_from_the_extension_or_must_be_named():
    client = as_("write")
    response = client.post(f"{API}/imports/products/", {"file": _csv("catalog.txt", PRODUCTS_CSV)})
    assert response.status_code == 400
    assert "Name the format (csv)" in response.json()["format"][0]
    record = imported(
        client,
        f"{API}/imports/products/",
        {"file": _csv("catalog.txt", PRODUCTS_CSV), "format": "csv"},
    )
    assert record["status"] == "done" and Product.objects.count() == 2
    response = client.post(
        f"{API}/imports/products/", {"file": _csv("c.csv", PRODUCTS_CSV), "format": "xlsx"}
    )
    assert response.status_code == 400 and "format" in response.json()
    assert Import.objects.count() == 1


def test_a_missing_empty_or_too_big_file_is_named_and_not_recorded(settings, tmp_path):
    settings.IMPORT_DIR = tmp_path
    client = as_("write")
    response = client.post(f"{API}/imports/products/", {"format": "csv"})
    assert response.status_code == 400 and "file" in response.json()
    response = client.post(f"{API}/imports/products/", {"file": _csv("c.csv", "")})
    assert response.status_code == 400 and "file" in response.json()
    settings.IMPORT_MAX_BYTES = 50
    response = client.post(f"{API}/imports/products/", {"file": _csv("big.csv", PRODUCTS_CSV)})
    assert response.status_code == 413
    assert "big.csv is 0.0 MB" in response.json()["file"][0]
    assert "IMPORT_MAX_BYTES" in response.json()["file"][0]
    assert not Import.objects.exists() and not list(tmp_path.iterdir())


def test_customers_import_from_json_lines():
    jsonl = (
        '{"external_id": "C1", "language": "de", "value_tier": "high"}\n'
        '{"external_id": "C2", "value_tier": "low"}\n'
    )
    upload = SimpleUploadedFile("cdp-export.jsonl", jsonl.encode())
    record = imported(as_("write"), f"{API}/imports/customers/", {"file": upload})
    assert record["status"] == "done", record
    assert record["result"]["created"] == 2 and record["result"]["rows"] == 2
    assert record["progress"] == {"rows": 2, "bad": 0, "done": 1.0}
    assert Customer.objects.get(external_id="C1").language == "de"


def test_a_bad_customer_line_names_the_line_and_imports_nothing():
    jsonl = '{"external_id": "C1"}\n{"external_id": "C2", "language": 7\n'
    upload = SimpleUploadedFile("export.ndjson", jsonl.encode())
    record = imported(as_("lead"), f"{API}/imports/customers/", {"file": upload})
    assert record["status"] == "failed"
    assert record["failure"]["line"] == 2
    assert record["failure"]["file"][0].startswith("export.ndjson")
    assert not Customer.objects.exists()


@pytest.mark.parametrize("role, expected", [("copywriter", 403), ("read", 403), ("write", 202)])
def test_customer_imports_have_the_product_imports_permissions(role, expected):
    upload = SimpleUploadedFile("c.csv", b"external_id,value_tier\nC1,high\n")
    response = as_(role).post(f"{API}/imports/customers/", {"file": upload})
    assert response.status_code == expected


def test_a_token_lists_its_own_imports_and_a_lead_lists_all():
    first, second, lead = as_("write"), APIClient(), as_("lead")
    _token, key = api_token_create(name="other shop", kind="write")
    second.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    mine = imported(first, f"{API}/imports/products/", {"file": _csv("a.csv", PRODUCTS_CSV)})
    theirs = imported(second, f"{API}/imports/products/", {"file": _csv("b.csv", PRODUCTS_CSV)})
    assert [r["id"] for r in first.get(f"{API}/imports/").json()["results"]] == [mine["id"]]
    assert first.get(f"{API}/imports/{theirs['id']}/").status_code == 404
    listed = [r["id"] for r in lead.get(f"{API}/imports/").json()["results"]]
    assert listed == [theirs["id"], mine["id"]]
    assert as_("copywriter").get(f"{API}/imports/").status_code == 403
    assert as_("read").get(f"{API}/imports/{mine['id']}/").status_code == 403


def test_an_import_runs_once_whatever_delivers_its_task_again():
    from generation import imports

    client = as_("write")
    response = client.post(f"{API}/imports/products/", {"file": _csv("a.csv", PRODUCTS_CSV)})
    pk = response.json()["id"]
    assert imports.execute(import_id=pk, claim="task-1").status == "done"
    # Another task (the beat's re-queue, a redelivery) finds it finished: nothing runs.
    again = imports.execute(import_id=pk, claim="task-2")
    assert again.status == "done" and again.result["created"] == 2
    assert Product.objects.count() == 2


# ---------------------------------------------------------------- segments


@pytest.mark.parametrize(
    "role, expected",
    [
        ("anonymous", 401),
        ("nobody", 403),
        ("read", 403),
        ("write", 403),
        ("copywriter", 200),
        ("lead", 200),
        ("staff", 200),
    ],
)
def test_reviewers_list_segments_with_their_members_and_summary(role, expected):
    SegmentFactory(slug="high", member_count=12, summary={"region": {"north": 1.0}})
    response = as_(role).get(f"{API}/segments/")
    assert response.status_code == expected
    if expected == 200:
        (segment,) = response.json()["results"]
        assert segment["slug"] == "high" and segment["member_count"] == 12
        assert segment["summary"] == {"region": {"north": 1.0}}


@pytest.mark.parametrize(
    "role, expected",
    [("anonymous", 401), ("copywriter", 403), ("write", 403), ("lead", 200), ("staff", 200)],
)
def test_leads_and_staff_rebuild_segments(role, expected):
    CustomerFactory.create_batch(3)
    CustomerFactory(attributes={"value_tier": "low", "region": "south"})
    response = as_(role).post(f"{API}/segments/rebuild/", {"by": ["value_tier"]}, format="json")
    assert response.status_code == expected
    if expected == 200:
        counts = {s["slug"]: s["member_count"] for s in response.json()["results"]}
        assert counts == {"high": 3, "low": 1}
        assert Segment.objects.get(slug="high").summary["region"] == {"north": 1.0}
    else:
        assert not Segment.objects.exists()
        if role == "copywriter":
            assert "rebuild segments" in response.json()["detail"]


def test_rebuilding_by_an_unknown_attribute_names_by():
    CustomerFactory()
    client = as_("lead")
    response = client.post(f"{API}/segments/rebuild/", {"by": ["shoe_size"]}, format="json")
    assert response.status_code == 400
    assert "No customer has the attribute(s) shoe_size" in response.json()["by"][0]
    response = client.post(f"{API}/segments/rebuild/", {"by": []}, format="json")
    assert response.status_code == 400 and "by" in response.json()


# ---------------------------------------------------------------- runs


@pytest.fixture
def catalog():
    """A prompt with a version, two products and three segments with members."""
    version = PromptVersionFactory(prompt=PromptFactory(slug="pdp"))
    return version, ProductFactory.create_batch(2), SegmentFactory.create_batch(3)


@pytest.mark.parametrize(
    "role, expected",
    [
        ("anonymous", 401),
        ("nobody", 403),
        ("read", 403),
        ("write", 403),
        ("copywriter", 200),
        ("lead", 200),
        ("staff", 200),
    ],
)
def test_reviewers_watch_runs(role, expected):
    run = RunFactory(status=GenerationRun.Status.RUNNING, total=4, succeeded=1, failed=1)
    client = as_(role)
    assert client.get(f"{API}/runs/").status_code == expected
    response = client.get(f"{API}/runs/{run.pk}/")
    assert response.status_code == expected
    if expected == 200:
        body = response.json()
        assert (body["status"], body["total"], body["done"]) == ("running", 4, 2)


def test_the_runs_list_pages_newest_first():
    runs = RunFactory.create_batch(3)
    client = as_("copywriter")
    body = client.get(f"{API}/runs/", {"limit": 2}).json()
    assert [r["id"] for r in body["results"]] == [runs[2].pk, runs[1].pk]
    body = client.get(body["next"]).json()
    assert [r["id"] for r in body["results"]] == [runs[0].pk] and body["next"] is None
    assert client.get(f"{API}/runs/", {"limit": 500}).status_code == 400


def test_a_run_shows_where_its_variants_are_now():
    run = RunFactory(status=GenerationRun.Status.FINISHED, total=3, succeeded=2, failed=1)
    VariantFactory(run=run, status=Variant.Status.PUBLISHED)
    VariantFactory(run=run, status=Variant.Status.IN_REVIEW)
    VariantFactory(run=run, status=Variant.Status.FAILED)
    body = as_("copywriter").get(f"{API}/runs/{run.pk}/").json()
    assert body["variants_by_status"] == {"published": 1, "in_review": 1, "failed": 1}
    assert as_("copywriter").get(f"{API}/runs/{run.pk + 100}/").status_code == 404


@pytest.mark.parametrize(
    "role, expected",
    [
        ("anonymous", 401),
        ("copywriter", 403),
        ("read", 403),
        ("write", 403),
        ("lead", 201),
        ("staff", 201),
    ],
)
def test_leads_and_staff_start_runs(role, expected, catalog, offline_writer):
    response = as_(role).post(f"{API}/runs/", {"prompt": "pdp"}, format="json")
    assert response.status_code == expected, response.content
    if expected == 201:
        run = GenerationRun.objects.get()
        assert response["Location"] == f"{API}/runs/{run.pk}/"
        body = response.json()
        assert body["id"] == run.pk and body["total"] == 6 and body["created_by"] == role
        assert body["variants_by_status"] == {"queued": 6}
        assert Variant.objects.filter(run=run, status=Variant.Status.QUEUED).count() == 6
    else:
        assert not GenerationRun.objects.exists()


def test_a_run_can_be_narrowed_to_products_and_segments_with_a_budget(catalog, offline_writer):
    _version, products, segments = catalog
    response = as_("lead").post(
        f"{API}/runs/",
        {
            "prompt": "pdp",
            "products": [products[1].sku],
            "segments": [segments[0].slug, segments[2].slug],
            "budget": "2.50",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    run = GenerationRun.objects.get()
    assert run.total == 2 and run.budget == Decimal("2.5")
    assert run.scope == {
        "products": [products[1].sku],
        "segments": [segments[0].slug, segments[2].slug],
        "languages": {segments[0].slug: ["en"], segments[2].slug: ["en"]},
    }


def _refusal(client, url: str, payload: dict) -> dict:
    response = client.post(url, payload, format="json")
    assert response.status_code == 400, response.content
    return response.json()


@pytest.mark.parametrize("path", ["/runs/", "/runs/estimate/"])
def test_bad_run_input_is_refused_naming_the_field_and_nothing_is_queued(
    path, catalog, offline_writer
):
    _version, products, segments = catalog
    client, url = as_("lead"), f"{API}{path}"
    assert _refusal(client, url, {"prompt": "nope"}) == {"prompt": ["Unknown prompt 'nope'"]}
    assert "prompt" in _refusal(client, url, {})
    bare = PromptFactory(slug="bare")
    assert _refusal(client, url, {"prompt": bare.slug}) == {
        "prompt": ["Prompt 'bare' has no version yet; save one first"]
    }
    body = _refusal(client, url, {"prompt": "pdp", "products": [products[0].sku, "GONE", "NOPE"]})
    assert body == {"products": ["Unknown product sku: GONE, NOPE"]}
    assert "products" in _refusal(client, url, {"prompt": "pdp", "products": []})
    assert "segments" in _refusal(client, url, {"prompt": "pdp", "segments": ["gone"]})
    body = _refusal(client, url, {"prompt": "pdp", "budget": "ten"})
    assert body == {"budget": ["The budget must be a number of dollars."]}
    Segment.objects.update(member_count=0)
    body = _refusal(client, url, {"prompt": "pdp"})
    assert body == {"segments": ["The run covers no segments; build segments first"]}
    Product.objects.all().delete()
    body = _refusal(client, url, {"prompt": "pdp", "segments": [segments[0].slug]})
    assert body == {"products": ["The run covers no products; import products first"]}
    assert not GenerationRun.objects.exists() and not Variant.objects.exists()


def test_a_budget_must_be_positive_and_priced(catalog, offline_writer):
    version, _products, _segments = catalog
    client = as_("lead")
    body = _refusal(client, f"{API}/runs/", {"prompt": "pdp", "budget": "0"})
    assert body == {"budget": ["The budget must be more than $0"]}
    PromptVersionFactory(prompt=version.prompt, number=version.number + 1, model="unpriced-model")
    body = _refusal(client, f"{API}/runs/", {"prompt": "pdp", "budget": "5"})
    assert body["budget"][0].startswith("A budget needs a price: No price for model")
    assert not GenerationRun.objects.exists()


def test_an_endpoint_that_cannot_be_reached_is_reported_and_nothing_is_queued(catalog, settings):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    body = _refusal(as_("lead"), f"{API}/runs/", {"prompt": "pdp"})
    assert body["endpoint"][0].startswith("Cannot reach the LLM endpoint at http://127.0.0.1:9/v1")
    assert not GenerationRun.objects.exists() and not Variant.objects.exists()


def test_an_endpoint_without_the_model_is_reported(catalog, offline_writer):
    version, _products, _segments = catalog
    PromptVersionFactory(prompt=version.prompt, number=version.number + 1, model="no-such-model")
    body = _refusal(as_("lead"), f"{API}/runs/", {"prompt": "pdp"})
    assert "has no model 'no-such-model'" in body["endpoint"][0]


def test_the_estimate_counts_slots_tokens_and_cost_and_starts_nothing(catalog):
    version, products, segments = catalog
    VariantFactory(prompt_version=version, product=products[0], segment=segments[0])
    response = as_("lead").post(f"{API}/runs/estimate/", {"prompt": "pdp"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (
        body["slots"] == 5 and body["prompt"] == "pdp" and body["prompt_version"] == version.number
    )
    assert body["prompt_tokens"] > 0 and body["completion_tokens"] > 0
    assert Decimal(body["cost"]) > 0
    assert not GenerationRun.objects.exists()
    narrowed = as_("staff").post(
        f"{API}/runs/estimate/",
        {"prompt": "pdp", "products": [products[1].sku], "segments": [segments[1].slug]},
        format="json",
    )
    assert narrowed.json()["slots"] == 1


@pytest.mark.parametrize("role", ["copywriter", "write", "read"])
def test_only_leads_and_staff_ask_for_estimates(role, catalog):
    response = as_(role).post(f"{API}/runs/estimate/", {"prompt": "pdp"}, format="json")
    assert response.status_code == 403


@pytest.mark.parametrize("role", ["anonymous", "copywriter", "read", "write"])
def test_only_leads_and_staff_steer_runs(role):
    run = RunFactory(status=GenerationRun.Status.RUNNING, failed=1)
    VariantFactory(run=run, status=Variant.Status.FAILED)
    client = as_(role)
    for action in ("cancel", "resume", "retry-failed"):
        response = client.post(f"{API}/runs/{run.pk}/{action}/")
        assert response.status_code == (401 if role == "anonymous" else 403)
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.RUNNING and run.failed == 1


def test_a_lead_cancels_resumes_and_retries_a_run():
    run = RunFactory(status=GenerationRun.Status.RUNNING, total=2, failed=1)
    failed = VariantFactory(run=run, status=Variant.Status.FAILED, error="HTTP 400")
    client = as_("lead")

    response = client.post(f"{API}/runs/{run.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    body = _refusal(client, f"{API}/runs/{run.pk}/cancel/", {})
    assert body == {"status": [f"Run {run.pk} is cancelled; nothing to cancel"]}

    response = client.post(f"{API}/runs/{run.pk}/resume/", {"budget": "3"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "pending" and response.json()["budget"] == "3.000000"
    body = _refusal(client, f"{API}/runs/{run.pk}/resume/", {})
    assert body == {"status": [f"Run {run.pk} is pending; nothing to resume"]}

    response = client.post(f"{API}/runs/{run.pk}/retry-failed/")
    assert response.status_code == 200
    assert response.json()["retried"] == 1 and response.json()["run"]["failed"] == 0
    failed.refresh_from_db()
    assert failed.status == Variant.Status.QUEUED
    assert client.post(f"{API}/runs/{run.pk}/retry-failed/").json()["retried"] == 0


def test_resuming_a_run_whose_budget_is_spent_names_the_budget():
    run = RunFactory(status=GenerationRun.Status.PAUSED, budget=Decimal("1"), cost=Decimal("1.2"))
    body = _refusal(as_("lead"), f"{API}/runs/{run.pk}/resume/", {})
    assert body["budget"][0].startswith(f"Run {run.pk} has spent $1.2000 of its $1.0000 budget")
    body = _refusal(as_("lead"), f"{API}/runs/{run.pk}/resume/", {"budget": "x"})
    assert "budget" in body


def test_steering_a_run_that_does_not_exist_is_404():
    assert as_("lead").post(f"{API}/runs/999999/cancel/").status_code == 404


# ---------------------------------------------------------------- variants


@pytest.mark.parametrize(
    "role, expected",
    [
        ("anonymous", 401),
        ("nobody", 403),
        ("read", 403),
        ("write", 403),
        ("copywriter", 200),
        ("lead", 200),
        ("staff", 200),
    ],
)
def test_reviewers_read_variants(role, expected):
    variant = VariantFactory()
    client = as_(role)
    assert client.get(f"{API}/variants/").status_code == expected
    assert client.get(f"{API}/variants/{variant.pk}/").status_code == expected


def test_a_personal_token_acts_as_its_person():
    user = UserFactory(username="cw-token", groups=["copywriter"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert client.get(f"{API}/variants/").status_code == 200
    assert client.post(f"{API}/runs/estimate/", {"prompt": "x"}).status_code == 403


def test_the_variants_are_filtered_by_status_prompt_product_segment_and_run():
    run = RunFactory()
    wanted = VariantFactory(run=run, prompt_version=run.prompt_version)
    VariantFactory(status=Variant.Status.PUBLISHED)
    VariantFactory(segment=wanted.segment)
    client = as_("copywriter")

    def ids(**params) -> list[int]:
        response = client.get(f"{API}/variants/", params)
        assert response.status_code == 200, response.content
        return [v["id"] for v in response.json()["results"]]

    assert len(ids()) == 3  # every status unless one is asked for
    assert ids(run=run.pk) == [wanted.pk]
    assert ids(prompt=wanted.prompt.slug) == [wanted.pk]
    assert ids(product=wanted.product.sku) == [wanted.pk]
    assert len(ids(segment=wanted.segment.slug)) == 2
    assert ids(status="in_review", segment=wanted.segment.slug, run=run.pk) == [wanted.pk]
    assert len(ids(status="published")) == 1


def test_bad_filters_are_named():
    client = as_("copywriter")
    for params, field in [
        ({"status": "live"}, "status"),
        ({"run": "x"}, "run"),
        ({"limit": 101}, "limit"),
        ({"after": "not-a-cursor"}, "after"),
        ({"check": "spelling"}, "check"),
    ]:
        response = client.get(f"{API}/variants/", params)
        assert response.status_code == 400 and field in response.json(), params


def test_the_variants_page_by_cursor_in_the_queue_order():
    flagged = VariantFactory(checks_failed=2)
    rest = VariantFactory.create_batch(4)
    client = as_("copywriter")
    first = client.get(f"{API}/variants/", {"limit": 2}).json()
    assert [v["id"] for v in first["results"]] == [flagged.pk, rest[0].pk]
    assert first["previous"] is None
    second = client.get(first["next"]).json()
    assert [v["id"] for v in second["results"]] == [rest[1].pk, rest[2].pk]
    third = client.get(second["next"]).json()
    assert [v["id"] for v in third["results"]] == [rest[3].pk] and third["next"] is None
    back = client.get(second["previous"]).json()
    assert [v["id"] for v in back["results"]] == [flagged.pk, rest[0].pk]


def test_the_variants_list_costs_the_same_queries_for_any_page_size(django_assert_num_queries):
    client = as_("copywriter")
    VariantFactory.create_batch(2)
    VariantFactory(segment=None, customer=CustomerFactory())
    with django_assert_num_queries(2) as small:  # the reviewer check, the page
        client.get(f"{API}/variants/", {"limit": 3})
    VariantFactory.create_batch(20)
    with django_assert_num_queries(len(small.captured_queries)):
        response = client.get(f"{API}/variants/", {"limit": 100})
    assert len(response.json()["results"]) == 23


def test_a_variant_shows_everything_a_reviewer_decides_on():
    variant = VariantFactory(
        text="Edited copy.",
        original_text="Model copy.",
        checks=[
            {"name": "length", "passed": True, "message": "ok"},
            {"name": "banned_phrases", "passed": False, "message": "'miracle'"},
        ],
        checks_failed=1,
        prompt_tokens=120,
        completion_tokens=40,
        cost=Decimal("0.000042"),
        revision=3,
    )
    ReviewEvent.objects.create(
        variant=variant, user=UserFactory(username="ann"), action="regenerate", reason="shorter"
    )
    body = as_("copywriter").get(f"{API}/variants/{variant.pk}/").json()
    assert body["text"] == "Edited copy." and body["original_text"] == "Model copy."
    assert body["base_text"] == variant.product.description
    assert body["rationale"] == variant.rationale and body["revision"] == 3
    assert [c["name"] for c in body["checks"]] == ["banned_phrases", "length"]
    assert (body["prompt_tokens"], body["completion_tokens"], body["cost"]) == (
        120,
        40,
        "0.000042",
    )
    assert body["segment"] == variant.segment.slug and body["customer"] is None
    assert body["prompt"] == variant.prompt.slug and body["status"] == "in_review"
    (event,) = body["review_events"]
    assert (event["action"], event["user"], event["reason"]) == ("regenerate", "ann", "shorter")


def test_an_unknown_variant_is_404():
    assert as_("copywriter").get(f"{API}/variants/424242/").status_code == 404


def test_an_oversized_upload_is_refused_with_413_and_imports_nothing(settings):
    settings.IMPORT_MAX_BYTES = 10
    upload = SimpleUploadedFile("big.csv", b"external_id,value_tier\nC1,high\n")
    response = as_("write").post(f"{API}/imports/customers/", {"file": upload})
    assert response.status_code == 413
    assert "big.csv is 0.0 MB; an import takes at most" in response.json()["file"][0]
    assert not Customer.objects.exists()


def test_a_file_of_the_wrong_type_is_refused_naming_the_formats():
    upload = SimpleUploadedFile("customers.xlsx", b"PK\x03\x04 not a csv")
    response = as_("write").post(f"{API}/imports/customers/", {"file": upload})
    assert response.status_code == 400
    assert "csv or jsonl or parquet" in response.json()["format"][0]


def test_beat_queues_again_an_import_whose_task_was_lost(monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from generation import imports

    client = as_("write")
    old = client.post(f"{API}/imports/products/", {"file": _csv("a.csv", PRODUCTS_CSV)}).json()
    new = client.post(f"{API}/imports/products/", {"file": _csv("b.csv", PRODUCTS_CSV)}).json()
    Import.objects.filter(pk=old["id"]).update(created=timezone.now() - timedelta(minutes=11))
    queued = []
    monkeypatch.setattr(imports, "queue", queued.append)
    assert imports.requeue_stale() == 1 and queued == [old["id"]]
    assert new["id"] not in queued


def test_a_reserved_slug_is_another_endpoint_and_says_405_as_documented():
    from django.test import Client

    client = as_("lead")
    for method in ("get", "put", "delete"):
        response = getattr(client, method)(f"{API}/segments/preview/", {}, format="json")
        assert response.status_code == 405, (method, response.status_code)
    schema = Client().get(f"{API}/schema/?format=json").json()
    for method in ("get", "put", "delete"):
        assert "405" in schema["paths"]["/api/v1/segments/{slug}/"][method]["responses"]
