"""One endpoint's limits, shared by every worker through Redis.

Three things keep all workers on all machines together under what the endpoint
allows:

1. a concurrency cap: a semaphore in Redis (a sorted set of holders with leases, so
   a worker killed while holding a slot frees it when the lease ends);
2. requests and tokens per minute: sliding-window counters from the `limits`
   library;
3. a shared pause: when the endpoint answers 429 with Retry-After, or its
   x-ratelimit-remaining-* headers reach 0, every worker waits until the reset.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from functools import cache

import redis
from django.conf import settings
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

# Acquire a slot if fewer than `limit` unexpired holders and no pause is set.
# Returns 0 when acquired, else the milliseconds worth waiting before trying again.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return pause end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return 0
end
return 5
"""


class LimiterTimeout(Exception):
    pass


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def limits_uri(url: str) -> str:
    # redis-py spells a socket unix:///path; the limits library redis+unix:///path.
    return re.sub(r"^unix://", "redis+unix://", url).split("?")[0]


class EndpointLimiter:
    def __init__(
        self,
        *,
        endpoint: str,
        concurrency: int,
        rpm: int | None = None,
        tpm: int | None = None,
        lease_ms: int = 300_000,
        client: redis.Redis | None = None,
    ) -> None:
        key = hashlib.sha1(endpoint.encode()).hexdigest()[:12]
        self.slots_key = f"hyperpers:llm:{key}:slots"
        self.pause_key = f"hyperpers:llm:{key}:pause"
        self.window_key = f"llm-{key}"
        self.concurrency = concurrency
        self.lease_ms = lease_ms
        self.redis = client or redis_client()
        self._acquire = self.redis.register_script(_ACQUIRE)
        self.rpm = RateLimitItemPerMinute(rpm) if rpm else None
        self.tpm = RateLimitItemPerMinute(tpm) if tpm else None
        self.windows = (
            SlidingWindowCounterRateLimiter(storage_from_string(limits_uri(settings.REDIS_URL)))
            if (rpm or tpm)
            else None
        )

    @contextlib.contextmanager
    def slot(self, *, tokens: int = 0, timeout: float = 600.0) -> Iterator[None]:
        """Hold one of the endpoint's request slots for the duration of one call."""
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        while True:
            now_ms = int(time.time() * 1000)
            wait_ms = self._acquire(
                keys=[self.slots_key, self.pause_key],
                args=[now_ms, self.concurrency, self.lease_ms, holder],
            )
            if wait_ms == 0:
                if self._within_windows(tokens):
                    break
                self.redis.zrem(self.slots_key, holder)
                wait_ms = 250
            if time.monotonic() + wait_ms / 1000 > deadline:
                raise LimiterTimeout(f"No request slot for the LLM endpoint within {timeout:.0f}s")
            # Jitter, so waiting workers do not all retry in the same millisecond.
            time.sleep(min(wait_ms, 2000) / 1000 * random.uniform(0.5, 1.0))
        try:
            yield
        finally:
            # A Redis that went away meanwhile frees the slot itself: the lease ends.
            with contextlib.suppress(redis.RedisError):
                self.redis.zrem(self.slots_key, holder)

    def _within_windows(self, tokens: int) -> bool:
        if self.windows is None:
            return True
        if self.rpm and not self.windows.test(self.rpm, self.window_key, "requests"):
            return False
        if self.tpm and not self.windows.test(self.tpm, self.window_key, "tokens", cost=tokens):
            return False
        if self.rpm:
            self.windows.hit(self.rpm, self.window_key, "requests")
        if self.tpm and tokens:
            self.windows.hit(self.tpm, self.window_key, "tokens", cost=tokens)
        return True

    def pause(self, seconds: float) -> None:
        """Make every worker wait `seconds` (never shortens a longer pause already set)."""
        ms = max(1, int(seconds * 1000))
        current = self.redis.pttl(self.pause_key)
        if current is None or current < ms:
            self.redis.set(self.pause_key, "1", px=ms)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Follow the endpoint's x-ratelimit-* headers: pause when a budget is spent."""
        for kind in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining is not None and remaining.strip() in ("0", "0.0"):
                reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}", "1s"))
                self.pause(reset or 1.0)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | None) -> float | None:
    """'1s', '6m0s', '250ms', '0.5' (seconds) → seconds."""
    if not text:
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    return sum(float(n) * _UNIT[u] for n, u in parts) if parts else None


def endpoint_limiter() -> EndpointLimiter:
    return _endpoint_limiter(
        settings.LLM_BASE_URL,
        settings.LLM_CONCURRENCY,
        settings.LLM_RPM,
        settings.LLM_TPM,
        settings.REDIS_URL,
    )


@cache
def _endpoint_limiter(endpoint, concurrency, rpm, tpm, redis_url) -> EndpointLimiter:
    return EndpointLimiter(
        endpoint=endpoint,
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        client=redis.Redis.from_url(redis_url),
    )
