"""One endpoint's limits, shared by every worker through Redis.

Three things keep all workers on all machines together under what the endpoint
allows:

1. a concurrency cap: a semaphore in Redis (a sorted set of holders with leases, so
   a worker killed while holding a slot frees it when the lease ends);
2. requests and tokens per minute: sliding-window counters from the `limits`
   library;
3. a shared pause: when the endpoint's x-ratelimit-remaining-* headers reach 0 (its
   budget for the window is spent), every worker waits until the reset it names.

A single 429 pauses nobody: the call that got it waits out its own Retry-After
(the engine does that). Providers answer 429 at random to a share of calls when a
shard is busy, with budget left; pausing everyone for each would idle the fleet.

The concurrency cap itself moves (AIMD, as TCP's congestion window does): cut by
LLM_CONCURRENCY_DECREASE when the budget is spent or when 429s pass
LLM_RATE_LIMIT_SHARE of the calls of the last LLM_RATE_LIMIT_WINDOW_SECONDS, at most
once a window; raised by one per `cap` successful calls (one a round of calls) back
up to LLM_CONCURRENCY. The cap and why it is what it is live in Redis, so every
worker obeys one number and the run page can show it.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cache
from typing import Protocol, cast

import redis
from django.conf import settings
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from hyperpers import redis_client as redis_clients

# Acquire a slot if fewer than `cap` unexpired holders and no pause is set; the cap is
# the AIMD one in KEYS[3] when set, else ARGV[2] (the configured maximum).
# Returns 0 when acquired, else the milliseconds worth waiting before trying again.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return pause end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = math.floor(tonumber(redis.call('GET', KEYS[3]) or ARGV[2]))
if cap < 1 then cap = 1 end
if redis.call('ZCARD', KEYS[1]) < cap then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return 0
end
return 5
"""


# One call's result, counted in per-second buckets, and the cap moved (AIMD).
# KEYS: cap, reason, cooldown, calls hash, 429s hash.
# ARGV: now (s), outcome ("ok", "429" or "spent"), max cap, min cap, share, window (s),
#       min calls, decrease factor, reason text for a cut.
# Returns the cap now in force.
_RESULT = """
local now = tonumber(ARGV[1])
local outcome = ARGV[2]
local max = tonumber(ARGV[3])
local min = tonumber(ARGV[4])
local window = tonumber(ARGV[6])
local bucket = tostring(math.floor(now))
redis.call('HINCRBY', KEYS[4], bucket, 1)
redis.call('EXPIRE', KEYS[4], window * 3)
if outcome ~= 'ok' then
  redis.call('HINCRBY', KEYS[5], bucket, 1)
  redis.call('EXPIRE', KEYS[5], window * 3)
end
local cap = tonumber(redis.call('GET', KEYS[1]) or max)
if cap > max then cap = max end
if outcome == 'ok' then
  if cap < max then
    cap = math.min(max, cap + 1 / cap)
    redis.call('SET', KEYS[1], tostring(cap))
    if cap >= max then
      redis.call('SET', KEYS[2], 'back at the configured maximum after a cut')
    end
  end
  return tostring(cap)
end
if redis.call('EXISTS', KEYS[3]) == 1 then return tostring(cap) end
local cut = outcome == 'spent'
local reason = ARGV[9]
if not cut then
  local calls, limited = 0, 0
  local first = math.floor(now) - window + 1
  for b = first, math.floor(now) do
    calls = calls + tonumber(redis.call('HGET', KEYS[4], tostring(b)) or 0)
    limited = limited + tonumber(redis.call('HGET', KEYS[5], tostring(b)) or 0)
  end
  if calls >= tonumber(ARGV[7]) and limited / calls > tonumber(ARGV[5]) then
    cut = true
    reason = string.format(reason, limited, calls)
  end
end
if cut then
  local before = math.floor(cap)
  cap = math.max(min, math.floor(cap * tonumber(ARGV[8])))
  redis.call('SET', KEYS[1], tostring(cap))
  redis.call('SET', KEYS[2], string.format('cut from %d to %d: ', before, cap) .. reason)
  redis.call('SET', KEYS[3], '1', 'PX', window * 1000)
end
return tostring(cap)
"""


class LimiterTimeout(Exception):
    pass


@dataclass(frozen=True)
class ConcurrencyState:
    """What the run page shows: the cap in force, the most, calls in flight, why."""

    cap: int
    maximum: int
    in_flight: int
    reason: str
    paused_seconds: float

    def __str__(self) -> str:
        line = f"{self.cap} of at most {self.maximum} calls at once ({self.in_flight} in flight)"
        if self.paused_seconds > 0:
            line += f"; every worker paused for {self.paused_seconds:.1f}s more"
        return f"{line}: {self.reason}"


def redis_client() -> redis.Redis:
    return redis_clients.client()


def limits_uri(url: str) -> str:
    # redis-py spells a socket unix:///path; the limits library redis+unix:///path.
    return re.sub(r"^unix://", "redis+unix://", url).split("?")[0]


class CallLimiter(Protocol):
    """What one call needs of a limiter (engine.attempt, engine.call): EndpointLimiter,
    or a caller's wrapper of it, such as one that waits less long for a slot."""

    def slot(self, *, tokens: int = 0) -> AbstractContextManager[None]: ...

    def succeeded(self) -> int: ...

    def rate_limited(self) -> int: ...

    def observe(self, headers: Mapping[str, str]) -> None: ...


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
        self.cap_key = f"hyperpers:llm:{key}:cap"
        self.cap_reason_key = f"hyperpers:llm:{key}:cap-reason"
        self.cap_cooldown_key = f"hyperpers:llm:{key}:cap-cooldown"
        self.calls_key = f"hyperpers:llm:{key}:calls"
        self.limited_key = f"hyperpers:llm:{key}:limited"
        self.window_key = f"llm-{key}"
        self.concurrency = concurrency
        self.lease_ms = lease_ms
        self.redis = client or redis_client()
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._result = self.redis.register_script(_RESULT)
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
                keys=[self.slots_key, self.pause_key, self.cap_key],
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
        """Take this call's place in the per-minute windows, or say there is none.

        `hit` tests and counts in one Redis script (limits' sliding-window acquire), so
        workers running together never pass LLM_RPM / LLM_TPM between a test and a
        count. A call the token window refuses has still taken its request: the
        windows then count one request more than was sent, which errs on the safe side.
        """
        if self.windows is None:
            return True
        if self.rpm and not self.windows.hit(self.rpm, self.window_key, "requests"):
            return False
        return not (
            self.tpm
            and tokens
            and not self.windows.hit(self.tpm, self.window_key, "tokens", cost=tokens)
        )

    def pause(self, seconds: float) -> None:
        """Make every worker wait `seconds` (never shortens a longer pause already set)."""
        ms = max(1, int(seconds * 1000))
        # redis-py types every reply as `Awaitable | Any`, one annotation for its sync
        # and asyncio clients (redis/redis-py#2399); this client is sync.
        current = cast("int | None", self.redis.pttl(self.pause_key))
        if current is None or current < ms:
            self.redis.set(self.pause_key, "1", px=ms)

    def succeeded(self) -> int:
        """A call was answered: count it, and raise the cap additively."""
        return self._record("ok", "")

    def rate_limited(self) -> int:
        """A call got 429: count it; cut the cap when 429s pass their share of calls."""
        return self._record(
            "429",
            # Lua's string.format fills in the counts, so a literal % is written %%.
            f"%d of the last %d calls got 429 (over "
            f"{settings.LLM_RATE_LIMIT_SHARE * 100:g}%% in "
            f"{settings.LLM_RATE_LIMIT_WINDOW_SECONDS:g}s)",
        )

    def _record(self, outcome: str, reason: str) -> int:
        cap = self._result(
            keys=[
                self.cap_key,
                self.cap_reason_key,
                self.cap_cooldown_key,
                self.calls_key,
                self.limited_key,
            ],
            args=[
                time.time(),
                outcome,
                self.concurrency,
                settings.LLM_CONCURRENCY_MIN,
                settings.LLM_RATE_LIMIT_SHARE,
                settings.LLM_RATE_LIMIT_WINDOW_SECONDS,
                settings.LLM_RATE_LIMIT_MIN_CALLS,
                settings.LLM_CONCURRENCY_DECREASE,
                reason,
            ],
        )
        return int(float(cap))

    def observe(self, headers: Mapping[str, str]) -> None:
        """Follow the endpoint's x-ratelimit-* headers: when a budget is spent, pause
        every worker until its reset and cut the cap."""
        for kind in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining is not None and remaining.strip() in ("0", "0.0"):
                reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}", "1s")) or 1.0
                self.pause(reset)
                self._record(
                    "spent",
                    f"the endpoint's {kind} budget is spent (x-ratelimit-remaining-{kind}: 0, "
                    f"resets in {reset:g}s)",
                )

    def state(self) -> ConcurrencyState:
        pipe = self.redis.pipeline()
        now_ms = int(time.time() * 1000)
        pipe.get(self.cap_key)
        pipe.get(self.cap_reason_key)
        pipe.zcount(self.slots_key, now_ms, "+inf")
        pipe.pttl(self.pause_key)
        cap, reason, in_flight, pause_ms = pipe.execute()
        cap_value = min(self.concurrency, int(float(cap))) if cap is not None else self.concurrency
        if reason is None:
            text = f"the configured maximum (LLM_CONCURRENCY={self.concurrency}); no cut so far"
        else:
            text = reason.decode() if isinstance(reason, bytes) else str(reason)
            if cap_value < self.concurrency:
                text += "; rising by one per round of successful calls"
        return ConcurrencyState(
            cap=max(1, cap_value),
            maximum=self.concurrency,
            in_flight=int(in_flight or 0),
            reason=text,
            paused_seconds=max(0, pause_ms or 0) / 1000,
        )


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
def _endpoint_limiter(
    endpoint: str, concurrency: int, rpm: int | None, tpm: int | None, redis_url: str
) -> EndpointLimiter:
    return EndpointLimiter(
        endpoint=endpoint,
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        client=redis_clients.client(url=redis_url),
    )
