"""The run builder (review/views/runs.py run_new, run_estimate): a lead picks a prompt,
the products and segments (or customers), watches the estimate follow, sets a budget
and starts; bad input is named beside its field and writes nothing."""

from __future__ import annotations

import html
import re
from decimal import Decimal

import pytest
from django.urls import reverse

from generation.models import GenerationRun, Variant
from tests.factories import (
    CustomerFactory,
    ProductFactory,
    PromptFactory,
    PromptVersionFactory,
    SegmentFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

NEW = reverse("review:run-new")
ESTIMATE = reverse("review:run-estimate")
HX = {"HX-Request": "true"}


@pytest.fixture
def lead(client):
    user = UserFactory(username="lead", groups=["marketing lead"])
    client.force_login(user)
    return user


@pytest.fixture
def copywriter(client):
    user = UserFactory(username="cw", groups=["copywriter"])
    client.force_login(user)
    return user


@pytest.fixture
def shop():
    """A prompt with a version, five products in two categories, two segments."""
    version = PromptVersionFactory(prompt__slug="pdp", prompt__name="Product page")
    for sku, category, subcategory in [
        ("SHOE-1", "Run", "Running Shoes"),
        ("SHOE-2", "Run", "Running Shoes"),
        ("SOCK-1", "Run", "Socks"),
        ("MAT-1", "Yoga", "Mats"),
        ("MAT-2", "Yoga", "Mats"),
    ]:
        ProductFactory(sku=sku, name=f"Item {sku}", category=category, subcategory=subcategory)
    SegmentFactory(slug="runners", name="Runners", member_count=120)
    SegmentFactory(slug="yogis", name="Yogis", member_count=45)
    return version


def _errors(body: str) -> dict[str, str]:
    """The builder's error regions, by field: the text shown beside each one."""
    found = re.findall(r'<div id="errors-(\w+)" class="field-errors"[^>]*>(.*?)</div>', body)
    return {
        name: html.unescape(re.sub(r"<[^>]+>", " ", shown)).strip()
        for name, shown in found
        if shown.strip()
    }


def _nothing_written() -> bool:
    return not GenerationRun.objects.exists() and not Variant.objects.exists()


# --- who may use it ---


def test_anonymous_users_are_sent_to_log_in(client):
    for response in (client.get(NEW), client.get(ESTIMATE), client.post(NEW, {"prompt": "x"})):
        assert response.status_code == 302 and "/login/" in response["Location"]


def test_copywriters_may_not_build_estimate_or_start_runs(client, copywriter, shop):
    assert client.get(NEW).status_code == 403
    assert client.get(ESTIMATE, {"prompt": "pdp", "segments": "runners"}).status_code == 403
    response = client.post(NEW, {"prompt": "pdp", "segments": "runners", "confirm": "1"})
    assert response.status_code == 403 and _nothing_written()
    assert "Build a run" not in client.get(reverse("review:runs")).content.decode()


def test_a_lead_finds_the_builder_with_its_choices_and_counts(client, lead, shop):
    PromptFactory(slug="draft", name="Draft prompt")  # no version yet
    assert "Build a run" in client.get(reverse("review:runs")).content.decode()
    response = client.get(NEW)
    body = response.content.decode()
    assert response.status_code == 200
    assert "Product page (v" in body and "Draft prompt (no version yet)" in body
    assert ">Run (3)</option>" in body and ">Yoga (2)</option>" in body
    assert ">Mats (2)</option>" in body and ">Running Shoes (2)</option>" in body
    assert 'Runners <span class="muted">(120 members)</span>' in body
    assert "<b>5</b> products match" in body
    assert _errors(body) == {}  # an empty builder accuses nothing


def test_the_prompt_can_be_chosen_by_the_address(client, lead, shop):
    body = client.get(NEW, {"prompt": "pdp"}).content.decode()
    assert '<option value="pdp" selected>' in body


# --- the estimate follows the scope ---


def test_the_estimate_follows_the_segments_and_products_ticked(client, lead, shop):
    one = client.get(ESTIMATE, {"prompt": "pdp", "segments": ["runners"]}, headers=HX)
    body = one.content.decode()
    assert body.lstrip().startswith('<section id="estimate"')  # the target, then the rest
    assert "Estimate: 5 slots" in body

    two = client.get(ESTIMATE, {"prompt": "pdp", "segments": ["runners", "yogis"]}, headers=HX)
    assert "Estimate: 10 slots" in two.content.decode()

    yoga = client.get(
        ESTIMATE, {"prompt": "pdp", "segments": ["runners", "yogis"], "category": "Yoga"}
    ).content.decode()
    assert "Estimate: 4 slots" in yoga
    assert 'id="products-match" class="hint" aria-live="polite" hx-swap-oob="true"' in yoga
    assert "<b>2</b> products match" in yoga
    assert _nothing_written()


def test_the_estimate_shows_tokens_and_cost_that_grow_with_the_scope(client, lead, shop):
    def cost(**scope) -> Decimal:
        body = client.get(ESTIMATE, {"prompt": "pdp", **scope}).content.decode()
        return Decimal(re.search(r"completion tokens, \$([\d.,]+)", body).group(1))

    assert cost(segments=["runners", "yogis"]) > cost(segments=["runners"]) > 0


def test_subcategory_and_search_narrow_the_products(client, lead, shop):
    def estimate(**scope) -> str:
        return client.get(
            ESTIMATE, {"prompt": "pdp", "segments": "runners", **scope}
        ).content.decode()

    assert "Estimate: 2 slots" in estimate(subcategory="Running Shoes")
    assert "<b>1</b> product matches" in estimate(search="sock")  # by name or SKU
    assert "Estimate: 1 slot" in estimate(search="SOCK-1")
    assert "Estimate: 3 slots" in estimate(category="Run", search="")


def test_listed_skus_replace_the_filters(client, lead, shop):
    body = client.get(
        ESTIMATE,
        {"prompt": "pdp", "segments": "yogis", "category": "Run", "products": "MAT-1,\nSOCK-1"},
    ).content.decode()
    assert "Estimate: 2 slots" in body and "<b>2</b> products listed" in body


def test_slots_already_written_leave_the_estimate(client, lead, shop):
    from generation.models import Product, Segment
    from tests.factories import VariantFactory

    VariantFactory(
        prompt_version=shop,
        product=Product.objects.get(sku="MAT-1"),
        segment=Segment.objects.get(slug="yogis"),
    )
    body = client.get(ESTIMATE, {"prompt": "pdp", "segments": "yogis"}).content.decode()
    assert "Estimate: 4 slots" in body


def test_an_estimate_of_an_incomplete_scope_names_what_is_missing_beside_it(client, lead, shop):
    body = client.get(ESTIMATE, {"prompt": "pdp"}, headers=HX).content.decode()
    assert "Estimate:" not in body
    assert 'id="errors-segments" class="field-errors" hx-swap-oob="true"' in body
    assert _errors(body)["segments"] == "Tick at least one segment to write for"
    assert "prompt" not in _errors(body)  # a good field's region is emptied


def test_the_builder_page_asks_for_an_estimate_on_change_debounced(client, lead, shop):
    body = client.get(NEW).content.decode()
    form = re.search(r'<form id="run-builder"[^>]*>', body).group(0)
    assert f'hx-get="{ESTIMATE}"' in form and 'hx-target="#estimate"' in form
    assert 'hx-trigger="change delay:300ms, keyup delay:500ms"' in form
    assert 'hx-sync="this:replace"' in form
    assert 'hx-params="not csrfmiddlewaretoken"' in form  # no token in the URLs
    start = re.search(r"<button[^>]*>Start the run</button>", body).group(0)
    assert 'hx-sync="this:drop"' in start  # not in the estimates' group, which replaces


# --- starting ---


def test_a_lead_starts_a_run_over_the_chosen_scope_and_lands_on_its_page(
    client, lead, shop, offline_writer
):
    response = client.post(
        NEW,
        {
            "prompt": "pdp",
            "category": "Yoga",
            "segments": ["yogis", "runners"],
            "budget": "2.50",
            "confirm": "1",
        },
    )
    run = GenerationRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "review:run", args=[run.pk]
    )
    assert sorted(run.scope["products"]) == ["MAT-1", "MAT-2"]
    assert sorted(run.scope["segments"]) == ["runners", "yogis"]
    assert (run.total, run.budget, run.created_by) == (4, Decimal("2.50"), lead)
    assert run.estimated_prompt_tokens > 0


def test_over_htmx_a_started_run_redirects_the_browser(client, lead, shop, offline_writer):
    response = client.post(
        NEW, {"prompt": "pdp", "segments": "runners", "confirm": "1"}, headers=HX
    )
    run = GenerationRun.objects.get()
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("review:run", args=[run.pk])


def test_posting_without_confirm_only_estimates(client, lead, shop):
    """The page's Estimate button, for a browser without scripts: the whole page."""
    body = client.post(NEW, {"prompt": "pdp", "segments": "runners"}).content.decode()
    assert "Estimate: 5 slots" in body and "<h1>Build a run</h1>" in body
    assert _nothing_written()


def test_an_endpoint_that_cannot_be_reached_is_shown_and_nothing_is_queued(
    client, lead, shop, settings
):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    response = client.post(NEW, {"prompt": "pdp", "segments": "runners", "confirm": "1"})
    assert response.status_code == 200
    assert "Cannot reach the LLM endpoint" in _errors(response.content.decode())["__all__"]
    assert _nothing_written()


# --- bad input: named beside its field, nothing written ---


@pytest.mark.parametrize(
    ("scope", "field", "message"),
    [
        ({"segments": "runners", "category": "Garden"}, "products", "No product matches"),
        ({"segments": "runners", "search": "nothing-like-this"}, "products", "No product matches"),
        ({"category": "Run"}, "segments", "Tick at least one segment"),
        ({"segments": "runners", "products": "SHOE-1, NOPE-9\nNOPE-7"}, "products",
         "Unknown SKUs: NOPE-9, NOPE-7"),
        ({"segments": "runners", "budget": "0"}, "budget", "must be a positive number"),
        ({"segments": "runners", "budget": "-5"}, "budget", "must be a positive number"),
        ({"segments": "runners", "budget": "ten"}, "budget", "number of dollars, not 'ten'"),
        ({"segments": "runners", "budget": "NaN"}, "budget", "number of dollars, not 'NaN'"),
        ({"segments": "nobody-here"}, "segments", "Unknown segment 'nobody-here'"),
        ({"segments": "runners", "audience": "everyone"}, "audience", "segments or for customers"),
    ],
)  # fmt: skip
def test_bad_scope_is_named_beside_its_field_and_nothing_is_written(
    client, lead, shop, scope, field, message
):
    for headers in ({}, HX):
        response = client.post(NEW, {"prompt": "pdp", "confirm": "1", **scope}, headers=headers)
        assert response.status_code == 200
        errors = _errors(response.content.decode())
        assert message in errors.get(field, ""), errors
    estimate = client.get(ESTIMATE, {"prompt": "pdp", **scope}).content.decode()
    assert message in _errors(estimate).get(field, "") and "Estimate:" not in estimate
    assert _nothing_written()


def test_a_prompt_with_no_version_is_refused_beside_the_prompt(client, lead, shop):
    PromptFactory(slug="draft")
    response = client.post(NEW, {"prompt": "draft", "segments": "runners", "confirm": "1"})
    assert _errors(response.content.decode())["prompt"] == (
        "Prompt 'draft' has no version yet: save one in the studio first"
    )
    assert _nothing_written()


def test_an_unknown_or_missing_prompt_is_named(client, lead, shop):
    body = client.post(NEW, {"prompt": "nope", "segments": "runners", "confirm": "1"}).content
    assert _errors(body.decode())["prompt"] == "Unknown prompt 'nope'"
    body = client.post(NEW, {"segments": "runners", "confirm": "1"}).content
    assert _errors(body.decode())["prompt"] == "Choose a prompt"
    assert _nothing_written()


def test_a_run_over_an_empty_catalog_says_to_import_one(client, lead):
    PromptVersionFactory(prompt__slug="pdp")
    SegmentFactory(slug="runners")
    body = client.post(NEW, {"prompt": "pdp", "segments": "runners", "confirm": "1"}).content
    assert "import a catalog first" in _errors(body.decode())["products"]
    assert _nothing_written()


def test_a_budget_for_a_model_without_a_price_is_refused_by_the_service_beside_the_budget(
    client, lead, shop, offline_writer
):
    PromptVersionFactory(prompt__slug="priceless", model="model-without-a-price")
    response = client.post(
        NEW, {"prompt": "priceless", "segments": "runners", "budget": "5", "confirm": "1"}
    )
    assert "A budget needs a price" in _errors(response.content.decode())["budget"]
    assert _nothing_written()


def test_the_form_keeps_what_was_chosen_after_a_refusal(client, lead, shop):
    body = client.post(
        NEW,
        {"prompt": "pdp", "segments": ["runners", "yogis"], "category": "Yoga", "budget": "-1",
         "confirm": "1"},
    ).content.decode()  # fmt: skip
    assert '<option value="pdp" selected>' in body and '<option value="Yoga" selected>' in body
    assert body.count("checked>") >= 3  # both segments and the audience
    assert 'name="budget" value="-1"' in body


def test_submitted_text_is_escaped(client, lead, shop):
    body = client.post(
        NEW, {"prompt": "pdp", "segments": "runners", "products": "<script>x</script>"}
    ).content.decode()
    assert "<script>x</script>" not in body and "&lt;script&gt;x&lt;/script&gt;" in body


# --- one-to-one messages ---


@pytest.fixture
def customers():
    return [
        CustomerFactory(external_id="C-1", attributes={"value_tier": "high"}),
        CustomerFactory(external_id="C-2", attributes={"value_tier": "high"}, language="de"),
        CustomerFactory(external_id="C-3", attributes={"value_tier": "low"}),
    ]


def _messages(**fields) -> dict:
    return {"prompt": "pdp", "audience": "customers", "product": "SHOE-1",
            "purpose": "back in stock", **fields}  # fmt: skip


def test_a_lead_estimates_and_starts_messages_for_listed_customers(
    client, lead, shop, customers, django_capture_on_commit_callbacks
):
    body = client.get(ESTIMATE, _messages(customers="C-1\nC-2")).content.decode()
    assert "Estimate: 2 slots in 2 languages" in body
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(NEW, _messages(customers="C-1, C-2", confirm="1"))
    run = GenerationRun.objects.get()
    assert response["Location"] == reverse("review:run", args=[run.pk])
    assert run.scope["purpose"] == "back in stock" and run.total == 2
    written = Variant.objects.filter(run=run)
    assert sorted(written.values_list("customer__external_id", flat=True)) == ["C-1", "C-2"]
    assert {v.product.sku for v in written} == {"SHOE-1"}


def test_a_lead_starts_messages_for_a_segments_members(
    client, lead, shop, customers, django_capture_on_commit_callbacks
):
    SegmentFactory(slug="high", name="High value", rules={"value_tier": "high"}, member_count=2)
    body = client.get(ESTIMATE, _messages(customer_segment="high")).content.decode()
    assert "Estimate: 2 slots" in body
    with django_capture_on_commit_callbacks(execute=False):
        client.post(NEW, _messages(customer_segment="high", confirm="1"))
    run = GenerationRun.objects.get()
    assert run.scope["segment"] == "high"
    customers_written = Variant.objects.filter(run=run).values_list(
        "customer__external_id", flat=True
    )
    assert sorted(customers_written) == ["C-1", "C-2"]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"customers": "C-1, C-404"}, "customers", "Unknown customer: C-404"),
        ({"customers": ""}, "customers", "List the customers"),
        ({"customers": "C-1", "customer_segment": "runners"}, "customers", "not both"),
        ({"customers": "C-1", "product": "NOPE"}, "product", "Unknown SKU: NOPE"),
        ({"customers": "C-1", "product": ""}, "product", "Give the SKU"),
        ({"customers": "C-1", "purpose": "  "}, "purpose", "Say what the message is for"),
        ({"customers": "C-1", "budget": "5"}, "budget", "take no budget yet"),
        ({"customers": "C-1", "budget": "-5"}, "budget", "positive number"),
    ],
)
def test_bad_one_to_one_input_is_named_beside_its_field(
    client, lead, shop, customers, fields, field, message
):
    response = client.post(NEW, _messages(confirm="1", **fields))
    assert message in _errors(response.content.decode()).get(field, "")
    assert _nothing_written()


def test_messages_for_a_segment_without_members_are_refused(client, lead, shop, customers):
    SegmentFactory(slug="empty", name="Empty", member_count=0)
    response = client.post(NEW, _messages(customer_segment="empty", confirm="1"))
    assert "has no members" in _errors(response.content.decode())["customer_segment"]
    assert _nothing_written()


def test_the_builder_and_its_estimate_cost_the_same_queries_for_any_catalog(
    client, lead, shop, django_assert_max_num_queries
):
    """Categories, subcategories and segments are GROUP BYs and lists, never a query a
    row; an estimate reads the products, the segments and the written slots once, and
    renders a fixed sample of slots."""
    SegmentFactory(slug="swimmers")
    # 15 slots: past the estimate's sample of 12, which it renders whatever the scope.
    scope = {"prompt": "pdp", "segments": ["runners", "yogis", "swimmers"]}
    with django_assert_max_num_queries(100) as page_small:
        client.get(NEW)
    with django_assert_max_num_queries(100) as estimate_small:
        client.get(ESTIMATE, scope, headers=HX)
    ProductFactory.create_batch(30, category="Swim", subcategory="Goggles")
    SegmentFactory.create_batch(20)
    with django_assert_max_num_queries(len(page_small.captured_queries)):
        client.get(NEW)
    with django_assert_max_num_queries(len(estimate_small.captured_queries)):
        client.get(ESTIMATE, {**scope, "category": ""}, headers=HX)
    assert len(page_small.captured_queries) <= 10
