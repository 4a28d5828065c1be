"""Server time and query count of the review queue and the focus view, at 100k and 1k.

Real PostgreSQL, Django's test Client in-process (no network, no browser), logged in
as a copywriter, DEBUG off. Prints one figure a line (`name: value (target ...)`) and
asserts nothing: the machine is shared and noisy, so read the header first.

    .venv/bin/python -m bench.review            # ~80 s seeding the first time, then ~40 s
    .venv/bin/python -m bench.review --help     # sizes, repeats, --reseed, --explain

Each dataset lives in a database of its own (created and migrated if missing, seeded
once, then reused while its size matches). For each, after a warm-up, every page is
requested `--repeat` times and timed from the request to the rendered response:

1. queue_first: the first page of the queue (in review, the default filters);
2. queue_deep: the page reached by following the pager's "next" link `--hops` times;
3. queue_filtered: one segment and one failed check;
4. focus: the focus view of a variant in review, with a live variant in its slot and
   an audit trail.

Query counts come from one more request under CaptureQueriesContext; they must not
depend on how many variants there are, which the 1k dataset shows.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import secrets
import statistics
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

from bench.generation import ensure_database, figure, section

SEGMENTS = 50
BRAND = "Benchreview"
PAGES = ("queue_first", "queue_deep", "queue_filtered", "focus")
TARGET_MS = 100.0

# Checks as generation/checks.py stores them; the messages are what a reviewer reads.
CHECKS = {
    "length": ("Within 600 characters", "Too long: 742 characters, at most 600"),
    "protected_terms": ("Every protected term kept", "Benchreview is missing"),
    "banned_phrases": ("No banned phrase", "Uses the banned phrase “miracle”"),
    "language": ("Written in English", "Reads as German (0.81), expected English"),
    "personal_data": ("No personal data", "Contains a phone number: +44 ••• ••• 0199"),
    "placeholders": ("No unfilled placeholder", "Leaves {segment_name} unfilled"),
    "overreach": (
        "Speaks to the whole segment",
        "Names “hiking”, which 30% of the segment does; at least 50% must",
    ),
    "input_injection": ("No instructions in the input", "Instructions in the input"),
}
# The failures a variant can have, most common first; overreach leads, as in the demo.
FAILURES = ("overreach", "length", "banned_phrases", "language")

OPENERS = (
    "Built for the miles you actually run",
    "Made for early starts and wet trails",
    "For runners who plan the week around the long run",
    "A shoe that keeps up when the path turns rough",
    "Steady footing for weekday loops and weekend climbs",
    "Comfort that lasts from the first kilometre to the last",
    "Grip and cushioning for every season",
)
MIDDLES = (
    "The mesh upper drains fast after a stream crossing, so your feet stay light.",
    "A rock plate under the forefoot softens stony descents without dulling feel.",
    "4 mm lugs bite into mud and loose gravel, and shed it again on the road.",
    "The padded collar holds the heel without pressure points on long days.",
    "A rockered sole rolls you forward when your legs start to tire.",
    "The wider toe box gives your feet room to spread on climbs.",
    "Reflective details keep you seen on dark evening runs.",
    "The foam keeps its bounce after hundreds of kilometres.",
    "A gusseted tongue keeps grit and needles out.",
    "Laces that stay tied, even when soaked.",
    "Light enough for tempo days, sturdy enough for the hills.",
)
CLOSERS = (
    "Lace up and see where the trail takes you.",
    "Ready when you are, rain or shine.",
    "One pair for the whole training block.",
    "Your next personal best starts at the trailhead.",
    "Go further, in comfort.",
)


@dataclass
class Page:
    name: str
    path: str
    times_ms: list[float]
    queries: int
    sql_ms: float  # median of the summed query times (1 ms resolution each)
    cpu_ms: float  # median CPU time of this process: Python, not waiting on PostgreSQL
    slowest: tuple[float, str]
    queries_sql: list[str]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p95_ms(self) -> float:
        return percentile(self.times_ms, 0.95)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the value at or below which `share` of them lie."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * share)) - 1]


# ----------------------------------------------------------------------------------
# Options and databases


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.review",
        description="Benchmark the review queue and focus view (prints, never asserts).",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hyperpers_bench_review"
        ),
        help="Database of the large dataset.",
    )
    parser.add_argument(
        "--small-database-url",
        default=None,
        help="Database of the small dataset (default: the large one's name + '_1k').",
    )
    parser.add_argument("--variants", type=int, default=100_000)
    parser.add_argument("--small-variants", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=50, help="Timed requests a page.")
    parser.add_argument("--warmup", type=int, default=5, help="Untimed requests first.")
    parser.add_argument("--hops", type=int, default=10, help="'Next' links to the deep page.")
    parser.add_argument(
        "--reseed", action="store_true", help="Empty and seed the datasets even if they fit."
    )
    parser.add_argument(
        "--show-queries", action="store_true", help="List every query of each page."
    )
    parser.add_argument(
        "--variant-related",
        type=lambda text: tuple(f for f in text.split(",") if f),
        default=None,
        metavar="FIELD,FIELD,...",
        help="Measure a candidate: replace review.views.VARIANT_RELATED (what the queue and "
        "focus views select_related, read by review/views/queue.py) for this run, e.g. "
        "product,segment,customer,prompt_version__prompt.",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="Print EXPLAIN (ANALYZE, BUFFERS) of each page's slowest query at the large size.",
    )
    args = parser.parse_args(argv)
    if args.variants % 10 or args.small_variants % 10:
        parser.error("--variants and --small-variants must be multiples of 10")
    if args.small_database_url is None:
        parts = urllib.parse.urlsplit(args.database_url)
        args.small_database_url = urllib.parse.urlunsplit(
            parts._replace(path=f"{parts.path}_{size_label(args.small_variants)}")
        )
    return args


def size_label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def use_database(url: str) -> None:
    """Point Django's default connection at `url` (closing the open one first)."""
    import environ
    from django.db import connection

    connection.close()
    config = environ.Env.db_url_config(url)
    for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT"):
        connection.settings_dict[key] = config.get(key, "")


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# ----------------------------------------------------------------------------------
# The data


def seeded(n: int) -> bool:
    from generation.models import Brand, Variant

    return Brand.objects.filter(name=BRAND).exists() and Variant.objects.count() == n


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
    from review.models import ReviewEvent

    tables = ", ".join(
        m._meta.db_table
        for m in (
            ReviewEvent,
            Variant,
            GenerationRun,
            PromptVersion,
            Prompt,
            Brand,
            Product,
            Segment,
            Customer,
        )
    )
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def users() -> tuple[Any, Any]:
    """The copywriter the bench logs in as, and a marketing lead who decides too."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user_model = get_user_model()
    copywriter, _ = user_model.objects.get_or_create(username="bench-copywriter")
    copywriter.groups.add(Group.objects.get_or_create(name="copywriter")[0])
    lead, _ = user_model.objects.get_or_create(username="bench-lead")
    lead.groups.add(Group.objects.get_or_create(name="marketing lead")[0])
    return copywriter, lead


def spread(i: int, modulo: int, salt: int = 0) -> int:
    """A fixed pseudo-random number in [0, modulo) for row i (Knuth's multiplicative hash)."""
    return ((i + salt * 7919) * 2654435761 % 2**32) * modulo // 2**32


def variant_text(i: int, product_name: str, segment: int) -> str:
    """About 400 characters, different for each segment of a product."""
    parts = [
        f"{OPENERS[(segment + spread(i, 7)) % len(OPENERS)]}: the {product_name}.",
        MIDDLES[spread(i, len(MIDDLES), 1)],
        MIDDLES[(segment + spread(i, len(MIDDLES), 2)) % len(MIDDLES)],
        MIDDLES[(segment * 3 + spread(i, len(MIDDLES), 3)) % len(MIDDLES)],
        f"Priced at 129, it is a pair for the group that runs {('easy', 'hard', 'long')[i % 3]}.",
        CLOSERS[spread(i, len(CLOSERS), 4)],
    ]
    return " ".join(parts)


def checks_for(i: int) -> tuple[list[dict[str, Any]], int]:
    """Every check, passed or failed: about 16% of variants fail one, 4% fail two."""
    h = spread(i, 1000, 5)
    failed = set()
    if h < 40:
        failed = {"overreach", "length"}
    elif h < 200:
        failed = {FAILURES[h % len(FAILURES)]}
    checks = [
        {"name": name, "passed": name not in failed, "message": msgs[name in failed]}
        for name, msgs in CHECKS.items()
    ]
    return checks, len(failed)


def seed(n: int) -> dict[str, int]:
    """Brand, prompt with two versions, n/50 products, 50 segments, n variants, events.

    Slot i is (product i // 50, segment i % 50). Version 2 (the current one) has a
    variant in 9 slots of 10, mostly in review; version 1 has one in the 10th slot and
    slot i % 10 == 0, mostly published: the variants in review there have a live one.
    """
    from django.db import connection, transaction

    from generation.models import (
        Brand,
        GenerationRun,
        Product,
        Prompt,
        PromptVersion,
        Segment,
        Variant,
    )
    from review.models import ReviewEvent

    copywriter, lead = users()
    products_n = n // SEGMENTS
    S = Variant.Status
    A = ReviewEvent.Action
    with transaction.atomic():
        brand = Brand.objects.create(
            name=BRAND,
            voice="You write for Benchreview, a sports brand. Warm, direct, practical.",
            banned_phrases=["miracle", "guaranteed results"],
            protected_terms=["Benchreview"],
        )
        prompt = Prompt.objects.create(
            slug="bench-review", name="Bench review product page", brand=brand, max_length=600
        )
        versions = [
            PromptVersion.objects.create(
                prompt=prompt,
                number=number,
                template="Rewrite {product_name} for {segment_name}.\n{product_description}",
                model="offline-writer-1",
            )
            for number in (1, 2)
        ]
        runs = [
            GenerationRun.objects.create(
                prompt_version=version,
                status=status,
                total=n,
                succeeded=n // 2,
                scope={"products": "all", "segments": "all"},
            )
            for version, status in zip(versions, ("finished", "running"), strict=True)
        ]
        products = Product.objects.bulk_create(
            [
                Product(
                    sku=f"BR-{p:06d}",
                    name=f"Benchreview Trail Runner {p}",
                    category="Run",
                    subcategory="Running Shoes",
                    description=(
                        f"A cushioned trail shoe, model {p}. The mesh upper drains quickly and "
                        "a rock plate under the forefoot takes the sting out of stony descents. "
                        "Lugs of 4 mm grip mud and loose gravel, and a padded collar holds the "
                        "heel without pressure points."
                    ),
                    attributes={"price": "129.00", "material": "mesh, EVA foam, rubber"},
                )
                for p in range(products_n)
            ],
            batch_size=2000,
        )
        tiers, bands = ("high", "mid", "low"), ("18-24", "25-34", "35-44", "45-54", "55+")
        segments = Segment.objects.bulk_create(
            [
                Segment(
                    slug=f"br-{s:03d}",
                    name=f"{tiers[s % 3].title()} value, {bands[s % 5]} ({s})",
                    rules={"value_tier": tiers[s % 3], "age_band": bands[s % 5]},
                    member_count=200 + 37 * s,
                    summary={
                        "language": {"en": 0.85, "de": 0.1, "fr": 0.05},
                        "region": {"north": 0.45, "south": 0.3, "east": 0.15, "west": 0.1},
                        "activity": {"running": 0.7, "hiking": 0.3},
                        "gender": {"f": 0.52, "m": 0.46, "x": 0.02},
                        "preferred_subcategory": {"Running Shoes": 0.8, "Trail Shoes": 0.2},
                    },
                )
                for s in range(SEGMENTS)
            ]
        )

        def variant(i: int, version: int, status: str) -> Variant:
            product, s = products[i // SEGMENTS], i % SEGMENTS
            written = status not in (S.QUEUED, S.FAILED)
            text = variant_text(i + version, product.name, s) if written else ""
            checks, failed = checks_for(i + version) if written else ([], 0)
            edited = status == S.PUBLISHED and spread(i, 5, 6) == 0
            return Variant(
                run=runs[version - 1],
                prompt=prompt,
                prompt_version=versions[version - 1],
                product=product,
                segment=segments[s],
                status=status,
                text=text.replace("Go further", "Run further") if edited else text,
                original_text=text,
                rationale="The segment values comfort over speed; the copy leads with it."
                if written
                else "",
                checks=checks,
                checks_failed=failed,
                model="offline-writer-1",
                prompt_tokens=612,
                completion_tokens=138,
                cached_tokens=512,
                latency_ms=480 + spread(i, 200, 7),
                cost="0.000131",
                language="en" if written else "",
                error="The endpoint answered 500 five times" if status == S.FAILED else "",
                attempts=1,
                revision=1 if status != S.IN_REVIEW else 0,
            )

        def slot_variants(i: int) -> Iterator[Variant]:
            r = spread(i, 100, 8)
            if i % 10 != 9:
                if r < 87:
                    status = S.IN_REVIEW
                elif r < 92:
                    status = S.REJECTED
                elif r < 95:
                    # Version 1 is live in slots i % 10 == 0: one published a slot.
                    status = S.PUBLISHED if i % 10 else S.SUPERSEDED
                elif r < 97:
                    status = S.QUEUED
                elif r < 98:
                    status = S.FAILED
                else:
                    status = S.SUPERSEDED
                yield variant(i, 2, status)
            if i % 10 == 0:
                status = S.PUBLISHED if r < 70 else S.RETIRED if r < 85 else S.REJECTED
                yield variant(i, 1, status)

        def events(v: Variant, i: int) -> Iterator[ReviewEvent]:
            who = copywriter if i % 2 else lead
            if v.status in (S.PUBLISHED, S.RETIRED):
                edited = v.text != v.original_text
                yield ReviewEvent(
                    variant=v,
                    user=who,
                    action=A.EDIT if edited else A.APPROVE,
                    text_before=v.original_text,
                    text_after=v.text,
                )
            if v.status == S.RETIRED:
                yield ReviewEvent(variant=v, action=A.RETIRE, reason="Replaced by variant 0")
            if v.status == S.REJECTED:
                yield ReviewEvent(
                    variant=v, user=who, action=A.REJECT, reason="Off brand: too pushy"
                )
            if v.status == S.IN_REVIEW and i % 20 == 0:
                # Written again after a reviewer asked for it: a trail to show.
                yield ReviewEvent(
                    variant=v,
                    user=who,
                    action=A.REGENERATE,
                    reason="Less about speed, more about comfort",
                    text_before=v.text.replace("comfort", "speed"),
                )

        chunk = 5000
        for start in range(0, n, chunk):
            made = [(i, v) for i in range(start, min(n, start + chunk)) for v in slot_variants(i)]
            Variant.objects.bulk_create([v for _, v in made])
            ReviewEvent.objects.bulk_create([e for i, v in made for e in events(v, i)])
        # The copywriter's last decision, which the queue offers to undo.
        last = Variant.objects.filter(status=S.PUBLISHED).order_by("-id").first()
        ReviewEvent.objects.create(
            variant=last, user=copywriter, action=A.APPROVE, text_before=last.text
        )
    with connection.cursor() as cursor:
        # Autovacuum may be off (it is on the bench machine): without this the planner
        # has no statistics on the new rows and index-only scans visit the heap.
        for model in (Variant, ReviewEvent, Product, Segment):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")
    return {"products": products_n, "segments": SEGMENTS}


def dataset_line(n: int) -> str:
    from django.db import connection
    from django.db.models import Count

    from generation.models import Variant
    from review.models import ReviewEvent

    counts = dict(Variant.objects.order_by().values_list("status").annotate(c=Count("id")))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_size_pretty(pg_total_relation_size(%s))", [Variant._meta.db_table]
        )
        size = cursor.fetchone()[0]
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return (
        f"data: {sum(counts.values())} variants ({by_status}); "
        f"{ReviewEvent.objects.count()} review events; variants table {size}"
    )


# ----------------------------------------------------------------------------------
# The measurements


NEXT_LINK = re.compile(r'<a rel="next" href="([^"]+)"')


def next_link(html: str) -> str | None:
    match = NEXT_LINK.search(html)
    return unescape(match.group(1)) if match else None


def get(client: Any, path: str) -> Any:
    response = client.get(path)
    if response.status_code != 200:
        raise SystemExit(f"GET {path} answered {response.status_code}, not 200")
    return response


def pages_to_measure(client: Any, hops: int) -> dict[str, str]:
    """The four addresses, found through the data as a reviewer would reach them."""
    from django.db.models import Exists, OuterRef
    from django.urls import reverse

    from generation.models import Variant
    from review import queue as q

    queue = reverse("review:queue")
    deep = queue
    for hop in range(hops):
        found = next_link(get(client, deep).content.decode())
        if found is None:
            raise SystemExit(f"the queue has no 'next' link after {hop} hops")
        deep = found
    # A segment and a check that select some variants in review, at either size.
    flagged = (
        Variant.objects.in_review()
        .filter(q._failed_check("overreach"))
        .select_related("segment")
        .order_by("id")
        .first()
    )
    filtered = f"{queue}?{q.querystring({'segment': flagged.segment.slug, 'check': 'overreach'})}"
    live = Variant.objects.published().filter(
        prompt=OuterRef("prompt"), product=OuterRef("product"), segment=OuterRef("segment")
    )
    focus = (
        Variant.objects.in_review()
        .filter(checks_failed__gt=0, review_events__isnull=False)
        .filter(Exists(live))
        .order_by("id")
        .first()
    )
    return {
        "queue_first": queue,
        "queue_deep": deep,
        "queue_filtered": filtered,
        "focus": reverse("review:variant", args=[focus.pk]),
    }


def measure(client: Any, name: str, path: str, args: argparse.Namespace) -> Page:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(args.warmup):
        get(client, path)
    times, cpu = [], []
    for _ in range(args.repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        get(client, path)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    # Counted apart from the timed requests: recording queries costs a little.
    sql_ms = []
    for _ in range(5):
        with CaptureQueriesContext(connection) as captured:
            get(client, path)
        sql_ms.append(sum(float(c["time"]) for c in captured.captured_queries) * 1000)
    slowest = max(captured.captured_queries, key=lambda c: float(c["time"]))
    return Page(
        name=name,
        path=path,
        times_ms=times,
        queries=len(captured.captured_queries),
        sql_ms=statistics.median(sql_ms),
        cpu_ms=statistics.median(cpu),
        slowest=(float(slowest["time"]) * 1000, slowest["sql"]),
        queries_sql=[
            f"{float(c['time']) * 1000:.0f} ms {c['sql']}" for c in captured.captured_queries
        ],
    )


def brief(sql: str, width: int = 240) -> str:
    """A query without its column list, cut to `width` characters."""
    sql = re.sub(r"SELECT .+? FROM ", "SELECT … FROM ", sql, count=1)
    return sql if len(sql) <= width else sql[: width - 1] + "…"


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        return "\n".join(f"    {row[0]}" for row in cursor.fetchall())


def run_dataset(args: argparse.Namespace, url: str, n: int) -> dict[str, Page]:
    from django.test import Client

    label = size_label(n)
    created = ensure_database(url)
    use_database(url)
    migrate()
    section(f"{label}: {n} variants in {urllib.parse.urlsplit(url).path.lstrip('/')}")
    if created:
        print("database created", flush=True)
    if args.reseed or not seeded(n):
        started = time.perf_counter()
        empty_tables()
        shape = seed(n)
        print(
            f"seeded {shape['products']} products × {shape['segments']} segments in "
            f"{time.perf_counter() - started:.1f}s (VACUUM ANALYZE done)",
            flush=True,
        )
    else:
        print("reusing the seeded data (--reseed to seed again)", flush=True)
    print(dataset_line(n), flush=True)
    copywriter, _ = users()
    client = Client()
    client.force_login(copywriter)
    results = {}
    for name, path in pages_to_measure(client, args.hops).items():
        page = measure(client, name, path, args)
        results[name] = page
        print(f"  {name}: GET {path}", flush=True)
        figure(f"{name}_median_ms_{label}", page.median_ms)
        figure(f"{name}_p95_ms_{label}", page.p95_ms)
        figure(f"{name}_queries_{label}", page.queries)
        figure(f"{name}_sql_ms_{label}", page.sql_ms)
        figure(f"{name}_cpu_ms_{label}", page.cpu_ms)
        ms, sql = page.slowest
        print(f"    slowest query {ms:.0f} ms: {brief(sql)}", flush=True)
        if args.show_queries:
            for query in page.queries_sql:
                print(f"    - {brief(query)}")
        if args.explain and n == args.variants:
            print(explain(sql), flush=True)
    return results


def load_line() -> str:
    """Load average, and the share of time runnable tasks waited for a CPU (Linux PSI)."""
    line = "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with suppress(OSError, ValueError, IndexError):
        some = Path("/proc/pressure/cpu").read_text().split()[1]
        line += f", cpu pressure {some.split('=')[1]}% (avg10)"
    return line


def header(args: argparse.Namespace) -> None:
    print(f"machine: nproc {os.cpu_count()}, {load_line()}")
    print(f"python: {sys.version.split()[0]}, pid {os.getpid()}")
    print(f"databases: {args.database_url} and {args.small_database_url}")
    print(
        f"DEBUG: False; {args.warmup} warm-up + {args.repeat} timed requests a page, "
        f"deep page after {args.hops} 'next' links",
        flush=True,
    )


def database_line() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0]
    return f"postgresql: {version}, autovacuum {autovacuum}"


def django_setup(database_url: str) -> None:
    """Django as production runs it, on `database_url`, for a bench of pages:
    DEBUG off, warnings only, and the static manifest collected."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "hyperpers.settings",
            "DATABASE_URL": database_url,
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            # DEBUG=false refuses the development key: bring a long random one, unless
            # one is set.
            "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    # DEBUG=false serves static files through the hashed manifest, as production does:
    # the pages render their static URLs from it, so it must exist (var/static).
    call_command("collectstatic", interactive=False, verbosity=0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    header(args)
    started = time.perf_counter()
    django_setup(args.database_url)
    if args.variant_related is not None:
        from review.views import queue as queue_views

        print(
            f"candidate: review.views.VARIANT_RELATED = {args.variant_related!r} "
            f"(was {queue_views.VARIANT_RELATED!r})",
            flush=True,
        )
        # Replaced where the queue and focus views read it (they import the name).
        queue_views.VARIANT_RELATED = args.variant_related
    ensure_database(args.database_url)
    print(database_line(), flush=True)
    large_label, small_label = size_label(args.variants), size_label(args.small_variants)
    large = run_dataset(args, args.database_url, args.variants)
    small = run_dataset(args, args.small_database_url, args.small_variants)

    section("summary")
    queue_pages = [p for p in PAGES if p != "focus"]
    figure(f"queries_queue_{large_label}", max(large[p].queries for p in queue_pages))
    figure(f"queries_queue_{small_label}", max(small[p].queries for p in queue_pages))
    figure(f"queries_focus_{large_label}", large["focus"].queries)
    figure(f"queries_focus_{small_label}", small["focus"].queries)
    queue_p95 = max(large[p].p95_ms for p in queue_pages)
    figure("queue_p95_ms", queue_p95, f"< {TARGET_MS:g}", queue_p95 < TARGET_MS)
    focus_p95 = large["focus"].p95_ms
    figure("focus_p95_ms", focus_p95, f"< {TARGET_MS:g}", focus_p95 < TARGET_MS)
    growth = max(large[p].queries - small[p].queries for p in PAGES)
    figure("query_count_growth", growth, "0", growth == 0)
    print(f"\ntotal: {time.perf_counter() - started:.0f}s, {load_line()}", flush=True)
    return 0


if __name__ == "__main__":
    # Run it as a module (python -m bench.review): as a file, this directory would
    # come first on sys.path and bench/generation.py would shadow the `generation` app.
    sys.exit(main())
