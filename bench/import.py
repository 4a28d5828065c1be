"""Customer import at CDP scale: a generated 1,000,000-row file in each format.

    .venv/bin/python -m bench.import                 # 1M rows a format, 6 to 10 minutes
    .venv/bin/python -m bench.import --rows 100000   # a quick look
    .venv/bin/python -m bench.import --database-url postgres://postgres@127.0.0.1/x

For each of CSV, JSON Lines and Parquet the bench writes a file of `--rows` customers
(the same customers in each, read through a column mapping with typed columns), then runs
`manage.py import_customers --source bench` in a child process on a fresh database,
and reads the child's peak RSS from the kernel (ru_maxrss of the waited-for child).
Three rule segments exist before the import, so the figures include recounting them.

The baseline is the same file read through the same mapping without writing
(`read_only`), in a child of its own: the ratio shows what the database writes cost.
Figures one a line, `name: value (target ...)`; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MEMORY_TARGET_MB = 500

MAPPING = {
    "columns": {
        "customer_id": "external_id",
        "lang": "language",
        "tier": {"attribute": "value_tier", "type": "choice", "choices": ["low", "medium", "high"]},
        "subcategory": "preferred_subcategory",
        "region": "region",
        "age": {"attribute": "age", "type": "integer", "min": 0, "max": 130},
        "ltv": {"attribute": "lifetime_value", "type": "number"},
        "newsletter": {"attribute": "newsletter", "type": "boolean"},
        "since": {"attribute": "customer_since", "type": "date"},
        "email": {"attribute": "email", "personal": True},
    }
}
SEGMENTS = [
    ("high-value", {"value_tier": "high"}),
    ("young-north", {"age": {"gte": 18, "lt": 30}, "region": ["north", "east"]}),
    ("loyal", {"customer_since": {"lt": "2020-01-01"}, "newsletter": True}),
]
SUBCATEGORIES = ["Running Shoes", "Hiking Footwear", "Outdoor Apparel", "Swim Gear", "Yoga"]


def _records(rows: int, seed: int = 7):
    rng = random.Random(seed)
    languages = ["en", "de", "fr", "es", "nl", "pt-br"]
    for i in range(rows):
        number = i
        yield {
            "customer_id": f"CDP{number:08d}",
            "lang": rng.choice(languages),
            "tier": rng.choice(["low", "medium", "high"]),
            "subcategory": rng.choice(SUBCATEGORIES),
            "region": rng.choice(["north", "south", "east", "west", "central"]),
            "age": rng.randrange(18, 90),
            "ltv": round(rng.uniform(0, 5000), 2),
            "newsletter": rng.random() < 0.4,
            "since": f"{rng.randrange(2012, 2026)}-{rng.randrange(1, 13):02d}-01",
            "email": f"person{number}@example.com",
        }


def write_files(directory: Path, rows: int) -> dict[str, Path]:
    """The same customers as CSV, JSON Lines and Parquet (row groups of 100,000)."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {f: directory / f"customers.{f}" for f in ("csv", "jsonl", "parquet")}
    columns = list(MAPPING["columns"])
    with (
        paths["csv"].open("w", newline="", encoding="utf-8") as csv_file,
        paths["jsonl"].open("w", encoding="utf-8") as jsonl_file,
    ):
        writer = csv.DictWriter(csv_file, fieldnames=columns)
        writer.writeheader()
        parquet = None
        chunk: list[dict] = []
        for record in _records(rows):
            writer.writerow(record)
            jsonl_file.write(json.dumps(record) + "\n")
            chunk.append(record)
            if len(chunk) == 100_000:
                parquet = _write_parquet(pa, pq, paths["parquet"], parquet, chunk)
                chunk = []
        if chunk:
            parquet = _write_parquet(pa, pq, paths["parquet"], parquet, chunk)
        parquet.close()
    return paths


def _write_parquet(pa, pq, path, writer, chunk):
    table = pa.Table.from_pylist(chunk)
    if writer is None:
        writer = pq.ParquetWriter(path, table.schema)
    writer.write_table(table)
    return writer


CHILD = r"""
import json, resource, sys, time
import django
django.setup()
from generation import audience
from generation.models import CustomerSource
mode, path = sys.argv[1], sys.argv[2]
started = time.monotonic()
if mode == "read_only":
    mapping = audience.Mapping.parse(CustomerSource.objects.get(slug="bench").mapping)
    rows = bad = 0
    for item in audience.read_customers(path, mapping=mapping):
        rows += 1
        bad += isinstance(item, audience.RowError)
    result = {"rows": rows, "bad": bad}
else:
    from django.core.management import call_command
    call_command("import_customers", path, "--source", "bench", "--no-progress")
    from generation.models import Customer, Segment
    result = {"rows": Customer.objects.count(),
              "members": {s.slug: s.member_count for s in Segment.objects.all()}}
result["seconds"] = time.monotonic() - started
result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(result))
"""


def _django_env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="hyperpers.settings",
        DATABASE_URL=database_url,
        PYTHONPATH=str(PROJECT_DIR),
        # No Redis for this bench: delivery's "live copy changed" bumps just warn.
        REDIS_URL=env.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3"),
    )
    return env


def _child(env: dict, *args: str) -> dict:
    done = subprocess.run(
        [PYTHON, "-c", CHILD, *args],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"child failed:\n{done.stdout}\n{done.stderr}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def _fresh_database(base_url: str, directory: Path, name: str, template: Path | None) -> str:
    """A migrated database with the bench source and segments: a copied SQLite file, or
    a PostgreSQL database created again."""
    if base_url.startswith("sqlite"):
        path = directory / f"{name}.sqlite3"
        if template is not None:
            shutil.copy(template, path)
            return f"sqlite:///{path}"
        url = f"sqlite:///{path}"
    else:
        url = base_url.rsplit("/", 1)[0] + f"/{name}"
        admin = base_url.rsplit("/", 1)[0] + "/postgres"
        import psycopg

        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    env = _django_env(url)
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], env=env, cwd=PROJECT_DIR, check=True)
    seed = (
        "import django, json, sys; django.setup()\n"
        "from generation import services\n"
        f"services.customer_source_save(slug='bench', mapping={MAPPING!r})\n"
        f"for slug, rules in {SEGMENTS!r}:\n"
        "    services.segment_save(slug=slug, name=slug, rules=rules)\n"
    )
    subprocess.run([PYTHON, "-c", seed], env=env, cwd=PROJECT_DIR, check=True)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--database-url",
        default="sqlite",
        help="sqlite (a file per format in a temporary directory, the default) or a "
        "postgres:// URL whose database the bench drops and creates",
    )
    parser.add_argument("--formats", default="csv,jsonl,parquet")
    options = parser.parse_args()

    print(f"# nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}, rows {options.rows:,}")
    with tempfile.TemporaryDirectory(prefix="hyperpers-bench-import-") as tmp:
        directory = Path(tmp)
        started = time.monotonic()
        paths = write_files(directory, options.rows)
        sizes = ", ".join(f"{f} {p.stat().st_size / 1e6:.0f} MB" for f, p in paths.items())
        print(f"# files written in {time.monotonic() - started:.0f} s: {sizes}")
        template = None
        if options.database_url == "sqlite":
            _fresh_database("sqlite", directory, "template", None)
            template = directory / "template.sqlite3"
        for kind in options.formats.split(","):
            url = _fresh_database(options.database_url, directory, f"bench_import_{kind}", template)
            env = _django_env(url)
            read = _child(env, "read_only", str(paths[kind]))
            imported = _child(env, "import", str(paths[kind]))
            rate = imported["rows"] / imported["seconds"]
            met = imported["peak_mb"] < MEMORY_TARGET_MB
            print(f"{kind}_rows_imported: {imported['rows']:,} (of {options.rows:,} in the file)")
            print(f"{kind}_rows_per_second: {rate:,.0f}")
            print(
                f"{kind}_peak_memory_mb: {imported['peak_mb']:.0f} "
                f"(target < {MEMORY_TARGET_MB}, {'met' if met else 'NOT met'})"
            )
            print(
                f"{kind}_read_only_rows_per_second: {read['rows'] / read['seconds']:,.0f} "
                f"(peak {read['peak_mb']:.0f} MB, bad rows {read['bad']})"
            )
            print(
                f"{kind}_ratio_import_to_read_only: {rate / (read['rows'] / read['seconds']):.2f}"
            )
            print(f"# {kind} segment members: {imported['members']}")
            sys.stdout.flush()
            if options.database_url == "sqlite":
                (directory / f"bench_import_{kind}.sqlite3").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
