"""The shared limiter's concurrency cap (AIMD) against the real Redis of the test run."""

import re
import uuid

import pytest

from generation.limiter import EndpointLimiter, LimiterTimeout


@pytest.fixture
def limiter(settings):
    settings.LLM_RATE_LIMIT_SHARE = 0.3
    settings.LLM_RATE_LIMIT_WINDOW_SECONDS = 10
    settings.LLM_RATE_LIMIT_MIN_CALLS = 50
    settings.LLM_CONCURRENCY_DECREASE = 0.5
    settings.LLM_CONCURRENCY_MIN = 1
    limiter = EndpointLimiter(endpoint=f"http://test/{uuid.uuid4().hex}", concurrency=64)
    yield limiter
    limiter.redis.delete(
        limiter.cap_key,
        limiter.cap_reason_key,
        limiter.cap_cooldown_key,
        limiter.calls_key,
        limiter.limited_key,
        limiter.pause_key,
    )


def _calls(limiter, *, ok: int, limited: int) -> int:
    """Interleave successes and 429s as random 429s arrive; return the last cap."""
    cap = limiter.concurrency
    for i in range(ok + limited):
        # Spread the 429s evenly among the calls.
        if limited and i % round((ok + limited) / limited) == 0 and limited > 0:
            cap = limiter.rate_limited()
            limited -= 1
        else:
            cap = limiter.succeeded()
    return cap


def test_random_429s_under_the_share_never_cut_the_cap(limiter):
    # One call in eight, as a busy hosted endpoint answers with budget left.
    cap = _calls(limiter, ok=350, limited=50)
    state = limiter.state()
    assert cap == 64 and state.cap == 64
    assert "no cut so far" in state.reason


def test_429s_over_the_share_cut_the_cap_in_half_once_a_window(limiter):
    cap = _calls(limiter, ok=30, limited=30)  # 50% of 60 calls
    state = limiter.state()
    assert cap == 32 and state.cap == 32
    assert state.reason.startswith("cut from 64 to 32: ")
    # Cut at the first call that took the share over 30% with 50 calls seen.
    found = re.search(r"(\d+) of the last (\d+) calls got 429 \(over 30% in 10s\)", state.reason)
    assert found and int(found[2]) >= 50 and int(found[1]) / int(found[2]) > 0.3
    # More 429s within the same window do not cut again.
    for _ in range(30):
        limiter.rate_limited()
    assert limiter.state().cap == 32


def test_too_few_calls_to_judge_never_cut(limiter):
    for _ in range(20):
        limiter.rate_limited()
    assert limiter.state().cap == 64


def test_successes_raise_a_cut_cap_by_one_a_round_back_to_the_maximum(limiter):
    _calls(limiter, ok=30, limited=30)
    assert limiter.state().cap == 32
    for _ in range(32):
        limiter.succeeded()
    assert limiter.state().cap == 33  # +1/cap per success: one per round of calls
    for _ in range(3000):
        limiter.succeeded()
    state = limiter.state()
    assert state.cap == 64
    assert state.reason == "back at the configured maximum after a cut"


def test_a_spent_budget_pauses_everyone_and_cuts_the_cap(limiter):
    limiter.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"})
    state = limiter.state()
    assert state.cap == 32
    assert 1.0 < state.paused_seconds <= 2.0
    assert "requests budget is spent (x-ratelimit-remaining-requests: 0, resets in 2s)" in (
        state.reason
    )
    assert "paused" in str(state)


def test_headers_with_budget_left_change_nothing(limiter):
    limiter.observe({"x-ratelimit-remaining-requests": "5", "x-ratelimit-remaining-tokens": "9"})
    state = limiter.state()
    assert (state.cap, state.paused_seconds) == (64, 0)


def test_the_cap_never_goes_below_the_minimum(limiter, settings):
    settings.LLM_RATE_LIMIT_WINDOW_SECONDS = 1
    for _ in range(10):
        limiter.redis.delete(limiter.cap_cooldown_key)
        limiter.observe({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1ms"})
    assert limiter.state().cap == 1


def test_slots_follow_the_cap_in_force(limiter):
    limiter.redis.set(limiter.cap_key, "2")
    with limiter.slot(), limiter.slot():
        assert limiter.state().in_flight == 2
        with pytest.raises(LimiterTimeout, match="No request slot"), limiter.slot(timeout=0.3):
            pass


def test_workers_together_never_pass_the_requests_per_minute():
    """Issue 15: the per-minute windows were tested, then hit, in two steps, so workers
    calling together could all pass the test before any hit. One atomic hit each now:
    40 threads at once against LLM_RPM=20 get exactly 20 slots."""
    import threading

    limiter = EndpointLimiter(endpoint=f"http://test/{uuid.uuid4().hex}", concurrency=64, rpm=20)
    start = threading.Barrier(40)
    granted: list[int] = []

    def call() -> None:
        start.wait(timeout=10)
        try:
            with limiter.slot(timeout=0.5):
                granted.append(1)
        except LimiterTimeout:
            pass

    threads = [threading.Thread(target=call) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert len(granted) == 20


def test_the_token_window_holds_too(settings):
    limiter = EndpointLimiter(endpoint=f"http://test/{uuid.uuid4().hex}", concurrency=8, tpm=1000)
    with limiter.slot(tokens=600, timeout=0.5):
        pass
    with pytest.raises(LimiterTimeout), limiter.slot(tokens=600, timeout=0.5):
        pass
    with limiter.slot(tokens=300, timeout=0.5):
        pass
