"""The writer's settings and its faults: what it does besides writing, and how it fails.

WriterSettings lists the settings: a latency (fixed, uniform jitter or log-normal), a
concurrency limit and sliding-minute rpm/tpm limits, the answers' profile, the prefix
cache, recording, and injected faults drawn from a seedable RNG. updated_settings()
checks a change and names a bad setting with SettingError; they can be changed while
the server serves.

Faults (setting `<fault>_rate`; a request draws at most one, the rates add up to 1 at
most): error_5xx (500/502/503), timeout (hold, then 504 or close), malformed (cut-off
JSON), empty (no choices), no_rationale, the copy faults (overreach: names a value only
a minority of the segment has; banned_phrase: uses the brand's first banned phrase;
drop_protected: rewords the product name; echo_input: repeats the audience's longest
text value, as a model following injected text does), reset (TCP reset), rate_limit (a
429 at once, with Retry-After and x-ratelimit-remaining-* showing plenty left: a busy
server, not a spent budget), refusal (content null, message.refusal set),
content_filter (content null, finish_reason "content_filter") and bad_json (JSON off
the schema, for a json answer only; any other answer goes out whole). fail_first_n
fails the next N with 503. The server (server.py) draws a fault with draw_fault() and
applies it; spoil_copy() writes the copy faults.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .profiles import PROFILES
from .text import inline, mapping

FAULTS: tuple[str, ...] = (
    "reset", "timeout", "error_5xx", "malformed", "empty", "no_rationale",
    "rate_limit", "refusal", "content_filter", "bad_json",
    "overreach", "banned_phrase", "drop_protected", "echo_input",
)  # fmt: skip
# Faults in the copy itself, for seeing the checks fail on variants a worker wrote: the
# answer is well formed, the copy is what a careless model writes (spoil_copy).
COPY_FAULTS: tuple[str, ...] = ("overreach", "banned_phrase", "drop_protected", "echo_input")
LATENCY_DISTRIBUTIONS: tuple[str, ...] = ("uniform", "lognormal")
TIMEOUT_ACTIONS: tuple[str, ...] = ("504", "close")


@dataclass(frozen=True)
class WriterSettings:
    """How the server behaves besides writing. Replaced whole, never changed in place, so a
    request reads one consistent snapshot while POST /_offline/config swaps it."""

    latency_ms: float = 0.0  # the delay of a completion (the median, for lognormal)
    latency_jitter_ms: float = 0.0  # uniform: latency_ms ± this much
    latency_distribution: str = "uniform"  # or "lognormal": median latency_ms, latency_sigma
    latency_sigma: float = 0.5
    seed: int | None = None  # seeds faults and latencies; None draws them unseeded
    max_concurrency: int | None = None  # completions in flight at once, then 429
    retry_after_s: float = 1.0  # Retry-After of a 429 for max_concurrency
    rpm_limit: int | None = None  # requests per sliding minute, then 429
    tpm_limit: int | None = None  # tokens (prompt + completion) per sliding minute
    error_5xx_rate: float = 0.0  # 500, 502 or 503 with an OpenAI error body
    timeout_rate: float = 0.0  # hold timeout_hold_s, then timeout_action
    timeout_hold_s: float = 30.0
    timeout_action: str = "504"  # or "close": close the connection without answering
    malformed_rate: float = 0.0  # 200 whose body is cut-off JSON
    empty_rate: float = 0.0  # 200 with choices: []
    no_rationale_rate: float = 0.0  # 200 whose content has no "Rationale:" line
    rate_limit_rate: float = 0.0  # an immediate 429 (Retry-After retry_after_s), budget left
    refusal_rate: float = 0.0  # 200 with content null and message.refusal set
    content_filter_rate: float = 0.0  # 200 with content null, finish_reason content_filter
    bad_json_rate: float = 0.0  # a JSON answer off the schema (json profile, response_format)
    overreach_rate: float = 0.0  # copy naming a value only a minority of the segment has
    banned_phrase_rate: float = 0.0  # copy using the first banned phrase of the data
    drop_protected_rate: float = 0.0  # copy with the product name reworded
    echo_input_rate: float = 0.0  # copy repeating the audience's longest text value
    reset_rate: float = 0.0  # the connection is reset (RST) without an answer
    profile: str = "plain"  # the shape of answers: one of PROFILES
    prefix_cache: bool = True  # report cached_tokens for prompt prefixes seen before
    prefix_cache_block_tokens: int = 64  # the cache's granularity (OpenAI's is 128)
    fail_first_n: int = 0  # the next N completions get 503 (from start, reset or setting)
    record: bool = True  # keep requests for server.requests and /_offline/requests
    record_limit: int = 10_000  # only the last this many

    def fault_rates(self) -> list[tuple[str, float]]:
        return [(fault, getattr(self, f"{fault}_rate")) for fault in FAULTS]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def non_defaults(self) -> dict[str, Any]:
        default = WriterSettings()
        return {k: v for k, v in self.as_dict().items() if getattr(default, k) != v}


class SettingError(ValueError):
    """An unknown setting or a bad value; `name` says which setting."""

    def __init__(self, name: str, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.name = name
        self.unknown = unknown


def _number(minimum: float, maximum: float | None = None) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("is not a number")
        if not minimum <= value <= (math.inf if maximum is None else maximum):
            bounds = (
                f"from {minimum:g} to {maximum:g}" if maximum is not None else f">= {minimum:g}"
            )
            raise ValueError(f"is not a number {bounds}")
        return float(value)

    return check


def _integer(minimum: int | None, *, optional: bool = False) -> Callable[[Any], int | None]:
    def check(value: Any) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("is not an integer" + (" or null" if optional else ""))
        if minimum is not None and value < minimum:
            raise ValueError(f"is below {minimum}")
        return value

    return check


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if str(value) not in options:
            raise ValueError(f"is not one of {', '.join(options)}")
        return str(value)

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("is not true or false")
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "latency_ms": _number(0),
    "latency_jitter_ms": _number(0),
    "latency_distribution": _choice(*LATENCY_DISTRIBUTIONS),
    "latency_sigma": _number(0),
    "seed": _integer(None, optional=True),
    "max_concurrency": _integer(1, optional=True),
    "retry_after_s": _number(0),
    "rpm_limit": _integer(1, optional=True),
    "tpm_limit": _integer(1, optional=True),
    **{f"{fault}_rate": _number(0, 1) for fault in FAULTS},
    "timeout_hold_s": _number(0),
    "timeout_action": _choice(*TIMEOUT_ACTIONS),
    "fail_first_n": _integer(0),
    "profile": _choice(*PROFILES),
    "prefix_cache": _boolean,
    "prefix_cache_block_tokens": _integer(1),
    "record": _boolean,
    "record_limit": _integer(1),
}
SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(WriterSettings))
assert set(SETTING_NAMES) == set(_CHECKS), "every setting needs a check"


def updated_settings(base: WriterSettings, changes: Mapping[str, Any]) -> WriterSettings:
    """base with the changes, all checked first; SettingError names the first bad one."""
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        check = _CHECKS.get(name)
        if check is None:
            raise SettingError(
                name,
                f"Unknown setting '{name}'. Known settings: {', '.join(SETTING_NAMES)}.",
                unknown=True,
            )
        try:
            checked[name] = check(value)
        except ValueError as exc:
            raise SettingError(name, f"Invalid value for '{name}': {value!r} {exc}.") from None
    settings = dataclasses.replace(base, **checked)
    rates = {f"{fault}_rate": rate for fault, rate in settings.fault_rates() if rate}
    if sum(rates.values()) > 1 + 1e-9:
        name = next((n for n in checked if n in rates), next(iter(rates)))
        listed = ", ".join(f"{n}={rate:g}" for n, rate in rates.items())
        raise SettingError(
            name,
            f"The fault rates add up to more than 1 ({listed}); a request gets at most one "
            "fault, so they may add up to 1 at most.",
        )
    return settings


def draw_latency_ms(settings: WriterSettings, rng: random.Random) -> float:
    """One completion's delay: latency_ms ± a uniform jitter, or log-normal around it."""
    if settings.latency_distribution == "lognormal":
        if settings.latency_ms <= 0:
            return 0.0
        return settings.latency_ms * math.exp(rng.gauss(0.0, settings.latency_sigma))
    if settings.latency_jitter_ms:
        jitter = settings.latency_jitter_ms
        return max(0.0, settings.latency_ms + rng.uniform(-jitter, jitter))
    return settings.latency_ms


def draw_fault(settings: WriterSettings, rng: random.Random) -> str | None:
    """The fault for one completion, or None. One draw, so the faults exclude each other."""
    roll = rng.random()
    for fault, rate in settings.fault_rates():
        if roll < rate:
            return fault
        roll -= rate
    return None


def spoil_copy(copy: str, data: Mapping[str, Any] | None, fault: str) -> str:
    """The copy as a careless model writes it, for one of COPY_FAULTS; unchanged when
    the data gives the fault nothing to work with."""
    data = mapping(data)
    audience = mapping(data.get("audience"))
    if fault == "overreach":
        shares = [
            (float(share), str(value))
            for values in mapping(audience.get("summary")).values()
            for value, share in mapping(values).items()
            if isinstance(share, int | float) and len(str(value)) >= 4
            and any(c.isalpha() for c in str(value))
        ]  # fmt: skip
        if shares:
            return f"{copy} Made for {min(shares)[1]} fans."
    elif fault == "banned_phrase":
        phrases = [p for p in data.get("banned_phrases") or [] if isinstance(p, str) and p]
        if phrases:
            return f"{copy} {phrases[0]}!"
    elif fault == "drop_protected":
        name = inline(mapping(data.get("product")).get("name"), limit=300)
        if name and name in copy:
            return copy.replace(name, "this product")
    elif fault == "echo_input":
        # A customer's attribute values, and the values a segment's summary counts.
        texts = [v for v in mapping(audience.get("attributes")).values() if isinstance(v, str)]
        texts += [
            str(value)
            for shares in mapping(audience.get("summary")).values()
            for value in mapping(shares)
        ]
        if texts:
            return f"{copy} {max(texts, key=len)}"
    return copy
