"""Throughput and latency of the live endpoint under gunicorn, against a bare view.

Real PostgreSQL and Redis, gunicorn with 2 workers, load from the same machine over
loopback. Prints one figure a line (`name: value (target ...)`) and asserts nothing:
the machine is shared (2 cores for the server, the load, PostgreSQL and Redis), so
read the header first.

    .venv/bin/python -m bench.delivery             # ~7 minutes (the first seed ~2 minutes more)
    .venv/bin/python -m bench.delivery --help      # sizes, durations, worker classes

The server reads `--database-url` as given, and its default asks for persistent
connections (`?conn_max_age=60`, read by django-environ): the project's settings keep
none, and a PostgreSQL connection opened for every request (connect, then a new
backend's cold catalog cache for every table the request reads) cost more than the
whole rest of a live request (84 against 287 requests/s before the live path was cut
to one query). Drop the option from the URL to measure that.

The dataset (its own database, created, migrated and seeded once, reused while its
counts match; `--reseed`): a brand, a prompt with one version, 10,000 products, 14
segments and a published variant in each of the 420,000 slots (3 languages); 1,000,000
customers (`--customers`, 100 a product), each of one segment by their attributes, and a
published one-to-one variant for every tenth of them (`--customer-variants`), all
written with COPY. Beside them, an experiment of 3 arms on every segment slot (issue
17): the base copy as control (10%), the published variant and a challenger (45% each),
stored stopped and started only for the experiment runs (4. below).

For each gunicorn worker class asked (`sync`, `gthread`), on a freshly started server
that serves the project's URLs plus `/bench/bare/` (bench/delivery_urls.py: a constant
JSON body of a live answer's size, through the same middleware in the same processes):

1. throughput: `wrk` (closed loop, `--connections` connections, one thread) on the bare
   view, then on the live endpoint, after a warm-up of each; their ratio is the target.
   bench/delivery.lua draws a random product and segment for every request, so the
   420,000 slots are hit evenly and no cache of a few answers flatters the figure.
2. latency at a fixed rate (`--rate`, 200 req/s) on the live endpoint (the target), then
   for customers (issue 17 item 6: a journey tool's call names a customer and a
   product; the customer's target is the same), then on the bare view. The load comes
   from an open-loop generator in this process
   (asyncio, raw HTTP/1.1 on keep-alive sockets), not from wrk: wrk cannot hold a rate,
   and with its Lua `delay()` each connection waits for its answer before the next
   request, so a slow answer delays the requests behind it and they are never counted
   as slow (coordinated omission). Here request i is due at start + i/rate whatever
   happened before; it takes an idle connection or opens one, and its latency runs
   from when it was due to the last byte of the answer, so a late send (the generator
   or the server falling behind) counts as latency. Rates of a few hundred a second
   cost this process a few percent of a core (printed with the figures).
3. the batch endpoint, 50 random products a call: wrk throughput, and latency at
   `--batch-rate` with the open-loop generator.
4. experiments (issue 17): every slot's experiment started (one UPDATE, then the global
   epoch bumped, as a deploy of many experiments would be), segment requests naming a
   random visitor each (an arm picked, an exposure id signed per request): wrk against
   the bare view alternated as in 1., then the same open loop at `--rate`; then the
   experiments are stopped again.

Then, in this process (no network), every block loaded first: the queries and Redis
round trips of one live request through Django's WSGI handler, the queries of a
customer's (and the plan of their one query), and a cProfile of `--profile-requests`
segment and customer requests broken down by step (token lookup, rate limit,
validation, queries, signing, JSON); then, with the experiments running, the queries of
a visitor's request, what its answer costs against a plain one, and the profile of as
many visitor requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.generation import (
    CLOCK_TICKS,
    PROJECT_DIR,
    descendants,
    ensure_database,
    figure,
    free_port,
    pids_named,
    rss_bytes,
    section,
    stop,
)
from bench.review import empty_tables, migrate, percentile

BRAND = "Benchdelivery"
PROMPT = "bench-delivery"
SKU_PREFIX = "BD-"
SEGMENT_PREFIX = "bd-"
TOKEN_NAME = "bench-delivery"
SETTINGS = "bench.delivery_settings"
LUA = Path(__file__).resolve().parent / "delivery.lua"
CUSTOMER_PREFIX = "BC-"
PURPOSE = "bench-journey"
RATIO_TARGET = 0.8
P99_TARGET_MS = 25.0
CUSTOMERS_A_PRODUCT = 100
# Every slot's experiment: the control (the base copy) and two variants.
EXPERIMENT_ARMS = 3
CONTROL_SHARE = 0.10
TIERS, BANDS = ("high", "mid", "low"), ("18-24", "25-34", "35-44", "45-54", "55+")

OPENERS = (
    "Built for the miles you actually run",
    "Made for early starts and wet trails",
    "For runners who plan the week around the long run",
    "A shoe that keeps up when the path turns rough",
    "Steady footing for weekday loops and weekend climbs",
)
MIDDLES = (
    "The mesh upper drains fast after a stream crossing, so your feet stay light.",
    "A rock plate under the forefoot softens stony descents without dulling feel.",
    "4 mm lugs bite into mud and loose gravel, and shed it again on the road.",
    "The padded collar holds the heel without pressure points on long days.",
    "A rockered sole rolls you forward when your legs start to tire.",
    "The wider toe box gives your feet room to spread on climbs.",
    "Reflective details keep you seen on dark evening runs.",
)
CLOSERS = (
    "Lace up and see where the trail takes you.",
    "Ready when you are, rain or shine.",
    "One pair for the whole training block.",
    "Go further, in comfort.",
)


# ----------------------------------------------------------------------------------
# Options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.delivery",
        description="Benchmark the live endpoint under gunicorn (prints, never asserts).",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/hyperpers_bench_delivery?conn_max_age=60",
        ),
        help="The server uses it as given; without ?conn_max_age=60 every request opens a "
        "PostgreSQL connection (the project's settings keep none by default).",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3"),
        help="A Redis db of the bench's own: it is flushed before each server starts.",
    )
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--segments", type=int, default=14)
    parser.add_argument(
        "--languages",
        default="en,de,fr",
        help="Languages with a published variant in every slot, the prompt's default first "
        "(default en,de,fr: 420,000 live slots); each request asks for one of them at "
        "random with language= (the default one too).",
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=None,
        help="Customers, each matching one segment (default 100 a product: 1,000,000 at "
        "the default 10,000 products, 20,000 at --products 200).",
    )
    parser.add_argument(
        "--customer-variants",
        type=int,
        default=None,
        help="Published one-to-one variants, one for every n-th customer (default a tenth "
        "of the customers: 100,000); a customer request for one of them asks for its product.",
    )
    parser.add_argument("--reseed", action="store_true", help="Seed again even if it fits.")
    parser.add_argument(
        "--worker-classes",
        type=lambda text: [w for w in text.split(",") if w],
        default=["sync", "gthread"],
        metavar="CLASS,CLASS",
        help="gunicorn worker classes to measure in turn (default sync,gthread).",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers.")
    parser.add_argument("--threads", type=int, default=4, help="Threads a gthread worker.")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections.")
    parser.add_argument("--duration", type=int, default=10, help="Seconds of each wrk run.")
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        # The bare view's own rate moved by up to 20% from one round to the next on
        # these machines (2026-12-07): a ratio of 2 rounds each carried about ±0.05.
        help="wrk runs of each view, alternated bare/live.",
    )
    parser.add_argument("--warmup", type=int, default=5, help="Seconds of wrk warm-up.")
    parser.add_argument("--rate", type=float, default=200.0, help="Fixed rate, requests/s.")
    parser.add_argument("--rate-duration", type=int, default=20, help="Seconds at the rate.")
    parser.add_argument("--batch-size", type=int, default=50, help="Products a batch call.")
    parser.add_argument("--batch-rate", type=float, default=20.0, help="Batch calls/s.")
    parser.add_argument(
        "--profile-requests",
        type=int,
        default=500,
        help="Live requests profiled in-process (0: no profile).",
    )
    parser.add_argument("--seed", type=int, default=1, help="Random seed of the load.")

    args = parser.parse_args(argv)
    if args.customers is None:
        args.customers = CUSTOMERS_A_PRODUCT * args.products
    if args.customer_variants is None:
        args.customer_variants = args.customers // 10
    if args.customers < 1 or not 0 <= args.customer_variants <= args.customers:
        parser.error("--customers must be >= 1 and --customer-variants at most as many")
    unknown = set(args.worker_classes) - {"sync", "gthread"}
    if unknown:
        parser.error(f"--worker-classes: {', '.join(sorted(unknown))}: use sync or gthread")
    return args


# ----------------------------------------------------------------------------------
# The data


def seeded(args: argparse.Namespace) -> bool:
    from generation.models import Brand, Customer, Product, Prompt, Segment, Variant

    variants = slots(args) + args.customer_variants
    return (
        Brand.objects.filter(name=BRAND).exists()
        and Product.objects.count() == args.products
        and Segment.objects.count() == args.segments
        and Customer.objects.count() == args.customers
        and Variant.objects.published().count() == variants
        and Variant.objects.exclude(status=Variant.Status.TESTING).count() == variants
        and Prompt.objects.filter(slug=PROMPT, languages=bench_languages(args)).exists()
    )


def experiments_seeded(args: argparse.Namespace) -> bool:
    from generation.models import Variant
    from review.models import Experiment, ExperimentArm, ExperimentWeights

    n = slots(args)
    return (
        Experiment.objects.count() == n
        and ExperimentArm.objects.count() == EXPERIMENT_ARMS * n
        and ExperimentWeights.objects.count() == n
        and Variant.objects.filter(status=Variant.Status.TESTING).count() == n
    )


def bench_languages(args: argparse.Namespace) -> list[str]:
    return [tag.strip() for tag in args.languages.split(",") if tag.strip()]


def slots(args: argparse.Namespace) -> int:
    return args.products * args.segments * len(bench_languages(args))


def segment_rules(s: int) -> dict[str, str]:
    """Segment s's rules; customer i has those of segment i % --segments, so each
    customer matches exactly one segment (the "n" rule)."""
    return {"value_tier": TIERS[s % 3], "age_band": BANDS[s % 5], "n": str(s)}


def customer_language(args: argparse.Namespace, i: int) -> str:
    """Customer i's language: the bench's languages in turn, whatever their segment."""
    tags = bench_languages(args)
    return tags[(i // args.segments) % len(tags)]


def customer_stride(args: argparse.Namespace) -> int:
    """Every this many customers, one has a published variant of their own."""
    return max(1, args.customers // args.customer_variants) if args.customer_variants else 0


def own_product(args: argparse.Namespace, i: int) -> int | None:
    """The product of customer i's own variant, or None when they have none."""
    stride = customer_stride(args)
    if not stride or i % stride or i // stride >= args.customer_variants:
        return None
    return (i // stride) * 7919 % args.products


def customer_text(i: int, p: int) -> str:
    return (
        f"Written for customer {i}: the {BRAND} Trail Runner {p} is back in your size, "
        "and your next long run deserves fresh cushioning. "
        + " ".join(MIDDLES[(i + k) % len(MIDDLES)] for k in range(3))
    )


def copy_rows(model: Any, rows: Iterator[Any]) -> int:
    """COPY model instances into their table: each field prepared as Django saves it
    (defaults, auto_now, JSON), the primary key left to the database."""
    from django.db import connection

    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    n = 0
    statement = f"COPY {model._meta.db_table} ({columns}) FROM STDIN"
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for obj in rows:
            copy.write_row([f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields])
            n += 1
    return n


def challenger_text(p: int, s: int, language: str = "en") -> str:
    """A second approved variant of the slot, about as long, written otherwise."""
    return (f"[{language}] " if language != "en" else "") + " ".join(
        (
            f"New season, same trails: the {BRAND} Trail Runner {p}, tested by runners "
            f"who go {('easy', 'hard', 'long')[s % 3]}.",
            MIDDLES[(p + 3) % len(MIDDLES)],
            MIDDLES[(p + s + 4) % len(MIDDLES)],
            "Priced at 129, with free returns for 60 days if the fit is not right.",
            CLOSERS[(p + s + 1) % len(CLOSERS)],
        )
    )


def variant_text(p: int, s: int, language: str = "en") -> str:
    """About 400 characters, different for each slot (and language)."""
    return (f"[{language}] " if language != "en" else "") + " ".join(
        (
            f"{OPENERS[(p + s) % len(OPENERS)]}: the {BRAND} Trail Runner {p}.",
            MIDDLES[p % len(MIDDLES)],
            MIDDLES[(p + s + 1) % len(MIDDLES)],
            MIDDLES[(p * 3 + s + 2) % len(MIDDLES)],
            f"Priced at 129, a pair for the group that runs {('easy', 'hard', 'long')[s % 3]}.",
            CLOSERS[(p + s) % len(CLOSERS)],
        )
    )


def seed(args: argparse.Namespace) -> None:
    """A brand, a prompt and its version, the products, the segments, a published
    variant in every slot (product × segment × language), the customers, and a published
    variant of their own for every n-th customer (customer_stride), in one transaction."""
    from django.db import connection, transaction
    from django.utils import timezone

    from generation.models import (
        Brand,
        Customer,
        Product,
        Prompt,
        PromptVersion,
        Segment,
        Variant,
    )

    now = timezone.now()
    with transaction.atomic():
        brand = Brand.objects.create(
            name=BRAND,
            voice=f"You write for {BRAND}, a sports brand. Warm, direct, practical.",
            protected_terms=[BRAND],
        )
        prompt = Prompt.objects.create(
            slug=PROMPT,
            name="Bench delivery product page",
            brand=brand,
            max_length=600,
            languages=bench_languages(args),
        )
        version = PromptVersion.objects.create(
            prompt=prompt,
            number=1,
            template="Rewrite {product_name} for {segment_name}.\n{product_description}",
            model="offline-writer-1",
        )
        copy_rows(
            Product,
            (
                Product(
                    sku=f"{SKU_PREFIX}{p:06d}",
                    name=f"{BRAND} Trail Runner {p}",
                    category="Run",
                    subcategory="Running Shoes",
                    description=(
                        f"A cushioned trail shoe, model {p}. The mesh upper drains quickly and "
                        "a rock plate under the forefoot takes the sting out of stony descents."
                    ),
                    attributes={"price": "129.00", "material": "mesh, EVA foam, rubber"},
                )
                for p in range(args.products)
            ),
        )
        segments = Segment.objects.bulk_create(
            Segment(
                slug=f"{SEGMENT_PREFIX}{s:02d}",
                name=f"{TIERS[s % 3].title()} value, {BANDS[s % 5]} ({s})",
                rules=segment_rules(s),
                member_count=200 + 37 * s,
            )
            for s in range(args.segments)
        )
        product_ids = list(Product.objects.order_by("sku").values_list("id", flat=True))
        copy_rows(
            Variant,
            (
                Variant(
                    prompt_id=prompt.pk,
                    prompt_version_id=version.pk,
                    product_id=product_id,
                    segment_id=segment.pk,
                    status=Variant.Status.PUBLISHED,
                    text=variant_text(p, s, language),
                    original_text=variant_text(p, s, language),
                    rationale="Speaks to the segment's main activity.",
                    model="offline-writer-1",
                    language=language,
                    generated=now,
                    published=now,
                )
                for p, product_id in enumerate(product_ids)
                for s, segment in enumerate(segments)
                for language in bench_languages(args)
            ),
        )
        copy_rows(
            Customer,
            (
                Customer(
                    external_id=f"{CUSTOMER_PREFIX}{i:07d}",
                    language=customer_language(args, i),
                    attributes={**segment_rules(i % args.segments), "orders": i % 17},
                )
                for i in range(args.customers)
            ),
        )
        customer_ids = list(Customer.objects.order_by("external_id").values_list("id", flat=True))
        stride = customer_stride(args)
        own = [
            (i, own_product(args, i)) for i in (range(0, args.customers, stride) if stride else ())
        ]
        copy_rows(
            Variant,
            (
                Variant(
                    prompt_id=prompt.pk,
                    prompt_version_id=version.pk,
                    product_id=product_ids[p],
                    customer_id=customer_ids[i],
                    status=Variant.Status.PUBLISHED,
                    text=customer_text(i, p),
                    original_text=customer_text(i, p),
                    rationale="Their size is back in stock.",
                    model="offline-writer-1",
                    language=customer_language(args, i),
                    purpose=PURPOSE,
                    generated=now,
                    published=now,
                )
                for i, p in own
                if p is not None
            ),
        )
    with connection.cursor() as cursor:
        # Autovacuum may be off on the bench machine: without statistics on the new rows
        # the planner guesses, and index-only scans visit the heap.
        for model in (Variant, Product, Segment, Prompt, Customer):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")


def seed_experiments(args: argparse.Namespace) -> None:
    """A 3-arm experiment on every segment slot (issue 17): a challenger variant
    (testing) beside the published one, the experiment (stopped: the runs start it),
    its arms (the control, the published variant, the challenger) and its shares (10%,
    45%, 45%), with COPY in one transaction, after removing any from before."""
    from django.db import connection, transaction
    from django.utils import timezone

    from generation.models import Product, Prompt, PromptVersion, Segment, Variant
    from review.models import Experiment, ExperimentArm, ExperimentWeights

    now = timezone.now()
    tables = [m._meta.db_table for m in (ExperimentWeights, ExperimentArm, Experiment)]
    with transaction.atomic():
        with connection.cursor() as cursor:
            # CASCADE: engagement events of earlier runs name these experiments. Then the
            # challengers, in one statement (Django's delete() would load each row).
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            cursor.execute(
                f"DELETE FROM {Variant._meta.db_table} WHERE status = %s",
                [Variant.Status.TESTING],
            )
        prompt = Prompt.objects.get(slug=PROMPT)
        first = PromptVersion.objects.get(prompt=prompt, number=1)
        version, _ = PromptVersion.objects.get_or_create(
            prompt=prompt,
            number=2,
            defaults={"template": first.template, "model": first.model},
        )
        product_ids = list(Product.objects.order_by("sku").values_list("id", flat=True))
        segment_ids = list(Segment.objects.order_by("slug").values_list("id", flat=True))
        copy_rows(
            Variant,
            (
                Variant(
                    prompt_id=prompt.pk,
                    prompt_version_id=version.pk,
                    product_id=product_id,
                    segment_id=segment_id,
                    status=Variant.Status.TESTING,
                    text=challenger_text(p, s, language),
                    original_text=challenger_text(p, s, language),
                    rationale="Leads with the season.",
                    model="offline-writer-1",
                    language=language,
                    generated=now,
                )
                for p, product_id in enumerate(product_ids)
                for s, segment_id in enumerate(segment_ids)
                for language in bench_languages(args)
            ),
        )
        arms: dict[tuple[int, int, str], list[int]] = {}
        for pk, product_id, segment_id, language in (
            Variant.objects.filter(prompt=prompt, segment__isnull=False)
            .order_by("status", "id")  # published before testing
            .values_list("id", "product_id", "segment_id", "language")
            .iterator(chunk_size=20_000)
        ):
            arms.setdefault((product_id, segment_id, language), []).append(pk)
        copy_rows(
            Experiment,
            (
                Experiment(
                    prompt_id=prompt.pk,
                    product_id=product_id,
                    segment_id=segment_id,
                    language=language,
                    status=Experiment.Status.STOPPED,
                    started=now,
                )
                for product_id, segment_id, language in arms
            ),
        )
        experiments = Experiment.objects.values_list(
            "id", "product_id", "segment_id", "language"
        ).iterator(chunk_size=20_000)
        by_slot = {(p, s, tag): pk for pk, p, s, tag in experiments}
        copy_rows(
            ExperimentArm,
            (
                ExperimentArm(experiment_id=by_slot[slot], variant_id=variant_id)
                for slot, variant_ids in arms.items()
                for variant_id in (None, *variant_ids)
            ),
        )
        control = CONTROL_SHARE
        copy_rows(
            ExperimentWeights,
            (
                ExperimentWeights(
                    experiment_id=by_slot[slot],
                    weights={
                        "control": control,
                        **{f"v{pk}": (1 - control) / len(variant_ids) for pk in variant_ids},
                    },
                    reason="bench",
                )
                for slot, variant_ids in arms.items()
            ),
        )
    with connection.cursor() as cursor:
        for model in (Variant, Experiment, ExperimentArm, ExperimentWeights):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")


def experiments_set(running: bool) -> None:
    """Start (or stop) every experiment of the bench in one UPDATE, then bump the global
    epoch: every web process drops its snapshot and reads each block again, with its
    experiments."""
    from django.conf import settings
    from django.db import connection

    from review.delivery import live_changed
    from review.models import Experiment

    status = Experiment.Status.RUNNING if running else Experiment.Status.STOPPED
    Experiment.objects.exclude(status=status).update(status=status)
    with connection.cursor() as cursor:
        # Autovacuum may be off here (it is on these machines). Without statistics on
        # 420,000 rows just changed, the planner reads the running experiments' index
        # whole for every bucket (20 ms, not 5); without a vacuum, each UPDATE leaves
        # 420,000 dead rows whose index entries every later query of the running
        # experiments visits: after 40 starts and stops, 17 million, and the snapshot's
        # queries of experiments took twice as long.
        cursor.execute(f"VACUUM (ANALYZE) {Experiment._meta.db_table}")
    live_changed()
    connection.close()
    # A web process trusts its snapshot this long before it reads the epochs again.
    time.sleep(settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS + 0.2)


def dataset_line() -> str:
    from django.db import connection

    from generation.models import Customer, Product, Prompt, Segment, Variant

    sizes = []
    with connection.cursor() as cursor:
        for model in (Variant, Customer):
            cursor.execute(
                "SELECT pg_size_pretty(pg_total_relation_size(%s))", [model._meta.db_table]
            )
            sizes.append(cursor.fetchone()[0])
    from review.models import Experiment

    published = Variant.objects.published()
    holdout = Prompt.objects.get(slug=PROMPT).holdout_percent
    return (
        f"data: {Product.objects.count()} products × {Segment.objects.count()} segments, "
        f"{published.filter(segment__isnull=False).count()} published segment variants, "
        f"{Experiment.objects.count()} experiments of {EXPERIMENT_ARMS} arms "
        f"({Variant.objects.filter(status=Variant.Status.TESTING).count()} challengers); "
        f"{Customer.objects.count()} customers, {published.filter(customer__isnull=False).count()}"
        f" published one-to-one variants, holdout {holdout}%; "
        f"variants table {sizes[0]}, customers table {sizes[1]}"
    )


def fresh_token() -> str:
    """A read token with no practical rate limit (the limit is still counted in Redis)."""
    from review.auth import api_token_create
    from review.models import ApiToken

    ApiToken.objects.filter(name=TOKEN_NAME).delete()
    _token, key = api_token_create(name=TOKEN_NAME, kind="read", rate_per_minute=10**9)
    return key


# ----------------------------------------------------------------------------------
# CPU of each party


def cpu_fields(pid: int) -> tuple[float, float]:
    """(own CPU seconds, CPU seconds of its reaped children) of one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, (
        int(fields[13]) + int(fields[14])
    ) / CLOCK_TICKS


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of the roots, every live process below them, and the children they
    reaped: a PostgreSQL backend that ended during a run still counts, through its
    postmaster."""
    total = sum(cpu_fields(pid)[0] for pid in descendants(roots))
    return total + sum(cpu_fields(pid)[1] for pid in roots)


def postmasters() -> list[int]:
    pids = set(pids_named("postgres"))
    roots = []
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid not in pids:
                roots.append(pid)
    return roots


class CpuMeter:
    """Cores used by each party between enter and exit (PostgreSQL and Redis whole,
    whoever else uses them; the load generator through `load`)."""

    def __init__(self, server_pid: int, load: str) -> None:
        self.load = load
        self.parties: dict[str, Callable[[], float]] = {
            "gunicorn": lambda: tree_cpu([server_pid]),
            "postgres": lambda: tree_cpu(postmasters()),
            "redis": lambda: tree_cpu(pids_named("redis-server")),
        }
        if load == "wrk":
            # wrk is the only child this process waits for during the run.
            children = resource.RUSAGE_CHILDREN
            self.parties["wrk"] = lambda: (
                resource.getrusage(children).ru_utime + resource.getrusage(children).ru_stime
            )
        else:
            self.parties["generator"] = time.process_time

    def __enter__(self) -> CpuMeter:
        self.first = {name: read() for name, read in self.parties.items()}
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.started
        self.cores = {
            name: (read() - self.first[name]) / self.elapsed for name, read in self.parties.items()
        }

    def line(self) -> str:
        return "cores used: " + ", ".join(f"{n} {c:.2f}" for n, c in self.cores.items())


def established(port: int) -> set[str]:
    """Socket inodes of the established TCP connections whose local port is `port`."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # local address "HEXIP:HEXPORT", state 01 = ESTABLISHED, inode field 9
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    inodes.add(fields[9])
    return inodes


def connections_held(pid: int, inodes: set[str]) -> int:
    """How many of those sockets process `pid` holds."""
    held = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(entry.path)
                held += link.startswith("socket:[") and link[8:-1] in inodes
    return held


class ConnectionSplit:
    """How a gthread server's kept-alive connections sat on its workers during a run,
    sampled every half second, so that a round slowed by a skewed split (all 16 on one
    worker once halved a round: see Server) can be told from one slowed by something
    else (the slow gthread rounds of 2026-12-07 were 8/8: bench/README.md). Nothing
    for a sync server (it closes each connection after its answer)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.samples: Counter = Counter()
        self._stop = threading.Event()

    def __enter__(self) -> ConnectionSplit:
        if self.server.worker_class == "gthread":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        pid = self.server.process.pid
        while not self._stop.wait(0.5):
            inodes = established(self.server.port)
            workers = [w for w in descendants([pid]) if w != pid]
            held = sorted((connections_held(w, inodes) for w in workers), reverse=True)
            if sum(held):
                self.samples[tuple(held)] += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.server.worker_class == "gthread":
            self._thread.join()

    def line(self) -> str:
        """The splits seen, most often first: "connections a worker 8/8 (14), 12/4 (3)"."""
        if not self.samples:
            return ""
        seen = ", ".join(
            f"{'/'.join(map(str, split))} ({n})" for split, n in self.samples.most_common(3)
        )
        return f"; connections a worker {seen}"


# ----------------------------------------------------------------------------------
# The server


class Server:
    """gunicorn on a free loopback port, serving bench/delivery_settings.py."""

    def __init__(self, args: argparse.Namespace, worker_class: str, logs: Path) -> None:
        self.port = free_port()
        self.worker_class = worker_class
        command = [
            str(Path(sys.executable).parent / "gunicorn"),
            "hyperpers.wsgi:application",
            "--workers",
            str(args.workers),
            "--worker-class",
            worker_class,
            "--bind",
            f"127.0.0.1:{self.port}",
            "--backlog",
            "2048",
            "--keep-alive",
            "5",
            "--log-level",
            "warning",
        ]
        if worker_class == "gthread":
            # A gthread worker keeps its connections alive, and whichever worker
            # accepts first takes them: wrk's 16 connections often all landed on one
            # worker, and a round measured one core of two (bare and live alike: 968
            # and 2,926 requests/s in two rounds of one run, gunicorn at 1.0 and 1.6
            # cores). Capping each worker at its share of the connections plus its
            # threads (gunicorn keeps alive at most the cap less the threads) spreads
            # them as a load balancer would, at worst 12 and 4.
            cap = -(-args.connections // args.workers) + args.threads
            command += ["--threads", str(args.threads), "--worker-connections", str(cap)]
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(PROJECT_DIR),
        }
        self.log = logs / f"gunicorn-{worker_class}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command,
                cwd=PROJECT_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited ({self.process.returncode}); see {self.log}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.base}/bench/bare/", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise SystemExit(f"gunicorn did not answer within {timeout:.0f}s; see {self.log}")

    def get(self, path: str, key: str) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.base + path, headers={"Authorization": f"Bearer {key}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def close(self) -> None:
        stop(self.process, timeout=10)


# ----------------------------------------------------------------------------------
# Load: wrk (closed loop, as fast as it goes) and an open loop at a fixed rate


@dataclass
class Load:
    requests: int
    seconds: float
    errors: dict[str, int]
    latencies_ms: list[float] = field(default_factory=list)  # open loop: every request
    paths: list[str] = field(default_factory=list)  # open loop: each latency's request
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    cores: str = ""
    extra: str = ""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def wrk_environment(args: argparse.Namespace, mode: str, key: str) -> dict[str, str]:
    return {
        **os.environ,
        "BENCH_MODE": mode,
        "BENCH_TOKEN": key,
        "BENCH_PROMPT": PROMPT,
        "BENCH_PRODUCTS": str(args.products),
        "BENCH_SEGMENTS": str(args.segments),
        "BENCH_BATCH": str(args.batch_size),
        "BENCH_SEED": str(args.seed),
        "BENCH_SKU_PREFIX": SKU_PREFIX,
        "BENCH_SEGMENT_PREFIX": SEGMENT_PREFIX,
        "BENCH_LANGUAGES": ",".join(bench_languages(args)),
    }


def run_wrk(args: argparse.Namespace, server: Server, mode: str, key: str, seconds: int) -> Load:
    command = [
        "wrk",
        "-t1",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        server.base,
    ]
    with CpuMeter(server.process.pid, "wrk") as meter, ConnectionSplit(server) as split:
        done = subprocess.run(
            command, env=wrk_environment(args, mode, key), capture_output=True, text=True
        )
    found = re.search(r"^WRK_JSON (.+)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not found:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    figures = json.loads(found.group(1))
    latency = figures["latency_us"]
    return Load(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        errors={k: v for k, v in figures["errors"].items() if v},
        p50_ms=latency["p50"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        cores=meter.line(),
        extra=f"{figures['bytes'] / max(1, figures['requests']):.0f} bytes a response"
        + split.line(),
    )


def combined(loads: list[Load]) -> Load:
    """Rounds of one view as one: summed requests and time, the worst latencies."""
    errors: Counter = Counter()
    for load in loads:
        errors.update(load.errors)
    return Load(
        requests=sum(load.requests for load in loads),
        seconds=sum(load.seconds for load in loads),
        errors=dict(errors),
        p50_ms=max(load.p50_ms for load in loads),
        p99_ms=max(load.p99_ms for load in loads),
        max_ms=max(load.max_ms for load in loads),
    )


async def _open_loop(
    port: int, paths: Iterator[str], key: str, rate: float, seconds: float
) -> tuple[list[float], list[str], float, Counter, int, float]:
    """Send request i at start + i/rate on an idle keep-alive connection (or a new one);
    its latency runs from that due time to the answer's last byte."""
    loop = asyncio.get_running_loop()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    answered: list[str] = []
    errors: Counter = Counter()
    opened = 0
    last_done = 0.0
    worst_lag = 0.0
    total = int(rate * seconds)
    start = loop.time() + 0.05

    async def exchange(conn: tuple[Any, Any], request: bytes) -> tuple[int, bool]:
        reader, writer = conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        else:
            await reader.read()
        return status, headers.get("connection", "").lower() == "close"

    async def one(due: float, path: str) -> None:
        nonlocal opened, last_done
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n\r\n"
        ).encode()
        for attempt in (1, 2):
            reused = attempt == 1 and bool(idle)
            conn = idle.pop() if reused else None
            try:
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", port)
                    opened += 1
                status, close = await exchange(conn, request)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                if conn is not None:
                    conn[1].close()
                if reused and attempt == 1:
                    continue  # the server closed an idle connection: once more, on a new one
                errors[type(exc).__name__] += 1
                return
            break
        now = loop.time()
        last_done = max(last_done, now)
        latencies.append((now - due) * 1000)
        answered.append(path)
        if status != 200:
            errors[f"http_{status}"] += 1
        if close:
            conn[1].close()
        else:
            idle.append(conn)

    tasks = set()
    for i in range(total):
        due = start + i / rate
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            worst_lag = max(worst_lag, -wait)
        task = asyncio.create_task(one(due, next(paths)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    for _reader, writer in idle:
        writer.close()
    return latencies, answered, max(last_done - start, 1e-9), errors, opened, worst_lag * 1000


def run_open_loop(
    server: Server, paths: Iterator[str], key: str, rate: float, seconds: float
) -> Load:
    with CpuMeter(server.process.pid, "generator") as meter:
        latencies, answered, elapsed, errors, opened, lag = asyncio.run(
            _open_loop(server.port, paths, key, rate, seconds)
        )
    return Load(
        requests=len(latencies),
        seconds=elapsed,
        errors=dict(errors),
        latencies_ms=latencies,
        paths=answered,
        p50_ms=percentile(latencies, 0.5) if latencies else float("nan"),
        p99_ms=percentile(latencies, 0.99) if latencies else float("nan"),
        max_ms=max(latencies, default=float("nan")),
        cores=meter.line(),
        extra=f"{opened} connections opened, generator's worst late send {lag:.1f} ms",
    )


def random_paths(args: argparse.Namespace, mode: str, salt: int) -> Iterator[str]:
    rng = random.Random(args.seed * 7919 + salt)
    base = {"live": "/api/v1/live/", "bare": "/bench/bare/"}
    tags = bench_languages(args)
    while True:
        if mode == "customer":
            # A journey tool's call: a customer and a product, no language (the
            # customer's own). A customer with a variant of their own is asked about
            # its product (a tenth of them at the defaults); the others about any.
            i = rng.randrange(args.customers)
            p = own_product(args, i)
            p = rng.randrange(args.products) if p is None else p
            yield (
                f"/api/v1/live/?prompt={PROMPT}&product={SKU_PREFIX}{p:06d}"
                f"&customer={CUSTOMER_PREFIX}{i:07d}"
            )
            continue
        segment = f"{SEGMENT_PREFIX}{rng.randrange(args.segments):02d}"
        language = f"&language={rng.choice(tags)}" if tags else ""
        if mode == "visitor":  # a segment request naming a new anonymous visitor
            sku = f"{SKU_PREFIX}{rng.randrange(args.products):06d}"
            yield (
                f"/api/v1/live/?prompt={PROMPT}&product={sku}&segment={segment}{language}"
                f"&visitor={rng.getrandbits(64):016x}"
            )
            continue
        if mode == "batch":
            skus = ",".join(
                f"{SKU_PREFIX}{rng.randrange(args.products):06d}" for _ in range(args.batch_size)
            )
            yield f"/api/v1/live/batch/?prompt={PROMPT}&segment={segment}&products={skus}{language}"
        else:
            sku = f"{SKU_PREFIX}{rng.randrange(args.products):06d}"
            yield f"{base[mode]}?prompt={PROMPT}&product={sku}&segment={segment}{language}"


def customer_kinds_line(args: argparse.Namespace, load: Load, holdout: int) -> None:
    """The customer run's latencies by what each request was answered with."""
    kinds: dict[str, list[float]] = {}
    for path, latency in zip(load.paths, load.latencies_ms, strict=True):
        kinds.setdefault(customer_kind(args, path, holdout), []).append(latency)
    print(
        "    by answer: "
        + "; ".join(
            f"{kind} {len(found)} ({len(found) / len(load.paths):.0%}): p50 "
            f"{percentile(found, 0.5):.1f} ms, p99 {percentile(found, 0.99):.1f} ms"
            for kind, found in sorted(kinds.items())
        ),
        flush=True,
    )


def load_line(label: str, load: Load) -> None:
    errors = ", ".join(f"{k} {v}" for k, v in sorted(load.errors.items())) or "none"
    print(
        f"  {label}: {load.requests} requests in {load.seconds:.1f}s = {load.rate:.0f}/s; "
        f"latency p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms, max {load.max_ms:.1f} ms; "
        f"errors {errors}; {load.extra}",
        flush=True,
    )
    print(f"    {load.cores}", flush=True)


# ----------------------------------------------------------------------------------
# In-process: queries, Redis round trips, profile


def wsgi_get(app: Any, path: str, key: str) -> tuple[int, bytes]:
    """One request through Django's WSGI handler as gunicorn makes it (the response is
    closed, so request_finished runs and a non-persistent connection is closed)."""
    parts = urllib.parse.urlsplit(path)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": parts.path,
        "QUERY_STRING": parts.query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    status = []
    result = app(environ, lambda s, h, exc_info=None: status.append(int(s.split()[0])))
    try:
        body = b"".join(result)
    finally:
        result.close()
    return status[0], body


@contextlib.contextmanager
def counting_redis() -> Iterator[Counter]:
    """Count round trips to Redis (commands and pipelines) while inside."""
    from redis.connection import AbstractConnection

    counts: Counter = Counter()
    original = AbstractConnection.send_packed_command

    def send(self: Any, command: Any, check_health: bool = True) -> Any:
        counts["round_trips"] += 1
        return original(self, command, check_health)

    AbstractConnection.send_packed_command = send
    try:
        yield counts
    finally:
        AbstractConnection.send_packed_command = original


# Steps of a live request, found in the profile by (file ending, function name). They
# nest (a query runs inside live_copy), so they do not add up to the total.
STEPS = (
    ("whole request (Django's WSGI handler)", "django/core/handlers/wsgi.py", "__call__"),
    ("  middleware and routing, outside the view", None, None),
    ("  the live view (fast path, else DRF)", "review/rest/live.py", "live"),
    ("    fast path (_fast_live)", "review/rest/live.py", "_fast_live"),
    ("      token lookup (active_token)", "review/auth.py", "active_token"),
    ("      rate limit (token_rate_wait, Redis a lease)", "review/auth.py", "token_rate_wait"),
    ("      snapshot (live_from_snapshot)", "review/delivery.py", "live_from_snapshot"),
    ("      snapshot (rendered_from_snapshot)", "review/delivery.py", "rendered_from_snapshot"),
    ("        loading blocks (SQL)", "review/delivery.py", "_load_block"),
    ("        an arm picked (pick)", "review/experiments/allocation.py", "pick"),
    ("        the visitor's hash (visitor_hash)", "review/delivery.py", "visitor_hash"),
    ("        exposure ids signed (_exposure_id)", "review/delivery.py", "_exposure_id"),
    ("        the body written (Live.body)", "review/delivery.py", "body"),
    ("      as_dict (DRF's answers)", "review/delivery.py", "as_dict"),
    ("      ETag (json.dumps + sha1)", "review/rest/live.py", "_etag"),
    ("    DRF view dispatch (off the fast path)", "rest_framework/views.py", "dispatch"),
    ("      live_copy (snapshot, else database)", "review/delivery.py", "live_copy"),
    ("        customer path (_live_for_customer)", "review/delivery.py", "_live_for_customer"),
    ("          customer, own variants (one query)", "review/delivery.py", "_customer_with_own"),
    ("        database path: the audience", "review/delivery.py", "_audience"),
    ("  all SQL (cursor execute)", "django/db/backends/utils.py", "_execute"),
    ("  connecting to PostgreSQL", "django/db/backends/base/base.py", "connect"),
    ("  closing connections (request_finished)", "django/db/__init__.py", "close_old_connections"),
    ("  all Redis commands", "redis/client.py", "execute_command"),
    ("  Redis pipelines", "redis/client.py", "execute"),
    ("  signing (django.core.signing)", "django/core/signing.py", "sign"),
)


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    return sum(
        entry[3]
        for (filename, _line, function), entry in stats.stats.items()
        if function == name and filename.endswith(suffix)
    )


def in_process(args: argparse.Namespace, key: str, holdout: int) -> None:
    """Queries and Redis round trips of one live request (a segment's, a customer's),
    the plan of a customer's query, timing and profile of many of each."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from generation.models import Customer
    from review.delivery import snapshot

    app = WSGIHandler()
    # Every block this process will serve, loaded first (a query of --products rows
    # each), as the server's warm-up does: the counts and profiles below are then the
    # steady state, not block loads.
    started = time.perf_counter()
    for s in range(args.segments):
        for tag in bench_languages(args) or [""]:
            snapshot.block(PROMPT, f"{SEGMENT_PREFIX}{s:02d}", tag)
    print(
        f"  loaded {args.segments * max(1, len(bench_languages(args)))} blocks in "
        f"{time.perf_counter() - started:.1f}s",
        flush=True,
    )
    paths = random_paths(args, "live", salt=3)
    for _ in range(20):
        wsgi_get(app, next(paths), key)
    with CaptureQueriesContext(connection) as captured, counting_redis() as redis_counts:
        status, body = wsgi_get(app, next(paths), key)
    if status != 200:
        raise SystemExit(f"live request in-process answered {status}: {body[:300]!r}")
    figure("live_queries", len(captured.captured_queries))
    figure("live_redis_round_trips", redis_counts["round_trips"])
    print_queries(captured.captured_queries)
    batch = random_paths(args, "batch", salt=4)
    with CaptureQueriesContext(connection) as captured:
        wsgi_get(app, next(batch), key)
    figure(f"batch_{args.batch_size}_queries", len(captured.captured_queries))

    customers = random_paths(args, "customer", salt=3)
    for _ in range(20):
        wsgi_get(app, next(customers), key)
    # One request of each kind: their own variant, their segment's, the holdout's.
    asked: dict[str, str] = {}
    for _ in range(10_000):
        path = next(customers)
        asked.setdefault(customer_kind(args, path, holdout), path)
        if len(asked) == 3:
            break
    plan_sql = ""
    for kind, path in sorted(asked.items()):
        with CaptureQueriesContext(connection) as captured:
            status, body = wsgi_get(app, path, key)
        if status != 200:
            raise SystemExit(f"customer request in-process answered {status}: {body[:300]!r}")
        queries = captured.captured_queries
        if kind == "holdout":
            figure("customer_holdout_queries", len(queries))  # the database path, by design
        else:
            figure(f"customer_{kind}_queries", len(queries), "1", len(queries) == 1)
            customer_table = Customer._meta.db_table
            plan_sql = plan_sql or next(
                (q["sql"] for q in queries if customer_table in q["sql"] and "JOIN" in q["sql"]), ""
            )
        print_queries(queries)
    explain_customer_query(plan_sql)

    n = args.profile_requests
    if n:
        profile(app, paths, key, n, "segment")
        profile(app, customers, key, n, "customer")
    in_process_experiments(args, app, key)


def in_process_experiments(args: argparse.Namespace, app: Any, key: str) -> None:
    """With every experiment running: the queries of a visitor's request once the
    blocks are loaded (0: the arm is picked from the snapshot), what a visitor's answer
    costs the snapshot against a plain one, and a profile of visitor requests."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from review import delivery

    section("in-process: experiments running on every slot")
    experiments_set(True)
    try:
        started = time.perf_counter()
        for s in range(args.segments):
            for tag in bench_languages(args) or [""]:
                delivery.snapshot.block(PROMPT, f"{SEGMENT_PREFIX}{s:02d}", tag)
        print(f"  loaded the blocks again in {time.perf_counter() - started:.1f}s", flush=True)
        paths = random_paths(args, "visitor", salt=8)
        for _ in range(20):
            wsgi_get(app, next(paths), key)
        with CaptureQueriesContext(connection) as captured:
            status, body = wsgi_get(app, next(paths), key)
        if status != 200 or json.loads(body)["experiment"] is None:
            raise SystemExit(f"visitor request in-process answered {status}: {body[:300]!r}")
        queries = len(captured.captured_queries)
        figure("experiment_live_queries", queries, "0", queries == 0)
        print_queries(captured.captured_queries)
        age_check_costs(args)
        answer_costs(args)
        if args.profile_requests:
            profile(app, paths, key, args.profile_requests, "visitor (experiments)")
    finally:
        experiments_set(False)


def age_check_costs(args: argparse.Namespace, buckets: int = 64) -> None:
    """The snapshot's safety net with every block held and nothing changed: a bucket
    due by age checked (its rows' versions read, Snapshot._versions) against read
    again (the content; before the check, every bucket due by age was), one bucket at
    a time through the first blocks; and what the checks cost a process a second at
    DELIVERY_SNAPSHOT_MAX_AGE_SECONDS. Without the checker thread: this process's own
    would check the buckets made due here, or hold their claims, in the measurements'
    midst."""
    from django.conf import settings
    from django.test import override_settings

    from review import delivery

    snapshot = delivery.snapshot
    keys = [key for key in list(snapshot._blocks) if snapshot._blocks[key].slots]
    if not keys:
        return
    with override_settings(DELIVERY_SNAPSHOT_BACKGROUND_CHECKS=False):
        snapshot.stop_checker()
        _age_check_costs(args, keys, buckets)
    # The thread again, caught up with the buckets that came due meanwhile, before the
    # figures that follow: else their checks land in those figures' requests (a 500-
    # request timing read 516-597 µs a visitor request instead of ~390).
    if settings.DELIVERY_SNAPSHOT_BACKGROUND_CHECKS:
        with snapshot._lock:
            snapshot._start_checker()
        deadline = time.monotonic() + 60
        while snapshot._aged_blocks(time.monotonic()) and time.monotonic() < deadline:
            time.sleep(0.1)


def _age_check_costs(
    args: argparse.Namespace, keys: list[tuple[str, str, str]], buckets: int
) -> None:
    from django.conf import settings

    from review import delivery

    snapshot = delivery.snapshot
    checks, reads = [], []
    for b in range(buckets):
        block = snapshot._blocks[keys[b % len(keys)]]
        started = time.perf_counter()
        digests = snapshot._versions(block, [b])
        checks.append(time.perf_counter() - started)
        if digests is None:
            print("  age checks: this database keeps no row versions (buckets are read)")
            return
        if digests[b] != block.digests[b]:
            raise SystemExit(f"bucket {b}: its digest moved with nothing written")
        started = time.perf_counter()
        snapshot._reload_buckets(block, [b], list(block.epochs), time.monotonic())
        reads.append(time.perf_counter() - started)
    check_ms = statistics.median(checks) * 1000
    read_ms = statistics.median(reads) * 1000
    figure("age_check_ms_a_bucket", check_ms)
    figure("age_read_ms_a_bucket", read_ms)
    figure("age_check_to_read_ratio", check_ms / read_ms)
    per_second = (
        len(snapshot._blocks) * delivery.BUCKETS / settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
    )
    figure("age_checks_a_second_a_process_unshared", per_second)
    figure("age_check_ms_a_second_a_process_unshared", per_second * check_ms)
    shared_check_costs(args, keys[0], buckets, check_ms, per_second)


def shared_check_costs(
    args: argparse.Namespace,
    key: tuple[str, str, str],
    buckets: int,
    check_ms: float,
    per_second: float,
) -> None:
    """Checks shared by the fleet (Snapshot._shared_checks): another process (a second
    Snapshot here, on its own claims and the same Redis) checks each bucket of a block
    as it comes due and publishes it; this process's bucket, due too, takes that check.
    What taking one costs, the queries it makes (none is the point), and what the checks
    then cost each of the --workers processes a second."""
    from django.conf import settings
    from django.db import connection

    from review import delivery

    snapshot, other = delivery.snapshot, delivery.Snapshot()
    mine, theirs = snapshot._blocks[key], other.block(*key)
    if theirs is None or theirs.digests != mine.digests:
        raise SystemExit("two snapshots of one block disagree on its digests")
    max_age = settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
    queries: list[str] = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    # Neither block has a bucket due but the one each step makes due: the blocks were
    # loaded a while ago, and their own buckets would come due along the way. And no
    # check of this block is published yet: this process's checker thread published
    # those of its buckets that came due meanwhile, which the other process would take
    # (this one ignores its own), and the ages made up here would not have come due.
    for block in (mine, theirs):
        block.loaded[:] = [time.monotonic()] * delivery.BUCKETS
    delivery._redis().hdel(
        delivery.CHECKS_KEY, *(delivery._check_field(mine, b) for b in range(delivery.BUCKETS))
    )
    takes = []
    for b in range(buckets):
        for block in (mine, theirs):
            block.loaded[b] -= max_age
            block.verified -= settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS
        other.block(*key, checker=True)
        started = time.perf_counter()
        with connection.execute_wrapper(count):
            snapshot.block(*key, checker=True)
        takes.append(time.perf_counter() - started)
        if time.monotonic() - mine.loaded[b] >= max_age:
            raise SystemExit(f"bucket {b}: the other process's check was not taken")
    take_ms = statistics.median(takes) * 1000
    figure("shared_check_take_ms_a_bucket", take_ms)
    figure("shared_check_take_queries", len(queries), "0", not queries)
    for sql in sorted(set(queries)):
        print(f"  a query while taking checks: {sql[:160]}", flush=True)
    # Each bucket is checked once by the fleet and taken by the others.
    workers = args.workers
    figure(
        f"age_check_ms_a_second_a_process_shared_by_{workers}",
        per_second * (check_ms + (workers - 1) * take_ms) / workers,
    )


def answer_costs(args: argparse.Namespace, n: int = 20_000) -> None:
    """What the snapshot spends on an answer, in µs, on the same slots: a visitor's in
    an experiment (an arm picked, the visitor hashed, the exposure id signed, the body
    rendered and hashed, every request) against a slot's plain answer rendered the
    first time it is asked for (the same steps but the arm, then kept)."""
    from review import delivery

    rng = random.Random(args.seed)
    tags = bench_languages(args)
    block = delivery.snapshot.block(PROMPT, f"{SEGMENT_PREFIX}00", tags[0] if tags else "")
    if block is None or not block.slots:
        print("  (no block held: nothing to measure)", flush=True)
        return
    skus = rng.sample(sorted(block.slots), min(200, len(block.slots)))
    visitors = [f"{rng.getrandbits(64):016x}" for _ in range(n)]
    started = time.perf_counter()
    for i, visitor in enumerate(visitors):
        block.rendered(skus[i % len(skus)], visitor)
    visitor_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for i in range(n):
        sku = skus[i % len(skus)]
        block.answers.pop(sku, None)
        block.rendered(sku)
    plain_us = (time.perf_counter() - started) / n * 1e6
    figure("experiment_answer_us", visitor_us)
    figure("live_answer_first_render_us", plain_us)


def print_queries(queries: list[dict[str, Any]]) -> None:
    for query in queries:
        sql = re.sub(r"SELECT .+? FROM ", "SELECT … FROM ", query["sql"], count=1)
        print(f"    - {sql[:200]}", flush=True)


def explain_customer_query(sql: str) -> None:
    """EXPLAIN ANALYZE of a customer's one query as the server ran it: every table must
    be read through an index (customer_query_seq_scans: 0). A table of a few pages, as
    with --customers 100, is rightly read whole."""
    from django.db import connection

    if not sql:
        return
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")
        plan = [row[0] for row in cursor.fetchall()]
    print("  the customer's query, EXPLAIN (ANALYZE, BUFFERS):", flush=True)
    for line in plan:
        print(f"    {line}", flush=True)
    seq_scans = sum("Seq Scan" in line for line in plan)
    figure("customer_query_seq_scans", seq_scans, "0", seq_scans == 0)


def profile(app: Any, paths: Iterator[str], key: str, n: int, label: str) -> None:
    """Time `n` requests in this process, then profile `n` more and say where time goes."""
    section(f"in-process: {n} {label} requests")
    started, started_cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        wsgi_get(app, next(paths), key)
    wall_us = (time.perf_counter() - started) / n * 1e6
    cpu_us = (time.process_time() - started_cpu) / n * 1e6
    print(
        f"  in-process, no profiler: {wall_us:.0f} µs a {label} request, of which this "
        f"process's CPU {cpu_us:.0f} µs (the rest waits on PostgreSQL and Redis)",
        flush=True,
    )
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        wsgi_get(app, next(paths), key)
    profiler.disable()
    stats = pstats.Stats(profiler)
    whole = cumulative(stats, "django/core/handlers/wsgi.py", "__call__")
    view = cumulative(stats, "review/rest/live.py", "live")
    print(
        f"  under cProfile ({n} requests; the profiler slows Python, not waits; steps nest):",
        flush=True,
    )
    for step, suffix, name in STEPS:
        seconds = whole - view if suffix is None else cumulative(stats, suffix, name)
        if seconds:  # steps of the other path are left out
            print(
                f"    {step:<48} {seconds / n * 1e6:7.0f} µs  {seconds / whole:6.1%}",
                flush=True,
            )
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    print("  most own time (tottime):", flush=True)
    for line in out.getvalue().splitlines():
        if re.match(r"\s+\d", line):
            print(f"    {line.strip()[:150]}", flush=True)


# ----------------------------------------------------------------------------------
# The measurements


def check_answers(args: argparse.Namespace, server: Server, key: str, holdout: int) -> None:
    """A few live answers must be published variants of the slot asked for, not 404s nor
    base copy, and a few customer answers the customer's; and print the sizes of a live
    answer and the bare body."""
    sizes = {}
    for mode in ("live", "bare"):
        paths = random_paths(args, mode, salt=5)
        for _ in range(10):
            path = next(paths)
            status, body = server.get(path, key)
            if status != 200:
                raise SystemExit(f"GET {path} answered {status}: {body[:300]!r}")
            if mode == "live":
                answer = json.loads(body)
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
                if (
                    answer["source"] != "segment"
                    or answer["product"] != query["product"][0]
                    or answer["segment"] != query["segment"][0]
                    or answer["language"] != query.get("language", [answer["language"]])[0]
                ):
                    raise SystemExit(f"GET {path}: not the slot's published variant: {answer}")
            sizes[mode] = len(body)
    print(f"  body bytes: live {sizes['live']}, bare {sizes['bare']}", flush=True)
    check_customer_answers(args, server, key, holdout)


def customer_kind(args: argparse.Namespace, path: str, holdout: int) -> str:
    """What a customer request is answered with: own (their variant), holdout (the base
    copy, from the database path) or segment (their segment's variant)."""
    from generation.models import Customer, Prompt
    from review.delivery import in_holdout

    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    external_id = query["customer"][0]
    if in_holdout(Prompt(slug=PROMPT, holdout_percent=holdout), Customer(external_id=external_id)):
        return "holdout"
    p = own_product(args, int(external_id.removeprefix(CUSTOMER_PREFIX)))
    return "own" if p is not None and query["product"][0] == f"{SKU_PREFIX}{p:06d}" else "segment"


def check_customer_answers(
    args: argparse.Namespace, server: Server, key: str, holdout: int
) -> None:
    """Customer answers must be the customer's own variant, their segment's variant in
    their language, or the base copy of the holdout, as the seed says."""
    paths = random_paths(args, "customer", salt=6)
    seen: Counter = Counter()
    for _ in range(60):
        path = next(paths)
        status, body = server.get(path, key)
        if status != 200:
            raise SystemExit(f"GET {path} answered {status}: {body[:300]!r}")
        answer = json.loads(body)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        i = int(query["customer"][0].removeprefix(CUSTOMER_PREFIX))
        p = int(query["product"][0].removeprefix(SKU_PREFIX))
        kind = customer_kind(args, path, holdout)
        seen[kind] += 1
        expected = {
            "own": ("customer", customer_text(i, p), customer_language(args, i)),
            "segment": ("segment", answer["text"], customer_language(args, i)),
            "holdout": ("base_copy", answer["text"], answer["language"]),
        }[kind]
        if (
            (answer["source"], answer["text"], answer["language"]) != expected
            or answer["customer"] != query["customer"][0]
            or answer["segment"] != f"{SEGMENT_PREFIX}{i % args.segments:02d}"
            or (kind == "holdout") != (answer["fallback_reason"] == "holdout")
        ):
            raise SystemExit(f"GET {path}: not the customer's copy ({kind}): {answer}")
    print(
        "  customer answers checked: " + ", ".join(f"{k} {n}" for k, n in sorted(seen.items())),
        flush=True,
    )


def warm_until_steady(
    args: argparse.Namespace, server: Server, key: str, mode: str = "live"
) -> float:
    """Warm the live endpoint until each process holds the blocks it serves: wrk runs of
    `--warmup` seconds until one is within 10% of the one before (at most 30 runs).
    With a block per segment and language asked (42 at 3 languages) a process loads
    them all first; what that costs is printed, and the rounds measure the steady state.
    Then every worker must hold every block (`/bench/snapshot/`, asked until each
    worker has answered): the rate alone settled while blocks still loaded, a few a run
    at 0.5-1.2 s each, and the first rounds met them (p99 over 1 s). A latency bound
    did not tell either: a block read got faster than any bound a busy run stays under.
    """
    started, previous, runs = time.perf_counter(), None, 0
    while runs < 30:
        runs += 1
        load = run_wrk(args, server, mode, key, args.warmup)
        if (
            previous is not None
            and load.rate
            and abs(load.rate - previous) <= 0.1 * previous
            and every_block_held(args, server)
        ):
            break
        previous = load.rate
    seconds = time.perf_counter() - started
    print(
        f"  warm-up of the live endpoint ({mode}): {runs} runs of {args.warmup}s, "
        f"{seconds:.0f}s, last {load.rate:.0f}/s",
        flush=True,
    )
    return seconds


def every_block_held(args: argparse.Namespace, server: Server, asks: int = 60) -> bool:
    """Whether each of the server's workers holds a block for every segment and language
    the load asks for, by asking `/bench/snapshot/` until every worker has answered (a
    new connection each time: the kernel hands it to any worker)."""
    from concurrent.futures import ThreadPoolExecutor

    def ask(_: int) -> tuple[int, int]:
        with urllib.request.urlopen(f"{server.base}/bench/snapshot/", timeout=10) as answer:
            found = json.loads(answer.read())
        return found["pid"], found["blocks"]

    wanted = args.segments * max(1, len(bench_languages(args)))
    held: dict[int, int] = {}
    # Several at once: an idle worker that always wins the accept would answer them all.
    with ThreadPoolExecutor(max_workers=2 * args.workers) as pool:
        for pid, blocks in pool.map(ask, range(asks)):
            held[pid] = max(held.get(pid, 0), blocks)
    return len(held) >= args.workers and min(held.values()) >= wanted


def check_experiment_answers(args: argparse.Namespace, server: Server, key: str) -> None:
    """With the experiments running, a visitor's answer must be one of the slot's three
    arms with its own text (the control: the base copy), its exposure id saying so and
    randomized; without a visitor, the published variant, not randomized."""
    from review.delivery import Exposure

    paths = random_paths(args, "visitor", salt=7)
    seen: Counter = Counter()
    for _ in range(60):
        path = next(paths)
        status, body = server.get(path, key)
        if status != 200:
            raise SystemExit(f"GET {path} answered {status}: {body[:300]!r}")
        answer = json.loads(body)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        p = int(query["product"][0].removeprefix(SKU_PREFIX))
        s = int(query["segment"][0].removeprefix(SEGMENT_PREFIX))
        language = query.get("language", ["en"])[0]
        exposure = Exposure.decode(answer["exposure_id"])
        if answer["arm"] == "control":
            kind = "control"
            expected = answer["source"] == "base_copy" and answer["text"].startswith(
                "A cushioned trail shoe"
            )
        else:
            kind = "published" if answer["text"] == variant_text(p, s, language) else "challenger"
            expected = answer["arm"] == f"v{answer['variant_id']}" and answer["text"] in (
                variant_text(p, s, language),
                challenger_text(p, s, language),
            )
        if not (
            expected
            and answer["experiment"] is not None
            and exposure.experiment_id == answer["experiment"]
            and exposure.arm == answer["arm"]
            and exposure.randomized
        ):
            raise SystemExit(f"GET {path}: not an arm of the slot's experiment: {answer}")
        seen[kind] += 1
    path = next(random_paths(args, "live", salt=7))
    status, body = server.get(path, key)
    answer = json.loads(body)
    exposure = Exposure.decode(answer["exposure_id"])
    if status != 200 or answer["source"] != "segment" or exposure.randomized:
        raise SystemExit(f"GET {path}: not the published variant, not randomized: {answer}")
    print(
        "  experiment answers checked: " + ", ".join(f"{k} {n}" for k, n in sorted(seen.items())),
        flush=True,
    )


def measure_server(
    args: argparse.Namespace, worker_class: str, key: str, logs: Path, holdout: int
) -> dict:
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    label = worker_class if worker_class == "sync" else f"gthread ({args.threads} threads)"
    section(f"gunicorn -w {args.workers}, {label}")
    server = Server(args, worker_class, logs)
    try:
        check_answers(args, server, key, holdout)
        results: dict[str, Load] = {}
        run_wrk(args, server, "bare", key, args.warmup)
        warm_up = warm_until_steady(args, server, key)
        # Alternated, so that whatever else the machine does weighs on both alike.
        rounds: dict[str, list[Load]] = {"bare": [], "live": []}
        for number in range(1, args.rounds + 1):
            for mode in ("bare", "live"):
                rounds[mode].append(run_wrk(args, server, mode, key, args.duration))
                load_line(f"wrk -c{args.connections} {mode}, round {number}", rounds[mode][-1])
        results.update({mode: combined(loads) for mode, loads in rounds.items()})
        # The segment path, then customers (a journey tool's calls), then the bare view.
        for mode in ("live", "customer", "bare"):
            paths = random_paths(args, mode, salt=1)
            run_open_loop(server, paths, key, args.rate, 3)
            results[f"{mode}_rate"] = run_open_loop(
                server, paths, key, args.rate, args.rate_duration
            )
            load_line(f"open loop at {args.rate:g}/s {mode}", results[f"{mode}_rate"])
            if mode == "customer":
                customer_kinds_line(args, results["customer_rate"], holdout)
        run_wrk(args, server, "batch", key, args.warmup)
        results["batch"] = run_wrk(args, server, "batch", key, args.duration)
        load_line(f"wrk -c{args.connections} batch of {args.batch_size}", results["batch"])
        paths = random_paths(args, "batch", salt=2)
        results["batch_rate"] = run_open_loop(
            server, paths, key, args.batch_rate, args.rate_duration
        )
        load_line(f"open loop at {args.batch_rate:g}/s batch", results["batch_rate"])
        # Each worker holds the snapshot of the copy it served (every block by now).
        server_rss = rss_bytes(descendants([server.process.pid]))
        experiment_loads, experiment_warm_up = measure_experiments(args, server, key)
        results.update(experiment_loads)
        experiment_rss = rss_bytes(descendants([server.process.pid]))
    finally:
        server.close()

    suffix = "" if len(args.worker_classes) == 1 else f"_{worker_class}"
    bare, live, rate = results["bare"], results["live"], results["live_rate"]
    figure(f"throughput_rps_bare_view{suffix}", bare.rate)
    figure(f"throughput_rps_live{suffix}", live.rate)
    ratio = live.rate / bare.rate if bare.rate else float("nan")
    figure(
        f"ratio_to_bare_view{suffix}",
        ratio,
        f">= {RATIO_TARGET:g}",
        ratio >= RATIO_TARGET and not live.error_count,
    )
    figure(f"rate_achieved_rps{suffix}", rate.rate, f"{args.rate:g}")
    figure(f"p50_ms_at_{args.rate:g}rps{suffix}", rate.p50_ms)
    figure(
        f"p99_ms_at_{args.rate:g}rps{suffix}",
        rate.p99_ms,
        f"< {P99_TARGET_MS:g}",
        rate.p99_ms < P99_TARGET_MS and not rate.error_count,
    )
    figure(f"max_ms_at_{args.rate:g}rps{suffix}", rate.max_ms)
    figure(f"bare_view_p99_ms_at_{args.rate:g}rps{suffix}", results["bare_rate"].p99_ms)
    customer = results["customer_rate"]
    figure(f"customer_rate_achieved_rps{suffix}", customer.rate, f"{args.rate:g}")
    figure(f"customer_p50_ms_at_{args.rate:g}rps{suffix}", customer.p50_ms)
    figure(
        f"customer_p99_ms_at_{args.rate:g}rps{suffix}",
        customer.p99_ms,
        f"< {P99_TARGET_MS:g}",
        customer.p99_ms < P99_TARGET_MS and not customer.error_count,
    )
    figure(f"customer_max_ms_at_{args.rate:g}rps{suffix}", customer.max_ms)
    # Same rate, same server, a minute apart: what a customer costs over a segment.
    figure(
        f"customer_to_segment_p99_ratio{suffix}",
        customer.p99_ms / rate.p99_ms if rate.p99_ms else float("nan"),
    )
    batch, batch_rate = results["batch"], results["batch_rate"]
    figure(f"batch_{args.batch_size}_throughput_rps{suffix}", batch.rate)
    figure(f"batch_{args.batch_size}_products_per_s{suffix}", batch.rate * args.batch_size)
    figure(f"batch_{args.batch_size}_p99_ms_at_{args.batch_rate:g}rps{suffix}", batch_rate.p99_ms)
    figure(f"server_rss_mb{suffix}", server_rss / 2**20)
    figure(f"live_warm_up_seconds{suffix}", warm_up)
    experiment_figures(args, results, suffix, experiment_warm_up)
    figure(f"experiment_server_rss_mb{suffix}", experiment_rss / 2**20)
    errors = sum(load.error_count for load in results.values())
    figure(f"errors{suffix}", errors, "0", errors == 0)
    return results


def measure_experiments(
    args: argparse.Namespace, server: Server, key: str
) -> tuple[dict[str, Load], float]:
    """Issue 17: every slot's experiment started, segment requests naming a visitor
    against the bare view (alternated wrk rounds after a warm-up), then at the fixed
    rate; the experiments are stopped again whatever happens. The loads, and the
    warm-up's seconds."""
    experiments_set(True)
    try:
        check_experiment_answers(args, server, key)
        warm_up = warm_until_steady(args, server, key, "visitor")
        rounds: dict[str, list[Load]] = {"bare": [], "visitor": []}
        for number in range(1, args.rounds + 1):
            for mode in ("bare", "visitor"):
                rounds[mode].append(run_wrk(args, server, mode, key, args.duration))
                load_line(
                    f"wrk -c{args.connections} {mode} (experiments), round {number}",
                    rounds[mode][-1],
                )
        paths = random_paths(args, "visitor", salt=1)
        run_open_loop(server, paths, key, args.rate, 3)
        rate = run_open_loop(server, paths, key, args.rate, args.rate_duration)
        load_line(f"open loop at {args.rate:g}/s visitor (experiments)", rate)
    finally:
        experiments_set(False)
    loads = {
        "experiment_bare": combined(rounds["bare"]),
        "experiment": combined(rounds["visitor"]),
        "experiment_rate": rate,
    }
    return loads, warm_up


def experiment_figures(
    args: argparse.Namespace, results: dict[str, Load], suffix: str, warm_up: float
) -> None:
    """The issue's figure: with 3-arm experiments on every slot, segment requests naming
    a visitor against the bare view of the same rounds, and their p99 at the rate."""
    bare, visitor, rate = (
        results["experiment_bare"],
        results["experiment"],
        results["experiment_rate"],
    )
    figure(f"experiment_throughput_rps_bare_view{suffix}", bare.rate)
    figure(f"experiment_throughput_rps_visitor{suffix}", visitor.rate)
    ratio = visitor.rate / bare.rate if bare.rate else float("nan")
    figure(
        f"experiment_ratio_to_bare_view{suffix}",
        ratio,
        f">= {RATIO_TARGET:g}",
        ratio >= RATIO_TARGET and not visitor.error_count,
    )
    # Against the live figure without experiments, a few minutes earlier on this server.
    live = results["live"]
    figure(
        f"experiment_to_live_throughput_ratio{suffix}",
        visitor.rate / live.rate if live.rate else float("nan"),
    )
    figure(f"experiment_rate_achieved_rps{suffix}", rate.rate, f"{args.rate:g}")
    figure(f"experiment_p50_ms_at_{args.rate:g}rps{suffix}", rate.p50_ms)
    figure(
        f"experiment_p99_ms_at_{args.rate:g}rps{suffix}",
        rate.p99_ms,
        f"< {P99_TARGET_MS:g}",
        rate.p99_ms < P99_TARGET_MS and not rate.error_count,
    )
    figure(f"experiment_max_ms_at_{args.rate:g}rps{suffix}", rate.max_ms)
    figure(f"experiment_warm_up_seconds{suffix}", warm_up)


# ----------------------------------------------------------------------------------
# Main


def loadavg() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def header(args: argparse.Namespace, created: bool) -> None:
    import gunicorn
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW max_connections")
        max_connections = cursor.fetchone()[0]
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    print(f"machine: nproc {os.cpu_count()}, {loadavg()}")
    print(f"python: {sys.version.split()[0]}, pid {os.getpid()}, gunicorn {gunicorn.__version__}")
    print(f"load: {(wrk.stdout + wrk.stderr).splitlines()[0].strip()} -t1 -c{args.connections}")
    print(f"database: {args.database_url}{' (created)' if created else ''}")
    print(f"postgresql: {version}, max_connections {max_connections}")
    print(f"redis: {args.redis_url} (flushed before each server starts)")
    conn_max_age = connection.settings_dict.get("CONN_MAX_AGE", 0)
    print(
        f"DEBUG: False; CONN_MAX_AGE {conn_max_age} "
        f"({'a new PostgreSQL connection every request' if not conn_max_age else 'persistent'})",
        flush=True,
    )


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "bench.delivery needs wrk, the HTTP load generator: on Debian or Ubuntu\n"
            "    sudo apt-get install -y wrk\n"
            "(macOS: brew install wrk). Nothing was measured.",
            file=sys.stderr,
        )
        return 2
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            # DEBUG=false refuses the development key: bring a long random one (the
            # server inherits it), unless one is set.
            "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        }
    )
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The admin connection takes no Django options such as ?conn_max_age=60.
    created = ensure_database(args.database_url.split("?")[0])
    import django

    django.setup()
    header(args, created)
    started = time.perf_counter()
    logs = Path(tempfile.mkdtemp(prefix="hyperpers-bench-delivery-"))
    try:
        migrate()
        section("data")
        if args.reseed or not seeded(args):
            seed_started = time.perf_counter()
            empty_tables()
            seed(args)
            print(
                f"seeded {args.products} products × {args.segments} segments × "
                f"{len(bench_languages(args))} languages, {args.customers} customers and "
                f"{args.customer_variants} one-to-one variants in "
                f"{time.perf_counter() - seed_started:.1f}s (COPY, VACUUM ANALYZE)",
                flush=True,
            )
        else:
            print("reusing the seeded data (--reseed to seed again)", flush=True)
        if args.reseed or not experiments_seeded(args):
            seed_started = time.perf_counter()
            seed_experiments(args)
            print(
                f"seeded {slots(args)} experiments of {EXPERIMENT_ARMS} arms in "
                f"{time.perf_counter() - seed_started:.1f}s (COPY, VACUUM ANALYZE)",
                flush=True,
            )
        experiments_set(False)  # a run interrupted with them started left them so
        print(dataset_line(), flush=True)
        key = fresh_token()
        from django.db import connection

        from generation.models import Prompt

        holdout = Prompt.objects.get(slug=PROMPT).holdout_percent
        connection.close()  # the server's workers and PostgreSQL get the machine
        for worker_class in args.worker_classes:
            measure_server(args, worker_class, key, logs, holdout)
        section("in-process: one live request, and where its time goes")
        in_process(args, key, holdout)
    except KeyboardInterrupt:
        print("\ninterrupted; the server was stopped", flush=True)
        return 130
    finally:
        print(f"\ntotal: {time.perf_counter() - started:.0f}s, {loadavg()}; logs in {logs}")
    return 0


if __name__ == "__main__":
    # Run it as a module (python -m bench.delivery): as a file, this directory would
    # come first on sys.path and bench/generation.py would shadow the `generation` app.
    sys.exit(main())
