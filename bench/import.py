"""Customer import at CDP scale: a generated 1,000,000-row file in each format, imported
into SQLite and into PostgreSQL.

    .venv/bin/python -m bench.import                 # 1M rows a format, both databases
    .venv/bin/python -m bench.import --smoke         # 2,000 rows a format (CI)
    .venv/bin/python -m bench.import --rows 100000   # a quick look
    .venv/bin/python -m bench.import --postgres-url postgres://postgres@127.0.0.1:5432/x

For each of CSV, JSON Lines and Parquet the bench writes a file of `--rows` customers
(the same customers in each, read through a column mapping with typed columns), then, on
each database, runs `manage.py import_customers --source bench` in a child process on a
fresh database and reads the child's peak resident memory (VmHWM: its own, not the
bench's, which a child's ru_maxrss would include). Three rule segments exist before the
import, so the figures include recounting them.

SQLite is a file in a temporary directory; PostgreSQL is `--postgres-url` (by default
the local server the README's services give), whose database the bench drops and
creates. A PostgreSQL it cannot reach is skipped with a line that says so.

The baseline is the same file read through the same mapping without writing
(`read_only`), in a child of its own, just before each import: the ratio shows what the
database writes cost. Figures one a line, `name: value (target ...)`: SQLite's as
`csv_...`, PostgreSQL's as `postgresql_csv_...`; nothing is asserted.
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
MEMORY_TARGET_MB = 500  # SQLite
# Issue 18: PostgreSQL, where most instances run, at half the read-only rate or better.
POSTGRES_MEMORY_TARGET_MB = 300
POSTGRES_RATIO_TARGET = 0.5
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/hyperpers_bench_import"
SMOKE_ROWS = 2000

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
# VmHWM is this process's own peak. ru_maxrss is not: Linux carries the parent's peak
# across fork and exec into it, so the bench's own memory would be counted.
try:
    with open("/proc/self/status") as status:
        hwm = next(line for line in status if line.startswith("VmHWM:"))
    result["peak_mb"] = int(hwm.split()[1]) / 1024
except (OSError, StopIteration):
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


def _seeded(url: str) -> None:
    """Migrate the database of `url` and add the bench's source and segments."""
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


def _fresh_sqlite(directory: Path, name: str) -> str:
    """A copy of the seeded template file (made on first use)."""
    template = directory / "template.sqlite3"
    if not template.exists():
        _seeded(f"sqlite:///{template}")
    path = directory / f"{name}.sqlite3"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


def _fresh_postgres(url: str, *, first: bool) -> str:
    """The URL's database, dropped and created again from a seeded template database
    (`<name>_template`, migrated once a run: migrations take longer than a smoke run's
    imports)."""
    import psycopg

    base, name = url.rsplit("/", 1)
    name = name.split("?", 1)[0]
    template = f"{name}_template"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if first:
            admin.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{template}"')
    if first:
        _seeded(f"{base}/{template}")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return url


def postgres_unreachable(url: str) -> str | None:
    """Why the server of `url` cannot be used (None when it can)."""
    import psycopg

    admin = url.rsplit("/", 1)[0] + "/postgres"
    try:
        with psycopg.connect(admin, connect_timeout=5):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _measure(
    env: dict, path: Path, rows: int, prefix: str, memory_target: int, ratio_target: float | None
) -> None:
    """Read-only, then the import, each in a child; print the figures under `prefix`."""
    read = _child(env, "read_only", str(path))
    imported = _child(env, "import", str(path))
    rate = imported["rows"] / imported["seconds"]
    read_rate = read["rows"] / read["seconds"]
    ratio = rate / read_rate
    met = imported["peak_mb"] < memory_target
    print(f"{prefix}rows_imported: {imported['rows']:,} (of {rows:,} in the file)")
    print(f"{prefix}rows_per_second: {rate:,.0f} ({imported['seconds']:.1f} s)")
    print(
        f"{prefix}peak_memory_mb: {imported['peak_mb']:.0f} "
        f"(target < {memory_target}, {'met' if met else 'NOT met'})"
    )
    print(
        f"{prefix}read_only_rows_per_second: {read_rate:,.0f} "
        f"(peak {read['peak_mb']:.0f} MB, bad rows {read['bad']})"
    )
    if ratio_target is None:
        print(f"{prefix}ratio_import_to_read_only: {ratio:.2f}")
    else:
        verdict = "met" if ratio >= ratio_target else "NOT met"
        print(
            f"{prefix}ratio_import_to_read_only: {ratio:.2f} (target >= {ratio_target}, {verdict})"
        )
    print(f"# {prefix}segment members: {imported['members']}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="rows a file (default 1,000,000)")
    parser.add_argument(
        "--smoke", action="store_true", help=f"{SMOKE_ROWS:,} rows a file, unless --rows says"
    )
    parser.add_argument(
        "--databases",
        default="sqlite,postgresql",
        help="which to import into: sqlite (a file per format in a temporary directory), "
        "postgresql (--postgres-url), or both (the default)",
    )
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
        help="a postgres:// URL whose database the bench drops and creates",
    )
    parser.add_argument("--formats", default="csv,jsonl,parquet")
    options = parser.parse_args()
    rows = options.rows or (SMOKE_ROWS if options.smoke else 1_000_000)
    databases = [d.strip() for d in options.databases.split(",") if d.strip()]
    unknown = sorted(set(databases) - {"sqlite", "postgresql"})
    if unknown:
        parser.error(f"unknown database(s) {', '.join(unknown)}: use sqlite, postgresql")

    print(f"# nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}, rows {rows:,}")
    if "postgresql" in databases:
        why = postgres_unreachable(options.postgres_url)
        if why is not None:
            host = options.postgres_url.rsplit("@", 1)[-1].rsplit("/", 1)[0]
            print(f"# PostgreSQL skipped: cannot connect to {host} ({why})")
            databases.remove("postgresql")
    with tempfile.TemporaryDirectory(prefix="hyperpers-bench-import-") as tmp:
        directory = Path(tmp)
        started = time.monotonic()
        paths = write_files(directory, rows)
        sizes = ", ".join(f"{f} {p.stat().st_size / 1e6:.0f} MB" for f, p in paths.items())
        print(f"# files written in {time.monotonic() - started:.0f} s: {sizes}")
        for number, kind in enumerate(options.formats.split(",")):
            if "sqlite" in databases:
                url = _fresh_sqlite(directory, f"bench_import_{kind}")
                _measure(_django_env(url), paths[kind], rows, f"{kind}_", MEMORY_TARGET_MB, None)
                (directory / f"bench_import_{kind}.sqlite3").unlink(missing_ok=True)
            if "postgresql" in databases:
                url = _fresh_postgres(options.postgres_url, first=number == 0)
                _measure(
                    _django_env(url),
                    paths[kind],
                    rows,
                    f"postgresql_{kind}_",
                    POSTGRES_MEMORY_TARGET_MB,
                    POSTGRES_RATIO_TARGET,
                )


if __name__ == "__main__":
    main()
