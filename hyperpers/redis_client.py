"""Redis, reached one way: one client per URL and timeout in each process, always with
explicit timeouts, so a Redis that hangs fails a call instead of hanging a worker or a
web process. The limiter, the engine, delivery, auth throttles and health use it
(the login throttle and the cache reach Redis through their libraries' own clients).
"""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings

# Seconds a call may wait for Redis.
LIVE_TIMEOUT = 0.5  # the live path: serve from memory rather than wait
CHECK_TIMEOUT = 1.0  # health checks
WORK_TIMEOUT = 10.0  # workers, the limiter, throttles


def client(*, timeout: float = WORK_TIMEOUT, url: str | None = None) -> redis.Redis:
    """The process's client for `url` (default REDIS_URL) with these timeouts."""
    return _client(url or settings.REDIS_URL, timeout)


@cache
def _client(url: str, timeout: float) -> redis.Redis:
    # redis-py's pool notices a fork and opens new connections in the child.
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
