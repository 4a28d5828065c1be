"""The catalog and the audience, to look at: the products (their base copy, their
variants, what is live for each segment) for copywriters and marketing leads, and the
customers (their attributes, segments and messages, and erasing one) for leads only,
as the segment builder and imports are: a directory of the whole audience is more
than reviewing needs.

Both lists stay fast however long the tables grow: a page is found by its key (the
SKU, the external id: unique, indexed), never by an offset, and no list counts the
whole table. A page costs one query whether it is the first or the thousandth.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q, QuerySet
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import push_url

from generation import prompting, services
from generation.models import Customer, Product, Segment, Variant, attribute_text
from review import delivery
from review import queue as q
from review.forms import CustomerEraseForm, CustomerSearchForm, ListPageForm, ProductSearchForm
from review.permissions import require_lead, require_reviewer
from review.views import HtmxHttpRequest, partial

PAGE_SIZE = 50
# A product page lists this many of its segment variants and of its one-to-one
# messages (newest first), and a customer page this many of their messages; the queue,
# filtered by the product, has the rest.
VARIANTS_LISTED = 100
MESSAGES_LISTED = 50
# What a personal attribute's value shows instead of itself.
MASK = "•••••"


# --- paging by key ------------------------------------------------------------------------


@dataclass
class KeyPage:
    """One page of a list in the order of a unique key, and the keys of its neighbours."""

    rows: list[Any]
    next_key: str | None
    previous_key: str | None
    first: bool


def key_page(
    qs: QuerySet[Any], key: str, *, after: str = "", before: str = "", size: int = PAGE_SIZE
) -> KeyPage:
    """The `size` rows after the key value `after`, before `before`, or the first ones:
    one query (LIMIT size + 1, to know whether more follow) on the key's index, as fast
    at the thousandth page as at the first.

    Going back to the start after rows were added before it shows the first page
    instead of a short one (a second query, only then)."""
    if before:
        rows = list(qs.filter(**{f"{key}__lt": before}).order_by(f"-{key}")[: size + 1])
        if len(rows) < size:
            return key_page(qs, key, size=size)
        has_previous = len(rows) > size
        rows = rows[:size][::-1]
        return KeyPage(
            rows,
            next_key=getattr(rows[-1], key),
            previous_key=getattr(rows[0], key) if has_previous else None,
            first=not has_previous,
        )
    if after:
        qs = qs.filter(**{f"{key}__gt": after})
    rows = list(qs.order_by(key)[: size + 1])
    has_next = len(rows) > size
    rows = rows[:size]
    return KeyPage(
        rows,
        next_key=getattr(rows[-1], key) if has_next else None,
        previous_key=getattr(rows[0], key) if after and rows else None,
        first=not after,
    )


def _list_context(form: ListPageForm, qs: QuerySet[Any], key: str) -> dict[str, Any]:
    """A list page's rows, pager links and the form's errors (invalid values are left
    out: the page shows the rows as if they had not been sent, and says why)."""
    values = form.values()
    page = key_page(qs, key, after=values["after"], before=values["before"])
    number = 1 if page.first else max(values["page"], 2)
    search = {"q": values["q"]} if values["q"] else {}
    return {
        "form": form,
        "q": values["q"],
        "errors": form.messages(),
        "page": page,
        "number": number,
        "rows": page.rows,
        "qs": q.querystring(search),
        "page_qs": q.querystring(
            search,
            after=values["after"] or None,
            before=values["before"] or None,
            page=number if number > 1 else None,
        ),
        "next_qs": (
            q.querystring(search, after=page.next_key, page=number + 1) if page.next_key else ""
        ),
        "previous_qs": (
            q.querystring(search, before=page.previous_key, page=number - 1)
            if page.previous_key
            else ""
        ),
    }


def _list_response(
    request: HtmxHttpRequest, template: str, url: str, context: dict[str, Any], status: int
) -> HttpResponse:
    """The whole page, or (HTMX: a search typed, a pager link) the list alone, with the
    page's tidy address for the address bar."""
    if not partial(request):
        return render(request, template, context, status=status)
    name = template.removeprefix("review/").removesuffix(".html")
    response = render(request, f"{template}#{name}", context, status=status)
    return push_url(response, f"{url}?{context['page_qs']}" if context["page_qs"] else url)


# --- products -----------------------------------------------------------------------------


def product_search(term: str) -> Q:
    """Products whose SKU starts with `term` (as typed, or in capitals: SKUs mostly are)
    or whose name holds it, in any case. A SKU prefix is read from the SKU's index."""
    return Q(sku__startswith=term) | Q(sku__startswith=term.upper()) | Q(name__icontains=term)


def _products_page(
    request: HtmxHttpRequest, *, missing: str = "", status: int = 200
) -> HttpResponse:
    form = ProductSearchForm(request.GET)
    products = Product.objects.only("sku", "name", "category", "subcategory")
    values = form.values()
    if values["q"]:
        products = products.filter(product_search(values["q"]))
    context = _list_context(form, products, "sku")
    if missing:
        context["errors"] = [missing, *context["errors"]]
    elif context["errors"]:
        status = 400
    return _list_response(
        request, "review/products.html", reverse("review:products"), context, status
    )


@login_required
@require_GET
@vary_on_headers("HX-Request")
def products(request: HtmxHttpRequest) -> HttpResponse:
    require_reviewer(request)
    return _products_page(request)


def _live_now(product: Product) -> tuple[list[dict[str, Any]], int]:
    """What each segment is served of this product now, by prompt, for a reader who
    asks for no language (the prompt's default language), as the live endpoint
    chooses it (review.delivery's own language choice), from one query of the
    product's published segment variants; and how many segments there are. A
    segment without a row is served the base copy."""
    slots: dict[tuple[int, int], dict[str, Variant]] = defaultdict(dict)
    for variant in (
        Variant.objects.published()
        .filter(product=product, segment__isnull=False)
        .select_related("prompt_version__prompt", "segment")
        .order_by("prompt__slug", "segment__slug", "language", "published", "id")
    ):
        assert variant.segment_id is not None  # filtered above
        slots[(variant.prompt_id, variant.segment_id)][variant.language] = variant
    rows = []
    for by_language in slots.values():
        one = next(iter(by_language.values()))
        prompt = one.prompt_version.prompt  # the variant's prompt, joined once
        copy, language, _reason, fallback, text = delivery._choose_language(
            default=prompt.default_language,
            wanted=[],
            live={
                tag: delivery._Copy(v.pk, v.prompt_version.number, v.text)
                for tag, v in by_language.items()
            },
            translations=product.translations or {},
            description=product.description,
        )
        served = next(v for v in by_language.values() if v.pk == copy.variant_id) if copy else None
        rows.append(
            {
                "prompt": prompt,
                "segment": one.segment,
                "variant": served,
                "text": text,
                "language": language,
                "fallback": fallback,
                "others": sorted(
                    (v for v in by_language.values() if v is not served),
                    key=lambda v: v.language,
                ),
            }
        )
    return rows, Segment.objects.count()


def _translations(product: Product) -> list[dict[str, str]]:
    found = []
    for tag, copy in sorted((product.translations or {}).items()):
        if isinstance(copy, dict):
            found.append(
                {
                    "language": tag,
                    "name": str(copy.get("name") or ""),
                    "description": str(copy.get("description") or ""),
                }
            )
    return found


@login_required
@require_GET
def product_detail(request: HtmxHttpRequest, sku: str) -> HttpResponse:
    """One product: its base copy and translations, what is live for each segment now,
    its variants by status (segment variants and one-to-one messages apart)."""
    require_reviewer(request)
    product = Product.objects.filter(sku=sku).first()
    if product is None:
        return _products_page(request, missing=f"No product with SKU '{sku}'.", status=404)
    variants = Variant.objects.filter(product=product)
    counts = {
        row["status"]: row
        for row in variants.order_by()
        .values("status")
        .annotate(
            segments=Count("id", filter=Q(segment__isnull=False)),
            customers=Count("id", filter=Q(customer__isnull=False)),
        )
    }
    by_status = [
        {
            "status": status,
            "label": label,
            "segments": counts.get(status, {}).get("segments", 0),
            "customers": counts.get(status, {}).get("customers", 0),
        }
        for status, label in Variant.Status.choices
        if status in counts
    ]
    live, segment_count = _live_now(product)
    queue = reverse("review:queue")
    return render(
        request,
        "review/product.html",
        {
            "product": product,
            "translations": _translations(product),
            "attributes": sorted((product.attributes or {}).items()),
            "by_status": by_status,
            "live": live,
            "segment_count": segment_count,
            "base_only": segment_count - len({row["segment"].pk for row in live}),
            "segment_variants": list(
                variants.filter(segment__isnull=False)
                .select_related("prompt_version__prompt", "segment")
                .order_by("-created", "-id")[:VARIANTS_LISTED]
            ),
            "customer_variants": list(
                variants.filter(customer__isnull=False)
                .select_related("prompt_version__prompt", "customer")
                .order_by("-created", "-id")[:MESSAGES_LISTED]
            ),
            "listed": {"segments": VARIANTS_LISTED, "customers": MESSAGES_LISTED},
            "queue_qs": f"{queue}?{q.querystring({'product': product.sku, 'language': q.ALL})}",
        },
    )


# --- customers ----------------------------------------------------------------------------


def _customers_page(
    request: HtmxHttpRequest, *, missing: str = "", status: int = 200
) -> HttpResponse:
    form = CustomerSearchForm(request.GET)
    customers = Customer.objects.only("external_id", "language", "updated")
    values = form.values()
    if values["q"]:
        # A prefix, as typed: external ids are compared exactly (the unique index).
        customers = customers.filter(external_id__startswith=values["q"])
    context = _list_context(form, customers, "external_id")
    if missing:
        context["errors"] = [missing, *context["errors"]]
    elif context["errors"]:
        status = 400
    return _list_response(
        request, "review/customers.html", reverse("review:customers"), context, status
    )


@login_required
@require_GET
@vary_on_headers("HX-Request")
def customers(request: HtmxHttpRequest) -> HttpResponse:
    require_lead(request)
    return _customers_page(request)


def _customer(pk: int) -> Customer | None:
    return Customer.objects.filter(pk=pk).first()


def _attributes(customer: Customer) -> list[dict[str, Any]]:
    """The customer's attributes, each marked personal or not. A personal one's value
    never reaches the template: prompts never send it (prompting.personal_attributes),
    and the page shows a mask in its place."""
    personal = prompting.personal_attributes()
    rows = []
    for name, value in sorted((customer.attributes or {}).items()):
        secret = name in personal
        rows.append(
            {"name": name, "personal": secret, "value": MASK if secret else attribute_text(value)}
        )
    return rows


def _segments(customer: Customer) -> tuple[list[Segment], Segment | None]:
    """Every segment whose rules the customer meets, and the one the live endpoint
    serves them (the most specific: delivery.segment_for)."""
    segments = list(Segment.objects.only("id", "slug", "name", "rules", "member_count"))
    attributes = customer.segment_attributes()
    member_of = [s for s in segments if s.rules and s.matches(attributes)]
    return member_of, delivery.segment_for(attributes, segments)


@login_required
@require_GET
def customer_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One customer: attributes (personal ones masked), segments, and the one-to-one
    messages written for them."""
    require_lead(request)
    customer = _customer(pk)
    if customer is None:
        return _customers_page(request, missing=f"No customer #{pk}.", status=404)
    member_of, served = _segments(customer)
    written = list(
        Variant.objects.filter(customer=customer)
        .select_related("product", "prompt_version__prompt")
        .order_by("-created", "-id")[: MESSAGES_LISTED + 1]
    )
    return render(
        request,
        "review/customer.html",
        {
            "customer": customer,
            "attributes": _attributes(customer),
            "segments": member_of,
            "served": served,
            "messages_written": written[:MESSAGES_LISTED],
            "more_messages": len(written) > MESSAGES_LISTED,
            "listed": MESSAGES_LISTED,
        },
    )


def _erase_page(
    request: HtmxHttpRequest, customer: Customer, form: CustomerEraseForm, *, status: int = 200
) -> HttpResponse:
    return render(
        request,
        "review/customer_erase.html",
        {
            "customer": customer,
            "form": form,
            "message_count": Variant.objects.filter(customer=customer).count(),
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def customer_erase(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET: what erasing the customer removes, and a form to confirm it by typing their
    external id. POST: erase them (generation.services.customer_erase: the customer,
    their attributes, every one-to-one message written for them), then the list."""
    require_lead(request)
    customer = _customer(pk)
    if customer is None:
        return _customers_page(request, missing=f"No customer #{pk}.", status=404)
    if request.method == "GET":
        return _erase_page(request, customer, CustomerEraseForm(external_id=customer.external_id))
    form = CustomerEraseForm(request.POST, external_id=customer.external_id)
    if not form.is_valid():
        return _erase_page(request, customer, form, status=400)
    try:
        removed = services.customer_erase(external_id=customer.external_id)
    except services.CustomerNotFound:
        removed = {"customer": 0, "variants": 0}  # erased by someone else meanwhile
    # The message names no one: the erased id is personal data.
    count = removed["variants"]
    messages.success(
        request,
        f"Erased the customer, their attributes and {count} one-to-one "
        f"message{'s' if count != 1 else ''} written for them.",
    )
    return redirect("review:customers")
