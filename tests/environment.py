"""Loaded by pytest before Django (`-p tests.environment` in pyproject.toml).

Each test session gets an embedded Redis and a SQLite test database of its own (when
REDIS_URL and DATABASE_URL are unset), so two sessions, or a session beside a running
demo, never stop each other's Redis or drop each other's tables.
"""

import os
from pathlib import Path

_var = Path(__file__).resolve().parents[1] / "var"
os.environ.setdefault("EMBEDDED_REDIS_SOCKET", str(_var / f"redis-test-{os.getpid()}.sock"))
os.environ.setdefault("SQLITE_TEST_NAME", str(_var / f"test-{os.getpid()}.sqlite3"))
# Each web process trusts its snapshot of live copy for a second (review/delivery.py);
# tests change copy and read it back within microseconds, so they check it every
# request. tests/review/test_live_snapshot.py sets the window back to test it.
os.environ.setdefault("DELIVERY_SNAPSHOT_VERIFY_SECONDS", "0")
# The tests' callback receivers listen on 127.0.0.1 over http; production refuses both
# unless these say so (tests/generation/test_messages.py turns them off to test that).
os.environ.setdefault("MESSAGE_CALLBACK_ALLOW_HTTP", "true")
os.environ.setdefault("MESSAGE_CALLBACK_ALLOW_PRIVATE", "true")
# /health/ caches its checks for seconds; tests change what the checks say between calls.
os.environ.setdefault("HEALTH_CACHE_SECONDS", "0")
