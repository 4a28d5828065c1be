"""Throughput and memory of the generation engine, through real parts.

Real PostgreSQL and Redis, real `celery worker` processes, the offline writer as a
separate process over HTTP. Prints one figure a line (`name: value (target ...)`) and
asserts nothing: the machine is shared and noisy, so read the header first.

    .venv/bin/python -m bench.generation            # everything, about 30 minutes
    .venv/bin/python -m bench.generation --smoke    # every figure at small sizes, under a minute
    .venv/bin/python -m bench.generation --help     # sizes, configs, what to skip

Measurements, in order (each on a clean variants table and a flushed Redis db):

1. endpoint_limited: the writer answers in 500 ms and allows 64 calls in flight, so
   the best possible is 128 variants/s; each worker config given is tried in turn on
   a 140,000-slot run. `first_write_seconds` counts from the moment run_create
   returned (the run exists and its first slots are queued) to the first variant
   written, read from the variant's `generated` timestamp.
2. sequential_baseline: render and call one slot at a time in this process.
3. random_429: the same 500 ms and 64 calls, but the writer answers one call in 8 with
   an immediate 429 (Retry-After 1 s, budget headers showing plenty left) and one in
   25 with a 5xx; the engine runs with its default retry and AIMD settings.
4. zero_latency: the writer answers at once with no limit; what the engine itself
   costs per variant on this machine.
5. memory: peak RSS of the workers over a 14,000-slot run against a 140,000-slot
   run sampled for the same wall-clock time, then cancelled.
6. run_create: services.run_create of 10,000 products × 14 segments in this process
   (no workers), against one plain INSERT … SELECT of the same rows; then the time
   services.run_populate takes to queue the rest.

Runs as committed with nothing set by hand: it gives itself and every subprocess a
SECRET_KEY of its own, random per run (the workers run with DEBUG=false, and the
settings refuse the development key then). It exits 0 whatever the figures say.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BENCH_SKU = "BENCH-"
# random_429: what a busy provider does to a share of calls with budget left, and
# a 5xx now and then.
RANDOM_429 = {"rate_limit_rate": 0.125, "retry_after_s": 1.0, "error_5xx_rate": 0.04}
NO_FAULTS = {"rate_limit_rate": 0.0, "retry_after_s": 1.0, "error_5xx_rate": 0.0}
# --smoke: every section and figure at sizes that take under a minute on 2 cores,
# for CI; options given on the command line still win.
SMOKE = {
    "slots": 300,
    "random_429_slots": 300,
    "sequential_slots": 5,
    "zero_slots": 300,
    "zero_configs": ["1x2x16"],
    "skip_memory": True,
    "run_create_slots": 2_000,
}


# ----------------------------------------------------------------------------------
# Options and environment


@dataclass(frozen=True)
class WorkerConfig:
    """`workers` celery workers with `processes` prefork children each; a run fans out to
    `tasks` drain tasks of `threads` threads each."""

    workers: int
    processes: int
    threads: int
    tasks: int

    @classmethod
    def parse(cls, spec: str) -> WorkerConfig:
        """'1x2x32': 1 worker, --concurrency 2, 32 threads a task, tasks = 1 × 2; or
        '1x2x32x4' for 4 tasks a run."""
        try:
            parts = [int(p) for p in spec.lower().split("x")]
        except ValueError:
            parts = []
        if len(parts) not in (3, 4) or min(parts) < 1:
            raise argparse.ArgumentTypeError(
                f"{spec!r}: write WORKERSxPROCESSESxTHREADS[xTASKS], e.g. 1x2x32"
            )
        workers, processes, threads = parts[:3]
        return cls(
            workers, processes, threads, parts[3] if len(parts) == 4 else workers * processes
        )

    @property
    def spec(self) -> str:
        return f"{self.workers}x{self.processes}x{self.threads}x{self.tasks}"

    def __str__(self) -> str:
        return (
            f"{self.spec}: {self.workers} celery worker(s) --concurrency {self.processes} "
            f"(prefork), GENERATION_THREADS_PER_TASK={self.threads}, "
            f"GENERATION_TASKS_PER_RUN={self.tasks}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    if known.smoke:
        parser.set_defaults(
            **{
                name: [WorkerConfig.parse(c) for c in value] if name.endswith("configs") else value
                for name, value in SMOKE.items()
            }
        )
    return parser.parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.generation",
        description="Benchmark the generation engine through real workers (prints, never asserts).",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hyperpers_bench"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/2")
    )
    parser.add_argument("--segments", type=int, default=14, help="Segments per run (default 14).")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="Every section at small sizes (slots 300, random-429 300, sequential 5, zero "
        "300 on one config, run_create 2,000, no memory): under a minute, for CI. "
        "Options given as well still win.",
    )
    parser.add_argument(
        "--slots",
        type=int,
        default=140_000,
        help="Slots of each endpoint-limited run (default 140,000: the issue's 10,000 "
        "products × 14 segments, about 18 minutes a config).",
    )
    parser.add_argument("--latency-ms", type=float, default=500.0)
    parser.add_argument("--endpoint-concurrency", type=int, default=64)
    parser.add_argument(
        "--limited-configs",
        type=WorkerConfig.parse,
        nargs="+",
        default=[WorkerConfig.parse("2x2x16")],
        help="Worker configs to try against the limited endpoint: "
        "WORKERSxPROCESSESxTHREADS[xTASKS] (default 2x2x16, the best in bench/README.md; "
        "each takes a run of --slots).",
    )
    parser.add_argument("--sequential-slots", type=int, default=20)
    parser.add_argument(
        "--random-429-slots",
        type=int,
        default=14_000,
        help="Slots of the random_429 run (default 14,000).",
    )
    parser.add_argument(
        "--random-429-config",
        type=WorkerConfig.parse,
        default=WorkerConfig.parse("2x2x16"),
        help="Worker config of the random_429 run (default 2x2x16: the engine's default "
        "16 threads a task and 4 tasks a run).",
    )
    parser.add_argument(
        "--run-create-slots",
        type=int,
        default=140_000,
        help="Slots of the timed run_create (default 140,000: 10,000 products × 14 segments).",
    )
    parser.add_argument("--zero-slots", type=int, default=6000)
    parser.add_argument(
        "--zero-configs",
        type=WorkerConfig.parse,
        nargs="+",
        default=[WorkerConfig.parse("1x2x16"), WorkerConfig.parse("2x2x8")],
        help="Worker configs to try against the zero-latency endpoint.",
    )
    parser.add_argument("--memory-small", type=int, default=14_000, help="Slots of the short run.")
    parser.add_argument("--memory-large", type=int, default=140_000, help="Slots of the long run.")
    parser.add_argument(
        "--memory-config",
        type=WorkerConfig.parse,
        default=None,
        help="Worker config of the memory runs (default: the best zero-latency one).",
    )
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=60.0,
        help="Give up waiting on a run that has written nothing for this long.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="Run workers with DEBUG=true (Django then keeps a log of queries; off by default, "
        "as in production).",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="Time each run on new workers, without the warm-up run before it.",
    )
    parser.add_argument(
        "--celery-app",
        default="hyperpers",
        help="The workers' -A app; a module of your own (on PYTHONPATH) can patch the engine "
        "to measure a candidate change without editing it.",
    )
    for name in ("limited", "sequential", "random-429", "zero", "memory", "run-create"):
        parser.add_argument(f"--skip-{name}", action="store_true")
    return parser


def bench_environment(args: argparse.Namespace, queue: str) -> dict[str, str]:
    """What the bench process and every subprocess share (engine settings come per worker).

    The workers run with DEBUG=false, where the settings refuse the development
    SECRET_KEY: the bench brings a long random one, new each run.
    """
    return {
        "DJANGO_SETTINGS_MODULE": "hyperpers.settings",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "DEBUG": "true" if args.debug else "false",
        "LOG_LEVEL": "WARNING",
        "LLM_CONCURRENCY": str(args.endpoint_concurrency),
        "PYTHONUNBUFFERED": "1",
    }


def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it is missing; True when created."""
    import psycopg
    from psycopg import sql

    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


# ----------------------------------------------------------------------------------
# Processes: the offline writer, celery workers, /proc sampling


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM (a celery warm shutdown), then SIGKILL the process group we started."""
    if process.poll() is None:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    # Each subprocess leads a session of its own: this reaches its pool children too.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def descendants(roots: list[int]) -> list[int]:
    """The roots and every process below them, read from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue  # gone between the listing and the read
    return total


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def pids_named(name: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if Path(f"/proc/{entry.name}/comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class RssSampler:
    """Sum VmRSS over the workers' process trees every `interval` seconds, in a thread."""

    def __init__(self, roots: list[int], interval: float = 0.5) -> None:
        self.roots = roots
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.samples.append(
                (time.monotonic() - self.started, rss_bytes(descendants(self.roots)))
            )
            if self._stop.wait(self.interval):
                return

    def window(self, start: float, end: float) -> list[tuple[float, int]]:
        return [(t, rss) for t, rss in self.samples if start <= t <= end]


def peak_mb(samples: list[tuple[float, int]]) -> float:
    return max((rss for _, rss in samples), default=0) / 2**20


def slope_mb_per_minute(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 2:
        return float("nan")
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_r = sum(r for _, r in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    return cov / var / 2**20 * 60 if var else float("nan")


class Writer:
    """The offline writer as its own process, driven over HTTP like any endpoint."""

    def __init__(self, env: dict[str, str], logs: Path, *, latency_ms: float, limit: int) -> None:
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root}/v1"
        self.log = logs / "writer.log"
        command = [
            PYTHON, "manage.py", "run_offline_writer", "--port", str(self.port),
            "--latency-ms", str(latency_ms), "--max-concurrency", str(limit), "--no-record",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:  # Ctrl-C while it starts: it must not outlive us
            self.close()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.stats()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the offline writer did not start:\n{self.log.read_text()}"
                    ) from None
                time.sleep(0.2)

    def _call(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.root + path,
            data=data,
            headers={"Content-Type": "application/json"},
            method="GET" if payload is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return self._call("/_offline/stats")

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._call("/_offline/config", changes)

    def refused(self, **changes: Any) -> str | None:
        """Apply `changes`; None if the writer took them, else why it did not (a 400)."""
        try:
            self.configure(**changes)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            with suppress(ValueError, AttributeError):
                body = json.loads(body)["error"]["message"]
            return f"HTTP {exc.code}: {body}"
        return None

    def reset(self) -> None:
        self._call("/_offline/reset", {})

    def cpu_seconds(self) -> float:
        return cpu_seconds(descendants([self.process.pid]))

    def close(self) -> None:
        stop(self.process, timeout=10)


class Workers:
    """`celery worker` processes on the bench queue with one engine config."""

    def __init__(
        self, env: dict[str, str], logs: Path, config: WorkerConfig, *, app: str = "hyperpers"
    ) -> None:
        self.config = config
        env = {
            **env,
            "GENERATION_THREADS_PER_TASK": str(config.threads),
            "GENERATION_TASKS_PER_RUN": str(config.tasks),
            "LOG_LEVEL": "INFO",
        }
        self.processes: list[tuple[subprocess.Popen, Path]] = []
        try:
            self._start(env, logs, app)
        except BaseException:  # Ctrl-C while they start: none must outlive us
            self.close()
            raise

    def _start(self, env: dict[str, str], logs: Path, app: str) -> None:
        config = self.config
        for n in range(config.workers):
            log = logs / f"worker-{config.spec}-{n}.log"
            command = [
                PYTHON, "-m", "celery", "-A", app, "worker", "--loglevel", "INFO",
                "--pool", "prefork", "--concurrency", str(config.processes),
                "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ]  # fmt: skip
            process = subprocess.Popen(
                command,
                cwd=PROJECT_DIR,
                env=env,
                stdout=log.open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.processes.append((process, log))
        deadline = time.monotonic() + 60
        for process, log in self.processes:
            while b"ready." not in log.read_bytes():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"celery worker did not start:\n{log.read_text()}")
                time.sleep(0.2)

    @property
    def roots(self) -> list[int]:
        return [process.pid for process, _ in self.processes]

    @property
    def pids(self) -> list[int]:
        return descendants(self.roots)

    def close(self) -> None:
        # A warm shutdown lets drain tasks write what they hold; they stop within a
        # flush once their run is no longer running.
        for process, _ in self.processes:
            if process.poll() is None:
                process.terminate()
        for process, _ in self.processes:
            stop(process, timeout=60)


# ----------------------------------------------------------------------------------
# Data and runs (Django is set up by then)


def truncate_runs() -> None:
    """Empty the variants and runs tables (and what references them)."""
    from django.db import connection

    from generation.models import GenerationRun, Variant

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Variant._meta.db_table}, {GenerationRun._meta.db_table} CASCADE")


def reset_state(redis_url: str) -> None:
    """Empty variants and runs tables and Redis db, so every measurement starts alike.

    Only while no worker runs: the flush also empties the broker queue, the queue's
    bindings and the limiter's semaphore.
    """
    import redis

    truncate_runs()
    redis.Redis.from_url(redis_url).flushdb()


def seed(*, products: int, segments: int) -> tuple[Any, list[Any], list[Any]]:
    """The bench's brand, prompt (one version), products and segments, created in bulk."""
    from django.db import transaction

    from generation.models import Brand, Product, Prompt, PromptVersion, Segment

    template = (PROJECT_DIR / "hyperpers" / "demo" / "prompt.json").read_text()
    with transaction.atomic():
        brand, _ = Brand.objects.get_or_create(
            name="Benchpace",
            defaults={
                "voice": "You write for Benchpace, a sports brand. Warm, direct, practical; "
                "no urgency, no superlatives, no medical claims.",
                "banned_phrases": ["miracle", "guaranteed results", "limited time only"],
                "protected_terms": ["Benchpace"],
            },
        )
        prompt, _ = Prompt.objects.get_or_create(
            slug="bench-product-page",
            defaults={"name": "Bench product page", "brand": brand, "max_length": 600},
        )
        # One language: a run is products × segments slots, as its figures are named
        # (the segments' 10% of German readers would double every run otherwise).
        if prompt.languages != ["en"]:
            prompt.languages = ["en"]
            prompt.save(update_fields=["languages"])
        if prompt.current_version is None:
            PromptVersion.objects.create(
                prompt=prompt,
                number=1,
                template=json.loads(template)["template"],
                model="offline-writer-1",
                temperature=0.7,
            )
        have = Product.objects.filter(sku__startswith=BENCH_SKU).count()
        Product.objects.bulk_create(
            (
                Product(
                    sku=f"{BENCH_SKU}{i:06d}",
                    name=f"Benchpace Trail Runner {i}",
                    category="Run",
                    subcategory="Running Shoes",
                    description=(
                        f"A cushioned trail shoe, model {i}. The mesh upper drains quickly "
                        "and a rock plate under the forefoot takes the sting out of stony "
                        "descents. Lugs of 4 mm grip mud and loose gravel, and a padded "
                        "collar holds the heel without pressure points."
                    ),
                    attributes={"price": "129.00", "material": "mesh, EVA foam, rubber"},
                )
                for i in range(have, products)
            ),
            batch_size=2000,
        )
        tiers, bands = ["high", "mid", "low"], ["18-24", "25-34", "35-44", "45-54", "55+"]
        Segment.objects.bulk_create(
            (
                Segment(
                    slug=f"bench-{i:03d}",
                    name=f"Bench {tiers[i % 3]} value × {bands[i % 5]}",
                    rules={"value_tier": tiers[i % 3], "age_band": bands[i % 5]},
                    member_count=100 + i,
                    summary={
                        "language": {"en": 0.9, "de": 0.1},
                        "region": {"north": 0.6, "south": 0.4},
                        "activity": {"running": 0.7, "hiking": 0.3},
                    },
                )
                for i in range(segments)
            ),
            ignore_conflicts=True,
        )
    return (
        prompt,
        list(Product.objects.filter(sku__startswith=BENCH_SKU).order_by("sku")[:products]),
        list(Segment.objects.filter(slug__startswith="bench-").order_by("slug")[:segments]),
    )


@dataclass
class RunResult:
    slots: int
    create_seconds: float
    seconds: float  # from calling run_create to the run's end (or to giving up)
    status: str
    succeeded: int
    failed: int
    run_id: int
    progress: list[tuple[float, int]] = field(default_factory=list)  # (seconds, done)
    # From run_create's return to the first variant written (its `generated` time)
    first_write_seconds: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.succeeded / self.seconds if self.seconds else 0.0

    @property
    def tail_seconds(self) -> float:
        """From 90% of the slots done to the end."""
        mark = next((t for t, done in self.progress if done >= 0.9 * self.slots), None)
        return self.seconds - mark if mark is not None else float("nan")

    def steady_per_second(self, low: float = 0.1, high: float = 0.9) -> float:
        """Variants/s between `low` and `high` of the slots done: without ramp-up and tail."""
        marks = [(t, d) for t, d in self.progress if low * self.slots <= d <= high * self.slots]
        if len(marks) < 2 or marks[-1][0] == marks[0][0]:
            return float("nan")
        return (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])


def timed_run(
    prompt: Any,
    products: list[Any],
    segments: list[Any],
    *,
    stall_seconds: float,
    stop_after: float | None = None,
) -> RunResult:
    """Create a run and poll the database until it ends, stalls or `stop_after` passes.

    `stop_after` counts from run_create's return (when the workers may start).
    """
    from generation import services
    from generation.models import GenerationRun

    ended = {GenerationRun.Status.FINISHED, GenerationRun.Status.FAILED}
    ended |= {GenerationRun.Status.CANCELLED, GenerationRun.Status.PAUSED}
    started = time.perf_counter()
    run = services.run_create(prompt=prompt, products=products, segments=segments)
    created = time.perf_counter()
    created_at = time.time()  # the workers stamp `generated` with the same clock
    last_done, last_change = -1, created
    progress = []
    while True:
        row = GenerationRun.objects.values("status", "succeeded", "failed").get(pk=run.pk)
        now = time.perf_counter()
        progress.append((now - started, row["succeeded"] + row["failed"]))
        if row["status"] in ended:
            break
        if stop_after is not None and now - created >= stop_after:
            break
        done = row["succeeded"] + row["failed"]
        if done != last_done:
            last_done, last_change = done, now
        elif now - last_change > stall_seconds:
            row["status"] = f"stalled ({done} of {run.total} after {now - started:.0f}s)"
            break
        time.sleep(0.1)
    return RunResult(
        slots=run.total,
        create_seconds=created - started,
        seconds=now - started,
        status=row["status"],
        succeeded=row["succeeded"],
        failed=row["failed"],
        run_id=run.pk,
        progress=progress,
        first_write_seconds=first_write_after(run.pk, created_at),
    )


def first_write_after(run_id: int, created_at: float) -> float:
    """Seconds from `created_at` (run_create's return, time.time()) to the first variant
    of the run written: its `generated` stamp, finer than the 0.1 s poll of the run."""
    from django.db.models import Min

    from generation.models import Variant

    first = Variant.objects.filter(run_id=run_id).aggregate(t=Min("generated"))["t"]
    return first.timestamp() - created_at if first is not None else float("nan")


def cancel_active_runs() -> None:
    from generation import services
    from generation.models import GenerationRun

    active = [GenerationRun.Status.PENDING, GenerationRun.Status.RUNNING]
    for run in GenerationRun.objects.filter(status__in=active):
        with suppress(services.RunError):
            services.run_cancel(run=run)


def mean_latency_ms(run_id: int) -> float:
    """The mean time of a call as the workers saw it (Variant.latency_ms)."""
    from django.db.models import Avg

    from generation.models import Variant

    return Variant.objects.filter(run_id=run_id).aggregate(m=Avg("latency_ms"))["m"] or 0.0


def failures_line(run_id: int) -> str:
    """The run's failed variants by reason, with one error of the commonest."""
    from django.db.models import Count

    from generation.models import Variant

    failed = Variant.objects.filter(run_id=run_id, status=Variant.Status.FAILED)
    by_reason = list(
        failed.values("failure_reason").annotate(n=Count("pk")).order_by("-n", "failure_reason")
    )
    if not by_reason:
        return ""
    example = failed.filter(failure_reason=by_reason[0]["failure_reason"]).first()
    counts = ", ".join(f"{r['failure_reason'] or '?'} {r['n']}" for r in by_reason)
    return f"{counts} (e.g. {example.error[:200]!r})"


def random_429_served(stats: dict[str, Any]) -> int:
    """The writer's count of the random 429s it answered (rate_limit_rate)."""
    return stats["errors_injected"].get("rate_limit", 0)


def bare_insert_seconds(prompt: Any, products: list[Any], segments: list[Any]) -> tuple[float, int]:
    """Write the queued variants of products × segments with one plain INSERT … SELECT in
    a transaction, commit included: the same rows as run_create's, with no check for
    slots already written and no order. Returns (seconds, rows)."""
    from django.db import connection, transaction

    from generation.models import GenerationRun, Variant

    version = prompt.current_version
    run = GenerationRun.objects.create(
        prompt_version=version, status=GenerationRun.Status.CANCELLED, note="bench baseline"
    )
    template = Variant(run=run, prompt=prompt, prompt_version=version, model=version.model)
    fields = [
        f
        for f in Variant._meta.concrete_fields
        if not f.primary_key and f.attname not in ("product_id", "segment_id")
    ]
    values = [f.get_db_prep_save(f.pre_save(template, add=True), connection) for f in fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    constants = ", ".join(f"CAST(%s AS {f.db_type(connection)})" for f in fields)
    sql = (
        f"INSERT INTO {quote(Variant._meta.db_table)} ({columns}, product_id, segment_id) "
        f"SELECT {constants}, p.id, s.id "
        "FROM unnest(%s::bigint[]) AS p(id) CROSS JOIN unnest(%s::bigint[]) AS s(id)"
    )
    ids = [[p.pk for p in products], [s.pk for s in segments]]
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [*values, *ids])
        rows = cursor.rowcount
    return time.perf_counter() - started, rows


def drain_after_cancel(run_id: int, timeout: float = 120.0) -> float:
    """Cancel the run and wait until no variant of it is held by a worker."""
    from generation import services
    from generation.models import GenerationRun, Variant

    started = time.perf_counter()
    services.run_cancel(run=GenerationRun.objects.get(pk=run_id))
    while time.perf_counter() - started < timeout:
        if not Variant.objects.filter(run_id=run_id, status=Variant.Status.GENERATING).exists():
            break
        time.sleep(0.2)
    return time.perf_counter() - started


# ----------------------------------------------------------------------------------
# Output


def figure(name: str, value: Any, target: str | None = None, met: bool | None = None) -> None:
    if isinstance(value, float):
        value = f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    suffix = ""
    if target is not None:
        verdict = "" if met is None else (", met" if met else ", NOT met")
        suffix = f" (target {target}{verdict})"
    print(f"{name}: {value}{suffix}", flush=True)


def size_label(n: int) -> str:
    """140000 → '140k', 2002 → '2k', 300 → '300': the size in a figure's name (the
    `slots` line before it gives the exact count)."""
    return str(n) if n < 1000 else f"{round(n / 1000)}k"


def section(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def run_line(label: str, result: RunResult) -> None:
    print(
        f"  {label}: {result.succeeded} ok + {result.failed} failed of {result.slots} in "
        f"{result.seconds:.1f}s (run_create {result.create_seconds:.1f}s) → "
        f"{result.per_second:.1f} variants/s ({result.steady_per_second():.1f} between 10% "
        f"and 90% done), status {result.status}",
        flush=True,
    )
    print(
        f"    first variant written {result.first_write_seconds:.2f}s after run_create "
        f"returned, last 10% took {result.tail_seconds:.1f}s",
        flush=True,
    )
    warmup = result.extra.get("warmup")
    if warmup is not None:
        print(
            f"    after a warm-up run of {warmup.slots} slots in {warmup.seconds:.1f}s "
            f"(first variant written {warmup.first_write_seconds:.2f}s after run_create)",
            flush=True,
        )
    if "mean_in_flight" in result.extra:
        print(
            f"    writer: mean in flight {result.extra['mean_in_flight']:.1f}, "
            f"mean call as the worker saw it {result.extra['latency_ms']:.0f} ms",
            flush=True,
        )
    if "concurrency" in result.extra:
        print(
            f"    concurrency cap: lowest seen {result.extra['lowest_cap']}; at the end: "
            f"{result.extra['concurrency']}",
            flush=True,
        )


class Meter:
    """While a run goes: the writer's calls in flight, and the cores each party uses.

    CPU is read per process every `interval`, so processes that end during the run
    (a database backend closes with its task) still count, less their last interval.
    PostgreSQL and Redis count whole, whoever else uses them.
    """

    def __init__(
        self, workers: Workers, writer: Writer, limiter: Any, interval: float = 0.25
    ) -> None:
        self.writer = writer
        self.limiter = limiter
        self.interval = interval
        self.parties: dict[str, Callable[[], list[int]]] = {
            "workers": lambda: workers.pids,
            "writer": lambda: descendants([writer.process.pid]),
            "postgres": lambda: pids_named("postgres"),
            "redis": lambda: pids_named("redis-server"),
            "bench": lambda: [os.getpid()],
        }
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.in_flight: list[int] = []
        self.caps: list[int] = []  # the limiter's cap in force (AIMD), as the run page shows it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meter", daemon=True)

    def __enter__(self) -> Meter:
        self._sample(initial=True)
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(initial=False)
        self.elapsed = time.perf_counter() - self.started

    def _run(self) -> None:
        import redis

        while not self._stop.wait(self.interval):
            self._sample(initial=False)
            with suppress(OSError):
                self.in_flight.append(self.writer.stats()["in_flight"])
            with suppress(redis.RedisError):  # a Redis hiccup costs a sample, not the run
                self.caps.append(self.limiter.state().cap)

    def _sample(self, *, initial: bool) -> None:
        for name, pids in self.parties.items():
            for pid in pids():
                used = cpu_seconds([pid])
                # A process first seen during the run used all its CPU during it.
                self.first.setdefault((name, pid), used if initial else 0.0)
                self.last[(name, pid)] = used

    @property
    def cores(self) -> dict[str, float]:
        used: dict[str, float] = dict.fromkeys(self.parties, 0.0)
        for key, last in self.last.items():
            used[key[0]] += max(0.0, last - self.first[key])
        return {name: seconds / self.elapsed for name, seconds in used.items()}

    @property
    def mean_in_flight(self) -> float:
        return sum(self.in_flight) / len(self.in_flight) if self.in_flight else float("nan")


def cores_line(used: dict[str, float]) -> str:
    return ", ".join(f"{name} {cores:.2f}" for name, cores in used.items())


# ----------------------------------------------------------------------------------
# The measurements


class Bench:
    def __init__(self, args: argparse.Namespace, env: dict[str, str], logs: Path) -> None:
        self.args = args
        self.env = env
        self.logs = logs
        self.writer: Writer | None = None
        self.workers: Workers | None = None
        self.prompt: Any = None
        self.products: list[Any] = []
        self.segments: list[Any] = []
        self.limited_best: RunResult | None = None
        self.zero_best: WorkerConfig | None = None
        self.django_ready = False

    def products_for(self, slots: int) -> list[Any]:
        return self.products[: math.ceil(slots / len(self.segments))]

    def start_workers(self, config: WorkerConfig) -> Workers:
        self.stop_workers()
        reset_state(self.args.redis_url)
        self.workers = Workers(self.env, self.logs, config, app=self.args.celery_app)
        return self.workers

    def stop_workers(self) -> None:
        if self.workers is not None:
            workers, self.workers = self.workers, None
            workers.close()

    def close(self) -> None:
        try:
            if self.django_ready and self.workers is not None:
                # Interrupted mid-run: drain tasks stop within a flush of a cancel,
                # so the workers' warm shutdown is quick.
                cancel_active_runs()
        finally:
            self._stop_all()

    def _stop_all(self) -> None:
        try:
            self.stop_workers()
        finally:
            if self.writer is not None:
                self.writer.close()

    def run_on(
        self,
        config: WorkerConfig,
        slots: int,
        *,
        before_run: Callable[[], None] | None = None,
        give_up_after: float | None = None,
    ) -> tuple[RunResult, dict[str, float]]:
        """A warm-up run (unless --cold), then `before_run()`, then the measured run,
        cancelled if it is still going `give_up_after` seconds after run_create."""
        from generation.limiter import endpoint_limiter

        workers = self.start_workers(config)
        assert self.writer is not None
        warmup = None
        if not self.args.cold:
            # New worker processes load the language model, build the client's types
            # and open their connections on their first calls; long-lived workers in
            # production have done so long before a run.
            warmup = timed_run(
                self.prompt,
                self.products_for(2 * config.workers * config.processes * config.threads),
                self.segments,
                stall_seconds=self.args.stall_seconds,
            )
            truncate_runs()
        if before_run is not None:
            before_run()
        self.writer.reset()
        # The bench process has the workers' LLM_* settings and Redis: the same limiter.
        limiter = endpoint_limiter()
        with Meter(workers, self.writer, limiter) as meter:
            result = timed_run(
                self.prompt,
                self.products_for(slots),
                self.segments,
                stall_seconds=self.args.stall_seconds,
                stop_after=give_up_after,
            )
        if result.status in ("pending", "running"):
            result.status = f"given up after {result.seconds:.0f}s, then cancelled"
            drain_after_cancel(result.run_id)
        result.extra["writer"] = self.writer.stats()
        result.extra["concurrency"] = str(limiter.state())
        result.extra["lowest_cap"] = min(meter.caps, default=limiter.state().cap)
        result.extra["mean_in_flight"] = meter.mean_in_flight
        result.extra["latency_ms"] = mean_latency_ms(result.run_id)
        result.extra["warmup"] = warmup
        return result, meter.cores

    def endpoint_limited(self) -> None:
        args = self.args
        limit = args.endpoint_concurrency / (args.latency_ms / 1000)
        section(
            f"endpoint_limited: writer --latency-ms {args.latency_ms:g} --max-concurrency "
            f"{args.endpoint_concurrency} --no-record, LLM_CONCURRENCY={args.endpoint_concurrency}"
        )
        tried: list[tuple[WorkerConfig, RunResult, dict[str, float]]] = []
        for config in args.limited_configs:
            result, used = self.run_on(config, args.slots)
            stats = result.extra["writer"]
            run_line(str(config), result)
            print(
                f"    writer: rejected_429 {stats['rejected_429']}, max_in_flight "
                f"{stats['max_in_flight']}; cores: {cores_line(used)}",
                flush=True,
            )
            tried.append((config, result, used))
        self.stop_workers()
        config, best, used = max(tried, key=lambda t: t[1].per_second)
        self.limited_best = best
        stats = best.extra["writer"]
        figure("config", str(config))
        figure("slots", best.slots)
        figure("seconds", best.seconds)
        figure("variants_per_second", best.per_second)
        figure("variants_per_second_10_to_90_percent_done", best.steady_per_second())
        figure(
            "first_write_seconds", best.first_write_seconds, "<= 1", best.first_write_seconds <= 1
        )
        figure("last_10_percent_seconds", best.tail_seconds)
        figure("endpoint_limit_per_second", limit)
        ratio = best.per_second / limit
        figure("ratio_to_endpoint_limit", ratio, ">= 0.95", ratio >= 0.95)
        figure("failed", best.failed)
        figure("writer_requests", stats["requests"])
        figure("writer_completed", stats["completed"])
        figure("writer_rejected_429", stats["rejected_429"], "0", stats["rejected_429"] == 0)
        figure(
            "writer_max_in_flight",
            stats["max_in_flight"],
            f"<= {args.endpoint_concurrency}",
            stats["max_in_flight"] <= args.endpoint_concurrency,
        )
        figure("cores_used", cores_line(used))

    def sequential_baseline(self) -> None:
        from generation import llm, prompting

        args = self.args
        section(f"sequential_baseline: render + llm.complete one at a time, {args.latency_ms:g} ms")
        assert self.writer is not None
        version = self.prompt.current_version
        pairs = [(p, s) for p in self.products for s in self.segments][: args.sequential_slots]
        started = time.perf_counter()
        for product, segment in pairs:
            rendered = prompting.render(
                version=version,
                prompt=self.prompt,
                brand=self.prompt.brand,
                product=product,
                segment=segment,
            )
            llm.complete(
                messages=rendered.messages, model=version.model, temperature=version.temperature
            )
        elapsed = time.perf_counter() - started
        per_second = len(pairs) / elapsed
        figure("slots", len(pairs))
        figure("seconds", elapsed)
        figure("variants_per_second", per_second)
        if self.limited_best is not None:
            speedup = self.limited_best.per_second / per_second
            figure("speedup_vs_sequential", speedup, ">= 50", speedup >= 50)

    def random_429(self) -> None:
        """The limited endpoint again, answering 429 (Retry-After 1 s, budget left) to one
        call in 8 and a 5xx to one in 25; the engine's default retry and AIMD settings.

        The warm-up run (unless --cold) meets no faults; they are switched on after it.
        """
        args = self.args
        assert self.writer is not None
        config = args.random_429_config
        limit = args.endpoint_concurrency / (args.latency_ms / 1000)
        faults = ", ".join(f"{k} {v:g}" for k, v in RANDOM_429.items())
        section(
            f"random_429: writer latency {args.latency_ms:g} ms, max_concurrency "
            f"{args.endpoint_concurrency}, {faults}; LLM_CONCURRENCY={args.endpoint_concurrency}"
        )
        figure("config", str(config))
        clean = {"latency_ms": args.latency_ms, "max_concurrency": args.endpoint_concurrency}
        refused = self.writer.refused(**clean, **RANDOM_429)
        if refused is not None:
            print(f"  the writer refused the faults, nothing measured: {refused}", flush=True)
            figure("ratio_under_random_429", "not measured", ">= 0.7", False)
            figure("failed", "not measured", "0", False)
            return
        self.writer.configure(**NO_FAULTS)
        try:
            result, used = self.run_on(
                config,
                args.random_429_slots,
                before_run=lambda: self.writer.configure(**RANDOM_429),
                # Four times as long as at the endpoint's limit: an engine that fails
                # every slot after its 30 retries would take hours.
                give_up_after=max(60.0, 4 * args.random_429_slots / limit),
            )
        finally:
            self.writer.configure(**NO_FAULTS)
        self.stop_workers()
        stats = result.extra["writer"]
        run_line(str(config), result)
        failures = failures_line(result.run_id)
        if failures:
            print(f"    failed: {failures}", flush=True)
        figure("slots", result.slots)
        figure("seconds", result.seconds)
        figure("variants_per_second", result.per_second)
        figure("variants_per_second_10_to_90_percent_done", result.steady_per_second())
        figure("first_write_seconds", result.first_write_seconds)
        figure("endpoint_limit_per_second", limit)
        ratio = result.per_second / limit
        figure("ratio_under_random_429", ratio, ">= 0.7", ratio >= 0.7)
        figure("failed", result.failed, "0", result.failed == 0)
        figure("writer_requests", stats["requests"])
        figure("writer_completed", stats["completed"])
        figure("writer_random_429_served", random_429_served(stats))
        figure("writer_5xx_served", stats["errors_injected"].get("error_5xx", 0))
        figure("writer_429_over_max_concurrency", stats["rejected_by"].get("concurrency", 0))
        figure("writer_max_in_flight", stats["max_in_flight"])
        figure("concurrency_cap_lowest", result.extra["lowest_cap"])
        figure("concurrency", result.extra["concurrency"])
        figure("cores_used", cores_line(used))

    def run_create_timing(self) -> None:
        """run_create of products × segments in this process, with no worker to take the
        run, against one plain INSERT … SELECT of the same rows; then run_populate."""
        from generation import services

        args = self.args
        products = self.products_for(args.run_create_slots)
        slots = len(products) * len(self.segments)
        size = size_label(slots)
        section(
            f"run_create: {len(products)} products × {len(self.segments)} segments = "
            f"{slots} slots, in the bench process, no workers"
        )
        self.stop_workers()
        reset_state(args.redis_url)
        bare, rows = bare_insert_seconds(self.prompt, products, self.segments)
        truncate_runs()
        started = time.perf_counter()
        run = services.run_create(
            prompt=self.prompt, products=products, segments=self.segments, check_endpoint=False
        )
        created = time.perf_counter() - started
        queued_by_create = run.total - run.unqueued
        started = time.perf_counter()
        services.run_populate(run_id=run.pk)
        populated = time.perf_counter() - started
        run.refresh_from_db()
        with suppress(services.RunError):
            services.run_cancel(run=run)
        # The run, its variants and the run_start message no worker took.
        reset_state(args.redis_url)
        print(
            f"  bare INSERT … SELECT wrote {rows} rows; run_create queued {queued_by_create} "
            f"of {run.total}, run_populate the other "
            f"{run.total - run.unqueued - queued_by_create}",
            flush=True,
        )
        figure("slots", slots)
        figure(f"bare_insert_seconds_{size}", bare)
        figure(f"run_create_seconds_{size}", created, "<= 3", created <= 3)
        figure(f"run_create_to_bare_insert_{size}", created / bare if bare else float("nan"))
        figure(f"populate_seconds_{size}", populated)
        figure(f"queued_after_populate_{size}", run.total - run.unqueued)

    def zero_latency(self) -> None:
        args = self.args
        section("zero_latency: writer latency 0, no concurrency limit")
        assert self.writer is not None
        tried: list[tuple[WorkerConfig, RunResult, dict[str, float]]] = []
        for config in args.zero_configs:
            result, used = self.run_on(config, args.zero_slots)
            run_line(str(config), result)
            print(f"    cores: {cores_line(used)}", flush=True)
            tried.append((config, result, used))
        self.stop_workers()
        config, best, used = max(tried, key=lambda t: t[1].per_second)
        self.zero_best = config
        figure("config", str(config))
        figure("slots", best.slots)
        figure("seconds", best.seconds)
        figure("failed", best.failed)
        figure("overhead_variants_per_second", best.per_second, ">= 150", best.per_second >= 150)
        figure("cpu_ms_per_variant_workers", used["workers"] * best.seconds / best.succeeded * 1000)
        figure("cores_used", cores_line(used))

    def memory(self) -> None:
        args = self.args
        config = args.memory_config or self.zero_best or args.zero_configs[0]
        section(f"memory: {args.memory_small} slots to completion vs {args.memory_large} slots")
        figure("config", str(config))

        workers = self.start_workers(config)
        with RssSampler(workers.roots) as small_rss:
            small = timed_run(
                self.prompt,
                self.products_for(args.memory_small),
                self.segments,
                stall_seconds=args.stall_seconds,
            )
        run_line(f"{args.memory_small // 1000}k", small)
        duration = small.seconds

        workers = self.start_workers(config)
        with RssSampler(workers.roots) as large_rss:
            large = timed_run(
                self.prompt,
                self.products_for(args.memory_large),
                self.segments,
                stall_seconds=args.stall_seconds,
                stop_after=duration - small.create_seconds,
            )
            # The window of the long run: as long as the short run took, from when
            # its variants were there for the workers to take.
            window_start = large.create_seconds
            window_end = window_start + duration - small.create_seconds
            run_line(f"{args.memory_large // 1000}k (sampled, then cancelled)", large)
            drained = drain_after_cancel(large.run_id)
        self.stop_workers()

        small_peak = peak_mb(small_rss.samples)
        large_samples = large_rss.window(0, window_end)
        large_peak = peak_mb(large_samples)
        half = (window_start + window_end) / 2
        figure("peak_worker_rss_mb_14k", small_peak)
        figure("peak_worker_rss_mb_140k", large_peak)
        ratio = large_peak / small_peak if small_peak else float("nan")
        figure("rss_ratio_140k_to_14k", ratio, "<= 1.1", ratio <= 1.1)
        figure(
            "rss_slope_mb_per_min_140k_second_half",
            slope_mb_per_minute(large_rss.window(half, window_end)),
        )
        figure(
            "rss_slope_mb_per_min_14k_second_half",
            slope_mb_per_minute(small_rss.window(small.seconds / 2, small.seconds)),
        )
        figure("sampled_seconds", window_end - window_start)
        small_rate = small.succeeded / (small.seconds - small.create_seconds)
        large_rate = large.succeeded / (window_end - window_start)
        figure("variants_per_second_14k", small_rate)
        figure("variants_per_second_140k_same_window", large_rate)
        figure("throughput_ratio_140k_to_14k", large_rate / small_rate if small_rate else 0.0)
        figure("rss_samples_14k", len(small_rss.samples))
        figure("rss_samples_140k", len(large_samples))
        figure("peak_worker_rss_mb_140k_incl_drain", peak_mb(large_rss.samples))
        # Not run_create_seconds_140k: that is the run_create section's, with no workers.
        figure("memory_run_create_seconds_140k", large.create_seconds)
        figure("drain_after_cancel_seconds", drained)
        figure(
            "bench_process_peak_rss_mb",
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )

    def run(self) -> None:
        args = self.args
        limit = args.endpoint_concurrency
        self.writer = Writer(self.env, self.logs, latency_ms=args.latency_ms, limit=limit)
        os.environ["LLM_BASE_URL"] = self.env["LLM_BASE_URL"] = self.writer.base_url
        setup_django(args)
        self.django_ready = True
        print(database_line(), flush=True)
        needed = max(
            0 if args.skip_limited else args.slots,
            0 if args.skip_random_429 else args.random_429_slots,
            0 if args.skip_zero else args.zero_slots,
            0 if args.skip_memory else max(args.memory_small, args.memory_large),
            0 if args.skip_run_create else args.run_create_slots,
            args.sequential_slots,
        )
        started = time.perf_counter()
        reset_state(args.redis_url)
        self.prompt, self.products, self.segments = seed(
            products=math.ceil(needed / args.segments), segments=args.segments
        )
        print(
            f"data: {len(self.products)} products × {len(self.segments)} segments "
            f"ready in {time.perf_counter() - started:.1f}s; logs in {self.logs}",
            flush=True,
        )
        if not args.skip_limited:
            self.endpoint_limited()
        if not args.skip_sequential:
            self.sequential_baseline()
        if not args.skip_random_429:
            self.random_429()
        self.writer.configure(latency_ms=0, max_concurrency=None)
        if not args.skip_zero:
            self.zero_latency()
        if not args.skip_memory:
            self.memory()
        if not args.skip_run_create:
            self.run_create_timing()


def setup_django(args: argparse.Namespace) -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def header(args: argparse.Namespace, created: bool) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: nproc {os.cpu_count()}, load average {load}")
    print(f"python: {sys.version.split()[0]}, pid {os.getpid()}")
    print(f"database: {args.database_url}{' (created)' if created else ''}")
    print(f"redis: {args.redis_url} (flushed before each measurement)")
    print(f"DEBUG: {args.debug}", flush=True)


def database_line() -> str:
    """What the planner has to go on: without autovacuum, no statistics on new rows."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0]
    return f"postgresql: {version}, autovacuum {autovacuum}"


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = bench_environment(args, queue)
    os.environ.update(env)
    env = {**os.environ, **env}
    signal.signal(signal.SIGTERM, _terminate)
    # Started in the background by a shell, SIGINT may come in ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    created = ensure_database(args.database_url)
    header(args, created)
    logs = Path(tempfile.mkdtemp(prefix="hyperpers-bench-"))
    bench = Bench(args, env, logs)
    started = time.perf_counter()
    try:
        bench.run()
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the writer and the workers", flush=True)
        return 130
    finally:
        bench.close()
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"\ntotal: {time.perf_counter() - started:.0f}s, load average {load}", flush=True)
    return 0


if __name__ == "__main__":
    # Run as a file, this directory would come first on sys.path and this module
    # would shadow the `generation` app.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(PROJECT_DIR))
    sys.exit(main())
