"""The catalog pages: products (copywriters and leads) and customers (leads), their
search and paging by key, the masking of personal attributes, erasure."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from generation.models import Customer, CustomerSource, PersonalAttribute, Product, Variant
from review import delivery
from tests.factories import (
    CustomerFactory,
    ProductFactory,
    PromptVersionFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

PRODUCTS = reverse("review:products")
CUSTOMERS = reverse("review:customers")
ROLES = ("anonymous", "copywriter", "lead")


def _as(client, role: str):
    if role != "anonymous":
        groups = {"copywriter": ["copywriter"], "lead": ["marketing lead"]}[role]
        client.force_login(UserFactory(username=role, groups=groups))
    return client


@pytest.fixture
def copywriter(client):
    return _as(client, "copywriter")


@pytest.fixture
def lead(client):
    return _as(client, "lead")


def _refused(response) -> bool:
    to_login = response.status_code == 302 and "/login/" in response["Location"]
    return to_login or response.status_code == 403


# --- who may see what ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_products_are_for_copywriters_and_leads(client, role):
    product = ProductFactory(sku="RUN-1")
    _as(client, role)
    for url in (PRODUCTS, reverse("review:product", args=[product.sku])):
        response = client.get(url)
        if role == "anonymous":
            assert _refused(response), url
        else:
            assert response.status_code == 200 and b"RUN-1" in response.content, url


@pytest.mark.parametrize("role", ROLES)
def test_customers_are_for_leads_only(client, role):
    customer = CustomerFactory(external_id="C-1")
    _as(client, role)
    urls = [
        CUSTOMERS,
        reverse("review:customer", args=[customer.pk]),
        reverse("review:customer-erase", args=[customer.pk]),
    ]
    for url in urls:
        response = client.get(url)
        if role == "lead":
            assert response.status_code == 200 and b"C-1" in response.content, url
        else:
            assert _refused(response), url
    refused = client.post(urls[2], {"confirm": "C-1"})
    assert (role == "lead") != _refused(refused)
    assert Customer.objects.filter(pk=customer.pk).exists() == (role != "lead")


@pytest.mark.parametrize("role", ROLES)
def test_the_menu_links_products_for_reviewers_and_customers_for_leads(client, role):
    _as(client, role)
    page = client.get(reverse("review:queue"), follow=True).content.decode()
    assert (f'href="{PRODUCTS}"' in page) == (role != "anonymous")
    assert (f'href="{CUSTOMERS}"' in page) == (role == "lead")


# --- products: search and paging ----------------------------------------------------------


def _skus(response) -> list[str]:
    return [p.sku for p in response.context["rows"]]


def test_products_are_searched_by_the_start_of_their_sku_or_words_of_their_name(copywriter):
    ProductFactory(sku="RUN-100", name="AeroStride Runner")
    ProductFactory(sku="RUN-200", name="Trail Jacket")
    ProductFactory(sku="HIKE-1", name="Summit Runner Boot")
    ProductFactory(sku="XRUN-1", name="Sock")

    assert _skus(copywriter.get(PRODUCTS, {"q": "RUN-"})) == ["RUN-100", "RUN-200"]
    assert _skus(copywriter.get(PRODUCTS, {"q": "run-1"})) == ["RUN-100"]  # SKUs in capitals
    assert _skus(copywriter.get(PRODUCTS, {"q": "runner"})) == ["HIKE-1", "RUN-100"]
    empty = copywriter.get(PRODUCTS, {"q": "nothing like it"})
    assert _skus(empty) == [] and "or name holds it" in empty.content.decode()


def test_a_typed_search_swaps_the_list_alone_and_tidies_the_address(copywriter):
    ProductFactory(sku="RUN-1")
    response = copywriter.get(PRODUCTS, {"q": "RUN", "after": ""}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"<html" not in response.content and b'id="products"' in response.content
    assert response["HX-Push-Url"] == f"{PRODUCTS}?q=RUN"
    assert "HX-Request" in response["Vary"]


def test_products_page_by_key_forward_and_back_in_the_same_queries(
    copywriter, django_assert_num_queries
):
    Product.objects.bulk_create(
        [Product(sku=f"P-{i:03d}", name=f"Shoe {i}", description="x") for i in range(120)]
    )
    first = copywriter.get(PRODUCTS)
    assert _skus(first) == [f"P-{i:03d}" for i in range(50)]
    assert first.context["number"] == 1 and first.context["previous_qs"] == ""

    second = copywriter.get(f"{PRODUCTS}?{first.context['next_qs']}")
    assert _skus(second) == [f"P-{i:03d}" for i in range(50, 100)]
    assert second.context["number"] == 2
    third = copywriter.get(f"{PRODUCTS}?{second.context['next_qs']}")
    assert _skus(third) == [f"P-{i:03d}" for i in range(100, 120)]
    assert third.context["next_qs"] == "" and "Page 3" in third.content.decode()

    back = copywriter.get(f"{PRODUCTS}?{third.context['previous_qs']}")
    assert _skus(back) == _skus(second) and back.context["number"] == 2
    again = copywriter.get(f"{PRODUCTS}?{back.context['previous_qs']}")
    assert _skus(again) == _skus(first) and again.context["number"] == 1

    # One query for the rows, whichever page: the session, the user, the permission
    # check and the menu's groups are the rest.
    with django_assert_num_queries(5) as captured_first:
        copywriter.get(PRODUCTS)
    with django_assert_num_queries(5) as captured_deep:
        copywriter.get(f"{PRODUCTS}?{second.context['next_qs']}")
    rows = [c["sql"] for c in captured_deep.captured_queries if "generation_product" in c["sql"]]
    assert len(rows) == 1 and "OFFSET" not in rows[0] and "COUNT" not in rows[0].upper()
    assert len(captured_first.captured_queries) == len(captured_deep.captured_queries)


def test_a_search_pages_too_and_its_links_keep_it(copywriter):
    Product.objects.bulk_create(
        [Product(sku=f"A-{i:03d}", name="Shoe", description="x") for i in range(60)]
        + [Product(sku=f"B-{i:03d}", name="Sock", description="x") for i in range(60)]
    )
    first = copywriter.get(PRODUCTS, {"q": "sock"})
    assert len(first.context["rows"]) == 50 and "q=sock" in first.context["next_qs"]
    second = copywriter.get(f"{PRODUCTS}?{first.context['next_qs']}")
    assert _skus(second) == [f"B-{i:03d}" for i in range(50, 60)]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=two&after=P-001", "Page: Enter a whole number."),
        ("page=0&after=P-001", "Page: Ensure this value is greater than or equal to 1."),
        ("page=%D9%A2&after=P-001", "Page: Enter a whole number."),
        ("after=P-001&before=P-003", "Before: Give the key a page starts after or ends before"),
        (f"q={'x' * 101}", "Search: Ensure this value has at most 100 characters"),
    ],
)
def test_a_bad_paging_value_is_named_and_left_out(copywriter, query, message):
    Product.objects.bulk_create(
        [Product(sku=f"P-{i:03d}", name="Shoe", description="x") for i in range(3)]
    )
    response = copywriter.get(f"{PRODUCTS}?{query}")
    assert response.status_code == 400
    assert message in response.content.decode()
    assert response.context["rows"]  # the page still lists what it can


def test_an_unknown_sku_is_a_404_that_says_so(copywriter):
    ProductFactory(sku="RUN-1")
    response = copywriter.get(reverse("review:product", args=["NO-SUCH<b>"]))
    assert response.status_code == 404
    page = response.content.decode()
    assert "No product with SKU &#x27;NO-SUCH&lt;b&gt;&#x27;." in page and "<b>" not in page
    assert "RUN-1" in page  # the list, to find it by


def test_a_sku_with_a_slash_has_a_page(copywriter):
    ProductFactory(sku="TEE/RED/M", name="Tee")
    url = reverse("review:product", args=["TEE/RED/M"])
    assert copywriter.get(url).status_code == 200
    assert f'href="{url}"' in copywriter.get(PRODUCTS).content.decode()


# --- a product's page ---------------------------------------------------------------------


def test_a_product_page_shows_base_copy_translations_variants_and_what_is_live(
    copywriter, redis_service
):
    product = ProductFactory(
        sku="RUN-1",
        description="The base copy.",
        translations={"de": {"name": "Läufer", "description": "Der Grundtext."}},
    )
    version = PromptVersionFactory()
    prompt = version.prompt
    north, south, _third = SegmentFactory(), SegmentFactory(), SegmentFactory()
    live = VariantFactory(
        prompt_version=version, product=product, segment=north, status="published",
        text="Live for the north.", language="en",
    )  # fmt: skip
    german = VariantFactory(
        prompt_version=version, product=product, segment=north, status="published",
        text="Live auf Deutsch.", language="de",
    )  # fmt: skip
    VariantFactory(
        prompt_version=version, product=product, segment=south, status="in_review",
        text="Still in review.",
    )  # fmt: skip
    customer = CustomerFactory(external_id="C-77")
    VariantFactory(
        prompt_version=version, product=product, segment=None, customer=customer,
        status="published", purpose="Thank them for their order", text="Hi there.",
    )  # fmt: skip

    response = copywriter.get(reverse("review:product", args=["RUN-1"]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "The base copy." in page and "Der Grundtext." in page and "Läufer" in page
    rows = response.context["live"]
    assert [(r["segment"], r["variant"]) for r in rows] == [(north, live)]
    assert rows[0]["others"] == [german]
    assert "Live for the north." in page and "Still in review." not in page
    assert "The other 2 segments get the base copy." in page
    # What the page says is live is what the live endpoint serves.
    for segment in (north, south):
        served = delivery.live_copy(
            prompt_slug=prompt.slug, skus=["RUN-1"], segment_slug=segment.slug
        )
        shown = next((r["text"] for r in rows if r["segment"] == segment), product.description)
        assert served[0].text == shown
    by_status = {
        r["status"]: (r["segments"], r["customers"]) for r in response.context["by_status"]
    }
    assert by_status == {"published": (2, 1), "in_review": (1, 0)}
    assert "C-77" in page and "Thank them for their order" in page
    # A copywriter reads the message, but the customer's page is a lead's.
    assert reverse("review:customer", args=[customer.pk]) not in page


def test_a_lead_is_linked_from_a_message_to_its_customer(lead):
    customer = CustomerFactory()
    variant = VariantFactory(segment=None, customer=customer, purpose="Welcome")
    page = lead.get(reverse("review:product", args=[variant.product.sku])).content.decode()
    assert reverse("review:customer", args=[customer.pk]) in page


def test_generated_text_and_catalog_data_are_escaped(copywriter):
    product = ProductFactory(
        sku="X-1", name="<script>alert(1)</script>", description="<img src=x onerror=alert(2)>"
    )
    VariantFactory(product=product, status="published", text="<b>bold</b>")
    page = copywriter.get(reverse("review:product", args=["X-1"])).content.decode()
    assert "<script>alert(1)" not in page and "<img src=x" not in page and "<b>bold" not in page
    listing = copywriter.get(PRODUCTS).content.decode()
    assert "<script>alert(1)" not in listing


def test_a_product_page_costs_the_same_queries_however_many_variants(copywriter):
    product = ProductFactory(sku="RUN-1")
    VariantFactory(product=product, status="published")
    url = reverse("review:product", args=["RUN-1"])
    copywriter.get(url)
    with CaptureQueriesContext(connection) as few:
        copywriter.get(url)
    for _ in range(5):
        VariantFactory(product=product, status="published")
        VariantFactory(product=product, segment=None, customer=CustomerFactory())
    with CaptureQueriesContext(connection) as many:
        copywriter.get(url)
    assert len(many.captured_queries) == len(few.captured_queries)


# --- customers ----------------------------------------------------------------------------


def test_customers_are_searched_by_the_start_of_their_external_id(lead):
    for external_id in ("C-100", "C-101", "C-200", "XC-100"):
        CustomerFactory(external_id=external_id)
    found = lead.get(CUSTOMERS, {"q": "C-10"})
    assert [c.external_id for c in found.context["rows"]] == ["C-100", "C-101"]
    assert lead.get(CUSTOMERS, {"q": "nobody"}).context["rows"] == []


def test_customers_page_by_key(lead, django_assert_num_queries):
    Customer.objects.bulk_create([Customer(external_id=f"C-{i:04d}") for i in range(130)])
    first = lead.get(CUSTOMERS)
    second = lead.get(f"{CUSTOMERS}?{first.context['next_qs']}")
    third = lead.get(f"{CUSTOMERS}?{second.context['next_qs']}")
    assert [c.external_id for c in third.context["rows"]] == [f"C-{i:04d}" for i in range(100, 130)]
    with django_assert_num_queries(5):
        lead.get(f"{CUSTOMERS}?{second.context['next_qs']}")
    with django_assert_num_queries(5):
        lead.get(CUSTOMERS)


def test_a_bad_customer_page_number_is_named(lead):
    CustomerFactory(external_id="C-1")
    response = lead.get(CUSTOMERS, {"page": "abc", "after": "C-0"})
    assert (
        response.status_code == 400 and "Page: Enter a whole number." in response.content.decode()
    )


def test_an_unknown_customer_is_a_404_that_says_so(lead):
    response = lead.get(reverse("review:customer", args=[987654]))
    assert response.status_code == 404 and "No customer #987654." in response.content.decode()
    erase = lead.post(reverse("review:customer-erase", args=[987654]), {"confirm": "x"})
    assert erase.status_code == 404


def test_personal_attributes_are_marked_and_their_values_never_shown(lead):
    CustomerSource.objects.create(
        slug="crm", name="CRM",
        mapping={"columns": {"Loyalty": {"attribute": "loyalty_card", "personal": True}}},
    )  # fmt: skip
    PersonalAttribute.objects.create(name="contact", reason="holds e-mail addresses")
    customer = CustomerFactory(
        external_id="C-9",
        attributes={
            "email": "ada@example.com",  # a known personal name
            "phone_number": "+44 20 7946 0958",  # personal by its words
            "loyalty_card": "LC-55501",  # a source marks it personal
            "contact": "ada.contact@example.org",  # an import found personal values
            "value_tier": "high",
        },
    )
    response = lead.get(reverse("review:customer", args=[customer.pk]))
    page = response.content.decode()
    for secret in ("ada@example.com", "7946", "LC-55501", "ada.contact"):
        assert secret not in page
    marked = {a["name"]: a["personal"] for a in response.context["attributes"]}
    assert marked == {
        "contact": True, "email": True, "loyalty_card": True, "phone_number": True,
        "value_tier": False,
    }  # fmt: skip
    assert "high" in page and page.count('class="personal"') == 4


def test_a_customer_page_shows_their_segments_and_messages(lead):
    broad = SegmentFactory(slug="high", name="High value", rules={"value_tier": "high"})
    narrow = SegmentFactory(
        slug="high-north", name="High north", rules={"value_tier": "high", "region": "north"}
    )
    SegmentFactory(slug="low", name="Low value", rules={"value_tier": "low"})
    customer = CustomerFactory(attributes={"value_tier": "high", "region": "north"})
    message = VariantFactory(segment=None, customer=customer, purpose="Birthday", text="Hi!")
    VariantFactory(segment=None, customer=CustomerFactory(), purpose="Someone else's")

    response = lead.get(reverse("review:customer", args=[customer.pk]))
    page = response.content.decode()
    assert response.context["segments"] == [broad, narrow]
    assert response.context["served"] == narrow  # the most specific, as delivery serves
    assert "Low value" not in page
    assert response.context["messages_written"] == [message]
    assert "Birthday" in page and "Someone else" not in page


# --- erasure ------------------------------------------------------------------------------


def test_erasing_asks_first_then_erases_the_customer_and_nothing_else(lead):
    customer = CustomerFactory(external_id="C-ERASE")
    other = CustomerFactory(external_id="C-KEEP")
    segment_variant = VariantFactory(status="published")
    theirs = VariantFactory(segment=None, customer=customer, product=segment_variant.product)
    kept = VariantFactory(segment=None, customer=other, product=segment_variant.product)
    url = reverse("review:customer-erase", args=[customer.pk])

    confirm = lead.get(url)
    assert confirm.status_code == 200
    assert (
        "Erase C-ERASE?" in confirm.content.decode()
        and 'name="confirm"' in confirm.content.decode()
    )
    assert Customer.objects.filter(pk=customer.pk).exists()  # a GET erases nothing

    response = lead.post(url, {"confirm": "C-ERASE"})
    assert response.status_code == 302 and response["Location"] == CUSTOMERS
    assert not Customer.objects.filter(pk=customer.pk).exists()
    assert not Variant.objects.filter(pk=theirs.pk).exists()
    assert set(Customer.objects.values_list("external_id", flat=True)) == {"C-KEEP"}
    assert set(Variant.objects.values_list("pk", flat=True)) == {segment_variant.pk, kept.pk}
    listing = lead.get(CUSTOMERS).content.decode()
    assert "Erased the customer, their attributes and 1 one-to-one message" in listing
    assert "C-ERASE" not in listing


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "Type the customer&#x27;s external id to confirm the erasure."),
        ({"confirm": "C-OTHER"}, "That is not this customer&#x27;s external id"),
        ({"confirm": "c-erase"}, "That is not this customer&#x27;s external id"),
    ],
)
def test_erasing_without_the_right_confirmation_erases_nothing(lead, data, message):
    customer = CustomerFactory(external_id="C-ERASE")
    VariantFactory(segment=None, customer=customer)
    response = lead.post(reverse("review:customer-erase", args=[customer.pk]), data)
    assert response.status_code == 400 and message in response.content.decode()
    assert Customer.objects.filter(pk=customer.pk).exists()
    assert Variant.objects.filter(customer=customer).count() == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL index")
def test_a_name_search_can_use_the_trigram_index():
    """The index of migration generation 0013 is on the very expression the search
    writes: were they to differ, PostgreSQL would read every name."""
    from review.views.catalog import product_search

    ProductFactory.create_batch(3)
    search = Product.objects.filter(product_search("runner")).order_by()
    sql, params = search.query.sql_with_params()
    with connection.cursor() as cursor:
        # A few rows are read fastest whole: make the planner show what else it could do.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "generation_product_name_trgm" in plan, plan
