"""Server time and query count of the product and customer list pages, at 100,000
products and 1,000,000 customers, and at a hundredth of that.

Real PostgreSQL, Django's test Client in-process (no network, no browser), logged in
as a marketing lead (who sees both lists), DEBUG off. Prints one figure a line
(`name: value (target ...)`) and asserts nothing: the machine is shared and noisy, so
read the header first.

    .venv/bin/python -m bench.catalog            # ~1 minute seeding the first time, then ~1 minute
    .venv/bin/python -m bench.catalog --smoke    # 2,000 products and 20,000 customers (CI)
    .venv/bin/python -m bench.catalog --help     # sizes, repeats, --reseed, --explain

Each dataset lives in a database of its own (created and migrated if missing, seeded
once, then reused while its sizes match). For each, after a warm-up, every page is
requested `--repeat` times and timed from the request to the rendered response:

1. products_first / customers_first: the first page of the list;
2. products_deep / customers_deep: the page reached by following the pager's "next"
   link `--hops` times, as a person pages;
3. products_far / customers_far: a page 95% of the way down the list (the address a
   pager link would have there), where an OFFSET would read 95% of the table;
4. products_sku / customers_search: a search by the start of a SKU / external id;
5. products_name: a search by a word of the name that a fifth of the products have;
6. products_name_rare: a word one product has, near the end of the SKU order (the
   worst case: every name is read);
7. products_typed / customers_typed: a search as typed in the box (HTMX: the list
   alone);
8. product_page / customer_page: one product with variants for every segment, one
   customer with messages (for reference; no target);
9. baseline: the reviewer's profile page, a signed-in page that reads one row by
   key, timed in the same run: `<list>_p95_to_baseline` says how much a list page
   costs beyond what any page costs on this machine now.

Query counts come from one more request under CaptureQueriesContext; they must not
depend on the page's depth, nor on how many rows there are (the small dataset).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse
from typing import Any

from bench.generation import ensure_database, figure, section
from bench.review import (
    Page,
    brief,
    database_line,
    django_setup,
    explain,
    get,
    load_line,
    measure,
    migrate,
    next_link,
    use_database,
)

TARGET_MS = 100.0
BRAND = "Benchcatalog"
SEGMENTS = 20
MESSAGES = 8
# A name word one product has: the search that must read every name.
RARE = "Kestrel"
LISTS = {
    "products": (
        "products_first",
        "products_deep",
        "products_far",
        "products_sku",
        "products_name",
        "products_name_rare",
        "products_typed",
    ),
    "customers": (
        "customers_first",
        "customers_deep",
        "customers_far",
        "customers_search",
        "customers_typed",
    ),
}
DETAILS = ("product_page", "customer_page", "baseline")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.catalog",
        description="Benchmark the product and customer list pages (prints, never asserts).",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hyperpers_bench_catalog"
        ),
        help="Database of the large dataset.",
    )
    parser.add_argument(
        "--small-database-url",
        default=None,
        help="Database of the small dataset (default: the large one's name + '_small').",
    )
    parser.add_argument("--products", type=int, default=None, help="Default 100,000.")
    parser.add_argument("--customers", type=int, default=None, help="Default 1,000,000.")
    parser.add_argument(
        "--small-share", type=int, default=100, help="The small dataset is 1/this of the large."
    )
    parser.add_argument("--repeat", type=int, default=None, help="Timed requests a page (50).")
    parser.add_argument("--warmup", type=int, default=None, help="Untimed requests first (5).")
    parser.add_argument(
        "--hops", type=int, default=None, help="'Next' links to the deep page (10)."
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CI: 2,000 products and 20,000 customers, 5 requests a page, 2 hops "
        "(options given with it win).",
    )
    parser.add_argument(
        "--reseed", action="store_true", help="Empty and seed the datasets even if they fit."
    )
    parser.add_argument(
        "--show-queries", action="store_true", help="List every query of each page."
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="Print EXPLAIN (ANALYZE, BUFFERS) of each page's slowest query at the large size.",
    )
    args = parser.parse_args(argv)
    smoke = {"products": 2_000, "customers": 20_000, "repeat": 5, "warmup": 1, "hops": 2}
    full = {"products": 100_000, "customers": 1_000_000, "repeat": 50, "warmup": 5, "hops": 10}
    for name, value in (smoke if args.smoke else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.products < 100 or args.customers < 100:
        parser.error("--products and --customers: at least 100 each")
    if args.small_database_url is None:
        parts = urllib.parse.urlsplit(args.database_url)
        args.small_database_url = urllib.parse.urlunsplit(
            parts._replace(path=f"{parts.path}_small")
        )
    return args


def size_label(products: int, customers: int) -> str:
    """100000, 1000000 → '100kp_1mc': the sizes in a figure's name."""

    def short(n: int) -> str:
        if n >= 1_000_000 and n % 1_000_000 == 0:
            return f"{n // 1_000_000}m"
        return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)

    return f"{short(products)}p_{short(customers)}c"


# ----------------------------------------------------------------------------------
# The data


def seeded(products: int, customers: int) -> bool:
    from generation.models import Brand, Customer, Product

    return (
        Brand.objects.filter(name=BRAND).exists()
        and Product.objects.count() == products
        and Customer.objects.count() == customers
    )


def empty_tables() -> None:
    from django.db import connection

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

    tables = ", ".join(
        m._meta.db_table
        for m in (Variant, GenerationRun, PromptVersion, Prompt, Brand, Product, Segment, Customer)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def lead() -> Any:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user, _ = get_user_model().objects.get_or_create(username="bench-lead")
    user.groups.add(Group.objects.get_or_create(name="marketing lead")[0])
    return user


# Product names: a brand word, a kind, a number. "Runner" is in a fifth of them.
BRAND_WORDS = ("AeroStride", "Summit", "Coastal", "Ridge", "Harbor", "Meadow", "Granite")
KINDS = ("Runner", "Jacket", "Boot", "Tee", "Sock")


def seed(products: int, customers: int) -> dict[str, Any]:
    """Products and customers in bulk (INSERT … SELECT generate_series, as an import
    of that size leaves them), then a prompt, SEGMENTS segments, a published variant of
    the first product for each, MESSAGES one-to-one messages for the first customer."""
    from django.db import connection, transaction
    from django.utils import timezone

    from generation.models import Brand, Customer, Product, Prompt, PromptVersion, Segment, Variant

    lead()
    rare = int(products * 0.97)  # near the end of the SKU order
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Product._meta.db_table}
                (sku, name, category, subcategory, description, attributes, translations,
                 created, updated)
            SELECT 'LU-' || lpad(i::text, 6, '0'),
                   CASE WHEN i = %s THEN 'Limited {RARE} Trail Runner'
                        ELSE (%s::text[])[1 + i %% 7] || ' ' || (%s::text[])[1 + (i / 7) %% 5]
                             || ' ' || i END,
                   'Outdoor', 'Trail',
                   'A product for long days outside, number ' || i || '. The upper sheds '
                   || 'rain and the lining keeps warmth in without trapping sweat; every seam '
                   || 'is taped, and the fit leaves room for a layer underneath.',
                   jsonb_build_object('price', '129.00', 'colour', 'blue'),
                   CASE WHEN i %% 4 = 0 THEN jsonb_build_object('de', jsonb_build_object(
                       'name', 'Artikel ' || i, 'description', 'Ein Produkt für lange Tage.'))
                        ELSE '{{}}'::jsonb END,
                   now(), now()
            FROM generate_series(0, %s) AS i
            """,
            [rare, list(BRAND_WORDS), list(KINDS), products - 1],
        )
        cursor.execute(
            f"""
            INSERT INTO {Customer._meta.db_table}
                (external_id, language, attributes, created, updated)
            SELECT 'C' || lpad(i::text, 7, '0'),
                   (ARRAY['en', 'en', 'de', 'fr'])[1 + i %% 4],
                   jsonb_build_object(
                       'value_tier', (ARRAY['high', 'mid', 'low'])[1 + i %% 3],
                       'region', (ARRAY['north', 'south', 'east', 'west'])[1 + (i / 3) %% 4],
                       'age', 18 + i %% 60,
                       'email', 'customer' || i || '@example.com'),
                   now(), now()
            FROM generate_series(0, %s) AS i
            """,
            [customers - 1],
        )
        brand = Brand.objects.create(name=BRAND, voice="Plain and warm.")
        prompt = Prompt.objects.create(slug="bench-catalog", name="Bench catalog", brand=brand)
        version = PromptVersion.objects.create(
            prompt=prompt, number=1, template="{product_description}", model="offline-writer-1"
        )
        tiers, regions = ("high", "mid", "low"), ("north", "south", "east", "west")
        segments = Segment.objects.bulk_create(
            [
                Segment(
                    slug=f"bc-{s:02d}",
                    name=f"{tiers[s % 3]} × {regions[s % 4]} ({s})",
                    rules={"value_tier": tiers[s % 3], "region": regions[s % 4]},
                    member_count=customers // SEGMENTS,
                )
                for s in range(SEGMENTS)
            ]
        )
        first_product = Product.objects.order_by("sku").first()
        first_customer = Customer.objects.order_by("external_id").first()
        now = timezone.now()
        Variant.objects.bulk_create(
            [
                Variant(
                    prompt=prompt,
                    prompt_version=version,
                    product=first_product,
                    segment=segment,
                    status=Variant.Status.PUBLISHED,
                    text=f"For {segment.name}: a product for long days outside.",
                    language="en",
                    published=now,
                )
                for segment in segments
            ]
            + [
                Variant(
                    prompt=prompt,
                    prompt_version=version,
                    product=product,
                    customer=first_customer,
                    status=Variant.Status.PUBLISHED,
                    text="Thanks for your order: here is how to care for it.",
                    purpose=f"Post-purchase care tips {i}",
                    language="en",
                    published=now,
                )
                for i, product in enumerate(Product.objects.order_by("sku")[:MESSAGES])
            ]
        )
    with connection.cursor() as cursor:
        # Autovacuum may be off: without this the planner has no statistics on the rows.
        for model in (Product, Customer, Variant, Segment):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")
    return {"products": products, "customers": customers}


def dataset_line() -> str:
    from django.db import connection

    from generation.models import Customer, Product

    sizes = []
    with connection.cursor() as cursor:
        for model in (Product, Customer):
            cursor.execute(
                "SELECT pg_size_pretty(pg_total_relation_size(%s))", [model._meta.db_table]
            )
            sizes.append(cursor.fetchone()[0])
    return (
        f"data: {Product.objects.count()} products (table {sizes[0]}), "
        f"{Customer.objects.count()} customers (table {sizes[1]})"
    )


# ----------------------------------------------------------------------------------
# The measurements


def _follow(client: Any, path: str, hops: int) -> tuple[str, int]:
    """The address `hops` "next" links after `path`, and how many were followed."""
    for hop in range(hops):
        found = next_link(get(client, path).content.decode())
        if found is None:
            return path, hop
        path = found
    return path, hops


def pages_to_measure(client: Any, args: argparse.Namespace) -> dict[str, tuple[str, bool]]:
    """Each page's address, found as a person reaches it, and whether it is asked for
    over HTMX (a search as typed)."""
    from django.urls import reverse

    from generation.models import Customer, Product

    products, customers = reverse("review:products"), reverse("review:customers")
    deep_products, _ = _follow(client, products, args.hops)
    deep_customers, _ = _follow(client, customers, args.hops)
    # 95% of the way down: the key a pager link there would carry, and its page number.
    n_products, n_customers = Product.objects.count(), Customer.objects.count()
    far_sku = Product.objects.order_by("sku").values_list("sku", flat=True)[int(n_products * 0.95)]
    far_id = Customer.objects.order_by("external_id").values_list("external_id", flat=True)[
        int(n_customers * 0.95)
    ]
    far = {"products": (far_sku, n_products), "customers": (far_id, n_customers)}

    def far_page(url: str, kind: str) -> str:
        key, n = far[kind]
        query = urllib.parse.urlencode({"after": key, "page": int(n * 0.95) // 50 + 1})
        return f"{url}?{query}"

    product = Product.objects.order_by("sku").first()
    customer = Customer.objects.order_by("external_id").first()
    # A SKU prefix of 100 products (at 100,000) and an external-id prefix of 10.
    sku_prefix = product.sku[:-2] if n_products >= 10_000 else product.sku[:-1]
    return {
        "products_first": (products, False),
        "products_deep": (deep_products, False),
        "products_far": (far_page(products, "products"), False),
        "products_sku": (f"{products}?q={sku_prefix}", False),
        "products_name": (f"{products}?q=runner", False),
        "products_name_rare": (f"{products}?q={RARE.lower()}", False),
        "products_typed": (f"{products}?q=summit", True),
        "customers_first": (customers, False),
        "customers_deep": (deep_customers, False),
        "customers_far": (far_page(customers, "customers"), False),
        "customers_search": (f"{customers}?q={customer.external_id[:-1]}", False),
        "customers_typed": (f"{customers}?q={customer.external_id[:-2]}", True),
        "product_page": (reverse("review:product", args=[product.sku]), False),
        "customer_page": (reverse("review:customer", args=[customer.pk]), False),
        "baseline": (reverse("review:profile"), False),
    }


def run_dataset(
    args: argparse.Namespace, url: str, products: int, customers: int, large: bool
) -> dict[str, Page]:
    from django.test import Client

    label = size_label(products, customers)
    created = ensure_database(url)
    use_database(url)
    migrate()
    section(f"{label}: {products} products, {customers} customers in {url.rsplit('/', 1)[-1]}")
    if created:
        print("database created", flush=True)
    if args.reseed or not seeded(products, customers):
        started = time.perf_counter()
        empty_tables()
        seed(products, customers)
        print(f"seeded in {time.perf_counter() - started:.1f}s (VACUUM ANALYZE done)", flush=True)
    else:
        print("reusing the seeded data (--reseed to seed again)", flush=True)
    print(dataset_line(), flush=True)
    user = lead()
    client, htmx = Client(), Client(headers={"HX-Request": "true"})
    client.force_login(user)
    htmx.force_login(user)
    results = {}
    for name, (path, typed) in pages_to_measure(client, args).items():
        page = measure(htmx if typed else client, name, path, args)
        results[name] = page
        print(f"  {name}: GET {path}{' (HTMX)' if typed else ''}", flush=True)
        figure(f"{name}_median_ms_{label}", page.median_ms)
        figure(f"{name}_p95_ms_{label}", page.p95_ms)
        figure(f"{name}_queries_{label}", page.queries)
        figure(f"{name}_sql_ms_{label}", page.sql_ms)
        ms, sql = page.slowest
        print(f"    slowest query {ms:.0f} ms: {brief(sql)}", flush=True)
        if args.show_queries:
            for query in page.queries_sql:
                print(f"    - {brief(query)}")
        if args.explain and large:
            print(explain(sql), flush=True)
    return results


def header(args: argparse.Namespace) -> None:
    print(f"machine: nproc {os.cpu_count()}, {load_line()}")
    print(f"python: {sys.version.split()[0]}, pid {os.getpid()}")
    print(f"databases: {args.database_url} and {args.small_database_url}")
    print(
        f"DEBUG: False; {args.warmup} warm-up + {args.repeat} timed requests a page, "
        f"deep page after {args.hops} 'next' links{'; smoke sizes' if args.smoke else ''}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    header(args)
    started = time.perf_counter()
    django_setup(args.database_url)
    ensure_database(args.database_url)
    print(database_line(), flush=True)
    share = args.small_share
    sizes = (args.products, args.customers)
    small_sizes = (max(100, args.products // share), max(100, args.customers // share))
    large = run_dataset(args, args.database_url, *sizes, large=True)
    small = run_dataset(args, args.small_database_url, *small_sizes, large=False)

    section("summary")
    label, small_label = size_label(*sizes), size_label(*small_sizes)
    for kind, pages in LISTS.items():
        figure(f"queries_{kind}_{label}", max(large[p].queries for p in pages))
        figure(f"queries_{kind}_{small_label}", max(small[p].queries for p in pages))
        worst = max(large[p].p95_ms for p in pages)
        figure(f"{kind}_p95_ms", worst, f"< {TARGET_MS:g}", worst < TARGET_MS)
        figure(f"{kind}_p95_to_baseline", worst / large["baseline"].p95_ms)
    for name in DETAILS:
        figure(f"{name}_p95_ms_{label}", large[name].p95_ms)
    # Deeper pages cost no more queries than the first; nor does more data.
    by_depth = max(
        max(results[f"{kind}_{depth}"].queries for depth in ("deep", "far"))
        - results[f"{kind}_first"].queries
        for results in (large, small)
        for kind in LISTS
    )
    figure("query_count_growth_with_page", by_depth, "0", by_depth == 0)
    by_size = max(
        large[p].queries - small[p].queries
        for p in (*LISTS["products"], *LISTS["customers"], *DETAILS)
    )
    figure("query_count_growth_with_size", by_size, "0", by_size == 0)
    print(f"\ntotal: {time.perf_counter() - started:.0f}s, {load_line()}", flush=True)
    return 0


if __name__ == "__main__":
    # Run it as a module (python -m bench.catalog): as a file, this directory would
    # come first on sys.path and bench/generation.py would shadow the `generation` app.
    sys.exit(main())
