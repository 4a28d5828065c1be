"""Shared fixtures: the embedded Redis, the offline writer over HTTP, a real worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings

from hyperpers.embedded import start_redis, stop_process

PROJECT_DIR = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_DIR.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def redis_service():
    """The embedded redis-server when REDIS_URL is unset; else the configured one."""
    process = start_redis(settings.EMBEDDED_REDIS_SOCKET) if settings.USE_EMBEDDED_REDIS else None
    yield
    stop_process(process)


@pytest.fixture(autouse=True)
def fresh_live_snapshot(settings):
    """Each test starts with an empty snapshot of live copy, as a new web process does:
    ids come back after a rollback, and Redis keeps its epochs across tests. Its buckets
    due by age are checked by the request, not a thread: a thread's own database
    connection would not see the test's transaction (tests/review/test_live_snapshot.py
    runs the thread on committed rows)."""
    from review.delivery import snapshot

    settings.DELIVERY_SNAPSHOT_BACKGROUND_CHECKS = False
    snapshot.clear()
    yield
    snapshot.stop_checker()
    snapshot.clear()


@pytest.fixture(autouse=True)
def import_uploads(settings, tmp_path):
    """Uploads wait for their worker in a folder of the test's own, not var/imports."""
    settings.IMPORT_DIR = tmp_path / "imports"
    return settings.IMPORT_DIR


@pytest.fixture(autouse=True)
def fresh_login_failures():
    """Failed logins are counted per address in Redis (hyperpers/login.py), and every
    test client is 127.0.0.1: each test starts with none counted."""
    from hyperpers import login

    login.clear("127.0.0.1")
    yield


@pytest.fixture
def offline_writer(settings):
    """The bundled offline writer on a free port, as the configured LLM endpoint."""
    from hyperpers.offline_writer import serve_in_thread

    server, base_url = serve_in_thread()
    settings.LLM_BASE_URL = base_url
    yield server
    server.shutdown()
    server.server_close()


def configure_writer(server, **settings_) -> dict:
    """Change a running offline writer's behaviour over HTTP, as another process would."""
    import json
    import urllib.request

    request = urllib.request.Request(
        server.base_url.removesuffix("/v1") + "/_offline/config",
        data=json.dumps(settings_).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def slot_completions(server) -> list[dict]:
    """The chat completions a writer received for slots: without the structured-output
    probes that endpoint checks send before a run or a try."""
    from generation.capabilities import PROBE_MESSAGES

    return [
        r
        for r in server.requests
        if r["path"].endswith("/chat/completions")
        and (r.get("body") or {}).get("messages") != PROBE_MESSAGES
    ]


@pytest.fixture
def luma_products() -> Path:
    path = SHARED_DATA / "luma" / "configurable_products.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/data is only in this workplace)")
    return path


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def start_worker(offline_writer, transactional_db, tmp_path):
    """Start real `celery worker` processes on the test database, broker and writer.

    They listen on a queue of their own, so a demo sharing the Redis never takes
    their tasks. Each runs in its own session so a test can SIGKILL it whole.
    """
    from hyperpers.celery import app

    queue = f"test-{uuid.uuid4().hex[:8]}"
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(name: str = "w1", **env_overrides) -> subprocess.Popen:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "LLM_BASE_URL": settings.LLM_BASE_URL,
            "EMBEDDED_REDIS_SOCKET": str(settings.EMBEDDED_REDIS_SOCKET),
            "CELERY_TASK_DEFAULT_QUEUE": queue,
            **{k: str(v) for k, v in env_overrides.items()},
        }
        log = tmp_path / f"worker-{name}-{len(started)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "hyperpers", "worker", "--loglevel", "INFO",
             "--concurrency", "2", "--hostname", f"{name}-{queue}@%h", "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            cwd=PROJECT_DIR, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        started.append((process, log))
        deadline = time.monotonic() + 60
        while b"ready." not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"celery worker did not start:\n{log.read_text()}")
            time.sleep(0.2)
        return process

    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    yield start
    app.conf.task_default_queue = previous
    for process, log in started:
        stop_process(process, timeout=20)
        print(f"--- {log.name}\n{log.read_text()[-3000:]}")


@pytest.fixture
def celery_worker_process(start_worker):
    return start_worker()


class _CallbackReceiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))
        self.server.headers.append(dict(self.headers))
        self.send_response(self.server.status)
        if 300 <= self.server.status < 400:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def callback_receiver():
    """An HTTP server that records the JSON POSTed to it (`.received`), answering
    `.status` (204); `.url` is where to send."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CallbackReceiver)
    server.received, server.headers, server.status = [], [], 204
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_port}/hook"
    yield server
    server.shutdown()
    server.server_close()
