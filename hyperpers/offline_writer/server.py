"""The HTTP server: an OpenAI-compatible endpoint that answers with composed copy.

It stands in for the range of real providers under load: a latency, a concurrency limit
and sliding-minute rpm/tpm limits answered with 429 and Retry-After, OpenAI's
x-ratelimit-* headers, a prefix cache, the answer shapes of hosted models (profiles.py)
and injected faults (faults.py). Only the standard library is used, so it starts
anywhere the project's Python does.

The prefix cache (settings `prefix_cache`, `prefix_cache_block_tokens`) works like
OpenAI's automatic prompt caching: the prompt - the messages' roles and contents in
order - is hashed cumulatively in blocks of that many tokens (four characters a token),
the last PREFIX_CACHE_ENTRIES block hashes are remembered, and
usage.prompt_tokens_details.cached_tokens reports the tokens of the longest run of
leading blocks seen before (never more than prompt_tokens).

Endpoints:
- POST /v1/chat/completions (non-streaming; `n`, `max_tokens` and, in the json profile,
  `response_format` are honoured). The only endpoint that is limited, fault-injected
  and shaped.
- GET /v1/models and GET /v1/models/<id>
- GET /_offline/requests: what the server has received, for tests; DELETE clears it.
- GET /_offline/config: the settings; POST it a JSON object of settings to change
  (an unknown setting or a bad value gets 400 naming it).
- GET /_offline/stats: counters of completions (requests, completed, rejected_429 and
  rejected_by {concurrency, requests, tokens, random}, errors_injected per fault,
  shapes: the completed answers per shape - plain, bold_name, marked, json,
  json_fenced, bad_json, no_rationale, short_rationale, preamble, truncated) and
  in_flight/max_in_flight.
- POST /_offline/reset: clear the records, counters, shapes, rate windows and prefix
  cache.
When the server has an api_key, all of them need `Authorization: Bearer <key>`.
Every response carries the x-ratelimit-* headers.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import random
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from .composer import compose_reply
from .faults import (
    COPY_FAULTS,
    FAULTS,
    SETTING_NAMES,
    SettingError,
    WriterSettings,
    draw_fault,
    draw_latency_ms,
    spoil_copy,
    updated_settings,
)
from .profiles import REFUSAL, recount_usage, shape_answers
from .text import estimate_tokens, extract_data, message_text, prompt_text

# The package's name: the logger the offline writer has always logged under.
logger = logging.getLogger(__package__)

DEFAULT_MODELS: tuple[str, ...] = ("offline-writer-1",)
SYSTEM_FINGERPRINT = "offline-writer-rules-1"
NOTE = (
    "Rule-based offline writer bundled with Hyperpers for demos and tests; it composes "
    "copy from the prompt's inputs by fixed rules. It is not a language model."
)
METADATA: dict[str, Any] = {"is_language_model": False, "note": NOTE}
PREFIX_CACHE_ENTRIES = 20_000
WINDOW_S = 60.0  # the sliding window of rpm_limit and tpm_limit
# What the rate-limit headers report when no limit is set.
UNLIMITED_REQUESTS = 10_000
UNLIMITED_TOKENS = 10_000_000


def format_duration(seconds: float) -> str:
    """A duration the way OpenAI's x-ratelimit-reset-* headers write it: 120ms, 8.64s, 1m0s."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.3g}s"


# --------------------------------------------------------------------------------------
# HTTP: the server


class _APIError(Exception):
    """An error answered in OpenAI's shape: {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class _RateLimited(_APIError):
    """A 429; retry_after_s (None: retrying will not help) goes into Retry-After."""

    def __init__(self, message: str, *, type_: str, retry_after_s: float | None) -> None:
        super().__init__(429, message, type_=type_, code="rate_limit_exceeded")
        self.retry_after_s = retry_after_s

    def headers(self) -> list[tuple[str, str]]:
        if self.retry_after_s is None:
            return []
        wait = max(0.0, self.retry_after_s)
        return [
            ("Retry-After", str(math.ceil(wait))),
            ("retry-after-ms", str(math.ceil(wait * 1000))),
        ]


_INJECTED = " (fault injected by the offline writer)"
_SERVER_ERRORS: dict[int, _APIError] = {
    500: _APIError(
        500, "The server had an error while processing your request. Sorry about that!" + _INJECTED,
        type_="server_error",
    ),
    502: _APIError(502, "Bad gateway." + _INJECTED, type_="server_error", code="bad_gateway"),
    503: _APIError(
        503, "The server is overloaded or not ready yet." + _INJECTED, type_="server_error",
        code="service_unavailable",
    ),
    504: _APIError(
        504, "Gateway timeout: the upstream did not answer in time." + _INJECTED,
        type_="server_error", code="gateway_timeout",
    ),
}  # fmt: skip
_WARMING_UP = _APIError(
    503, "The server is not ready yet (fail_first_n of the offline writer); please retry.",
    type_="server_error", code="service_unavailable",
)  # fmt: skip


@dataclass
class _Ticket:
    """An admitted completion: what was drawn for it and its entry in the token window."""

    fault: str | None
    latency_s: float
    error_status: int
    tokens: list[float]  # [monotonic time, tokens]


class OfflineWriterServer(ThreadingHTTPServer):
    """The offline writer's HTTP server. Run it with serve_forever() or serve_in_thread().

    api_key=None accepts any key (or none); models lists the model ids it answers for;
    verbose logs every request. The other keyword arguments are WriterSettings fields
    (latency, limits, faults, recording); configure() and POST /_offline/config change
    them while it serves. Only POST /v1/chat/completions is limited and fault-injected.
    """

    daemon_threads = True
    # server_close() closes the connections instead of waiting for held or idle ones.
    block_on_close = False
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int] = ("127.0.0.1", 0),
        *,
        api_key: str | None = None,
        models: Sequence[str] | None = None,
        verbose: bool = False,
        **settings: Any,
    ) -> None:
        if unknown := [name for name in settings if name not in SETTING_NAMES]:
            raise TypeError(
                f"OfflineWriterServer() got an unexpected keyword argument {unknown[0]!r}"
            )
        self.settings = updated_settings(WriterSettings(), settings)
        self.api_key = api_key or None
        self.models: list[str] = list(models) if models else list(DEFAULT_MODELS)
        self.verbose = verbose
        self.started = int(time.time())
        # One lock for the counters, the windows, the records and the RNG; each hold is short.
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._requests: deque[dict[str, Any]] = deque(maxlen=self.settings.record_limit)
        self._rng = random.Random(self.settings.seed)
        self._in_flight = 0
        self._clear_counters()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up, which can stall on a bad resolver.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port

    @property
    def base_url(self) -> str:
        # server_bind() set these from the bound socket: its host is a str, where the
        # address the server was given may have been bytes.
        host, port = self.server_name, self.server_port
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/v1"

    # ----------------------------------------------------------------------------------
    # Records, settings and counters

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of the requests received (the last record_limit), oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> int:
        with self._lock:
            count = len(self._requests)
            self._requests.clear()
            return count

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(entry)

    def config(self) -> dict[str, Any]:
        return self.settings.as_dict()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings while serving and return them all; SettingError names a bad one.

        Setting seed reseeds the RNG; setting fail_first_n fails the next N completions.
        """
        with self._lock:
            settings = updated_settings(self.settings, changes)
            if "seed" in changes:
                self._rng.seed(settings.seed)
            if "fail_first_n" in changes:
                self._fail_remaining = settings.fail_first_n
            if settings.record_limit != self._requests.maxlen:
                self._requests = deque(self._requests, maxlen=settings.record_limit)
            self.settings = settings
        return settings.as_dict()

    def stats(self) -> dict[str, Any]:
        """Counters of chat completions since start or reset(), and the current load."""
        with self._lock:
            self._expire(time.monotonic())
            return {
                "requests": self._counts["requests"],
                "completed": self._counts["completed"],
                "rejected_429": sum(self._rejected.values()),
                "rejected_by": dict(self._rejected),
                "errors_injected": dict(self._injected),
                "invalid": self._counts["invalid"],
                "internal_errors": self._counts["internal_errors"],
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "fail_first_n_remaining": self._fail_remaining,
                "window": {"requests": len(self._request_window), "tokens": self._tokens_used},
                "connections": {"opened": self._opened, "open": len(self._connections)},
                "recorded": len(self._requests),
                "shapes": dict(self._shapes),
            }

    def reset(self) -> int:
        """Clear the records, counters and rate windows; reseed. Returns the records cleared."""
        with self._lock:
            cleared = len(self._requests)
            self._requests.clear()
            self._clear_counters()
            self._rng.seed(self.settings.seed)
            return cleared

    def _clear_counters(self) -> None:
        self._counts = dict.fromkeys(("requests", "completed", "invalid", "internal_errors"), 0)
        self._rejected = dict.fromkeys(("concurrency", "requests", "tokens", "random"), 0)
        self._shapes: dict[str, int] = {}
        self._prefixes: OrderedDict[bytes, None] = OrderedDict()
        self._injected = dict.fromkeys(("fail_first_n", *FAULTS), 0)
        # Requests still in flight stay counted; their release() decrements.
        self._max_in_flight = self._in_flight
        self._fail_remaining = self.settings.fail_first_n
        self._request_window: deque[float] = deque()
        self._token_window: deque[list[float]] = deque()
        self._tokens_used = 0.0
        self._opened = 0

    # ----------------------------------------------------------------------------------
    # Admission: concurrency, rate windows, and what to draw for the request

    def admit(self, settings: WriterSettings, *, prompt_tokens: int, model: str) -> _Ticket:
        """Admit one completion or raise _RateLimited.

        1. Refuse it when max_concurrency completions are in flight.
        2. Refuse it when the last minute holds rpm_limit requests, or too many tokens
           for its prompt to fit under tpm_limit; refusals do not count in the windows.
        3. Count it in flight and in the windows; draw its fault and latency.
        """
        now = time.monotonic()
        with self._lock:
            self._counts["requests"] += 1
            self._expire(now)
            limit = settings.max_concurrency
            if limit is not None and self._in_flight >= limit:
                self._rejected["concurrency"] += 1
                raise _RateLimited(
                    f"Rate limit reached for {model} on concurrent requests: Limit {limit}, "
                    f"In flight {self._in_flight}. Please try again in "
                    f"{format_duration(settings.retry_after_s)}.",
                    type_="requests", retry_after_s=settings.retry_after_s,
                )  # fmt: skip
            rpm, used = settings.rpm_limit, len(self._request_window)
            if rpm is not None and used >= rpm:
                # A slot frees when the request `rpm` places from the newest leaves.
                wait = self._request_window[used - rpm] + WINDOW_S - now
                self._rejected["requests"] += 1
                raise _RateLimited(
                    f"Rate limit reached for {model} on requests per min (RPM): Limit {rpm}, "
                    f"Used {used}, Requested 1. Please try again in {format_duration(wait)}.",
                    type_="requests", retry_after_s=wait,
                )  # fmt: skip
            tpm = settings.tpm_limit
            if tpm is not None and self._tokens_used + prompt_tokens > tpm:
                self._rejected["tokens"] += 1
                if prompt_tokens > tpm:
                    raise _RateLimited(
                        f"Request too large for {model} on tokens per min (TPM): Limit {tpm}, "
                        f"Requested {prompt_tokens}. The input must be shorter.",
                        type_="tokens", retry_after_s=None,
                    )  # fmt: skip
                wait = self._tokens_free_in(now, tpm - prompt_tokens)
                raise _RateLimited(
                    f"Rate limit reached for {model} on tokens per min (TPM): Limit {tpm}, "
                    f"Used {round(self._tokens_used)}, Requested {prompt_tokens}. Please try "
                    f"again in {format_duration(wait)}.",
                    type_="tokens", retry_after_s=wait,
                )  # fmt: skip
            previous_max = self._max_in_flight
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._request_window.append(now)
            entry = [now, float(prompt_tokens)]
            self._token_window.append(entry)
            self._tokens_used += prompt_tokens
            # Drawn in arrival order, so a seed repeats a sequential run exactly.
            fault = draw_fault(settings, self._rng)
            if fault == "rate_limit":
                # A busy shard's 429: not a spent budget, so it leaves the windows and
                # the in-flight count as they were.
                self._in_flight -= 1
                self._max_in_flight = previous_max
                self._request_window.pop()
                self._token_window.pop()
                self._tokens_used -= prompt_tokens
                self._rejected["random"] += 1
                self._injected["rate_limit"] += 1
                raise _RateLimited(
                    f"Rate limit reached for {model}: the server is busy. Please try again "
                    f"in {format_duration(settings.retry_after_s)}." + _INJECTED,
                    type_="requests", retry_after_s=settings.retry_after_s,
                )  # fmt: skip
            latency_s = draw_latency_ms(settings, self._rng) / 1000
            status = self._rng.choice((500, 502, 503)) if fault == "error_5xx" else 0
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                fault = "fail_first_n"
            return _Ticket(fault, latency_s, status, entry)

    def count_shape(self, shape: str) -> None:
        with self._lock:
            self._shapes[shape] = self._shapes.get(shape, 0) + 1

    def cached_tokens(self, settings: WriterSettings, messages: Any, prompt_tokens: int) -> int:
        """Like a provider's automatic prefix cache: the tokens of the longest run of
        leading blocks of this prompt seen before (then all its blocks are remembered)."""
        if not settings.prefix_cache or not isinstance(messages, list):
            return 0
        text = prompt_text(messages)
        size = settings.prefix_cache_block_tokens * 4
        digest = hashlib.sha256()
        keys = []
        for start in range(0, len(text) - size + 1, size):
            digest.update(text[start : start + size].encode())
            keys.append(digest.copy().digest())
        hits = 0
        with self._lock:
            for key in keys:
                if key not in self._prefixes:
                    break
                hits += 1
            for key in keys:
                self._prefixes[key] = None
                self._prefixes.move_to_end(key)
            while len(self._prefixes) > PREFIX_CACHE_ENTRIES:
                self._prefixes.popitem(last=False)
        return min(prompt_tokens, hits * settings.prefix_cache_block_tokens)

    def charge(self, ticket: _Ticket, completion_tokens: int) -> None:
        """Add a completion's tokens to its entry in the token window, if still there."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            if ticket.tokens[0] > now - WINDOW_S:
                ticket.tokens[1] += completion_tokens
                self._tokens_used += completion_tokens

    def release(self, outcome: str) -> None:
        """An admitted completion is answered (or dropped); count how."""
        with self._lock:
            self._in_flight -= 1
            self._count(outcome)

    def count_refused(self, outcome: str) -> None:
        """A completion refused before admission (a bad key)."""
        with self._lock:
            self._counts["requests"] += 1
            self._count(outcome)

    def _count(self, outcome: str) -> None:
        if outcome in self._injected:
            self._injected[outcome] += 1
        elif outcome in self._counts:
            self._counts[outcome] += 1

    def _expire(self, now: float) -> None:
        cutoff = now - WINDOW_S
        requests, tokens = self._request_window, self._token_window
        while requests and requests[0] <= cutoff:
            requests.popleft()
        while tokens and tokens[0][0] <= cutoff:
            self._tokens_used -= tokens.popleft()[1]

    def _tokens_free_in(self, now: float, allowed: float) -> float:
        """Seconds until the token window holds at most `allowed` tokens."""
        used = self._tokens_used
        for at, tokens in self._token_window:
            used -= tokens
            if used <= allowed:
                return at + WINDOW_S - now
        return WINDOW_S

    def rate_limit_headers(self, settings: WriterSettings) -> list[tuple[str, str]]:
        """OpenAI's x-ratelimit-* headers; reset-* is when the oldest entry leaves the window."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            if settings.rpm_limit is None:
                requests = (UNLIMITED_REQUESTS, UNLIMITED_REQUESTS - 1, "0s")
            else:
                window = self._request_window
                reset = format_duration(window[0] + WINDOW_S - now) if window else "0s"
                requests = (settings.rpm_limit, max(0, settings.rpm_limit - len(window)), reset)
            if settings.tpm_limit is None:
                tokens = (UNLIMITED_TOKENS, UNLIMITED_TOKENS - 1, "0s")
            else:
                charges = self._token_window  # [time, tokens] pairs, oldest first
                reset = format_duration(charges[0][0] + WINDOW_S - now) if charges else "0s"
                remaining = max(0, settings.tpm_limit - math.ceil(self._tokens_used))
                tokens = (settings.tpm_limit, remaining, reset)
        return [
            ("x-ratelimit-limit-requests", str(requests[0])),
            ("x-ratelimit-remaining-requests", str(requests[1])),
            ("x-ratelimit-reset-requests", requests[2]),
            ("x-ratelimit-limit-tokens", str(tokens[0])),
            ("x-ratelimit-remaining-tokens", str(tokens[1])),
            ("x-ratelimit-reset-tokens", tokens[2]),
        ]

    # ----------------------------------------------------------------------------------
    # Connections and shutdown

    def wait(self, seconds: float) -> bool:
        """Sleep, unless the server closes first; whether the whole time passed."""
        if seconds <= 0:
            return not self._closing.is_set()
        return not self._closing.wait(seconds)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._connections.add(request)
            self._opened += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        # Wake held requests and end idle keep-alive connections, so no thread outlives
        # the server by more than a moment.
        self._closing.set()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        super().server_close()

    def stop(self) -> None:
        """Stop serve_forever() (run in another thread) and close the socket."""
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response is not our error; anything else is a bug.
        if isinstance(sys.exc_info()[1], ConnectionError) and not self.verbose:
            return
        super().handle_error(request, client_address)


def _prompt_tokens(body: Any) -> int:
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return 0
    return estimate_tokens(prompt_text(messages))


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


class _Handler(BaseHTTPRequestHandler):
    server: OfflineWriterServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection holds a thread at most this long
    # Each response goes out in one write; with Nagle off it does not wait for an ACK.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return "HyperpersOfflineWriter/1"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _handle(self) -> None:
        started = time.perf_counter()
        self._admitted = False  # set while an admitted completion holds its place
        request_id = f"req_offline_{uuid.uuid4().hex}"
        try:
            raw = self._read_body()
        except ValueError:
            # The body's framing is broken, so the connection cannot be reused.
            self.close_connection = True
            error = _APIError(400, "The request body's length is not readable.")
            self._send_json(400, error.body(), request_id, started)
            return
        path = unquote(urlsplit(self.path).path).rstrip("/") or "/"
        body: Any = None
        malformed = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                malformed = True
        if not path.startswith("/_offline/") and self.server.settings.record:
            headers = {
                k.lower(): v
                for k, v in self.headers.items()
                if k.lower() not in {"authorization", "api-key"}
            }
            self.server.record(
                {
                    "method": self.command,
                    "path": self.path,
                    "body": body,
                    "headers": headers,
                    "at": time.monotonic(),  # when it came in, for tests of waits
                }
            )
        if path == "/v1/chat/completions" and self.command == "POST":
            self._chat_completion(body, malformed, request_id, started)
            return
        try:
            status, payload = self._route(path, body, malformed)
        except _APIError as exc:
            status, payload = exc.status, exc.body()
        except Exception:
            logger.exception("The offline writer failed on %s %s", self.command, self.path)
            status, payload = 500, self._internal_error().body()
        self._send_json(status, payload, request_id, started)

    def _read_body(self) -> bytes:
        # Read the whole body even when the answer is an error, so that a kept-alive
        # connection stays in step with the client.
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # ----------------------------------------------------------------------------------
    # Chat completions: admission, faults, latency

    def _chat_completion(self, body: Any, malformed: bool, request_id: str, started: float) -> None:
        server = self.server
        settings = server.settings  # one snapshot for the whole request
        model = body.get("model") if isinstance(body, dict) else None
        try:
            self._authorize()
        except _APIError as exc:
            server.count_refused("invalid")
            self._send_json(exc.status, exc.body(), request_id, started)
            return
        try:
            ticket = server.admit(
                settings,
                prompt_tokens=_prompt_tokens(body),
                model=model if isinstance(model, str) and model else "the model",
            )
        except _RateLimited as exc:
            self._send_json(429, exc.body(), request_id, started, exc.headers())
            return
        self._outcome, self._admitted = "internal_errors", True
        try:
            self._answer_admitted(settings, ticket, body, malformed, request_id, started)
        except Exception:
            logger.exception("The offline writer failed on %s %s", self.command, self.path)
            self._outcome = "internal_errors"
            self._send_json(500, self._internal_error().body(), request_id, started)
        finally:
            self._release()

    def _release(self) -> None:
        """Leave in-flight and count the outcome, once, before the client hears anything.

        Before, not after: a client that sends its next request the moment it has the
        answer must not find this one still in flight (a false 429), and stats read then
        must already count it.
        """
        if self._admitted:
            self._admitted = False
            self.server.release(self._outcome)

    def _answer_admitted(
        self,
        settings: WriterSettings,
        ticket: _Ticket,
        body: Any,
        malformed: bool,
        request_id: str,
        started: float,
    ) -> None:
        """Answer an admitted completion; self._outcome says how, for the counters.

        1. fail_first_n: 503 at once. timeout: hold, then 504 or close.
        2. A bad request: 4xx at once.
        3. Compose, then wait out the drawn latency (counted from arrival).
        4. reset and error_5xx replace the answer; refusal, content_filter, empty,
           no_rationale and malformed spoil it; otherwise it is sent in the profile's
           shape (bad_json spoils it only when that shape is JSON), and its shape counted.
        5. Charge the tokens sent to the token window.

        A rate_limit fault never gets here: admit() refuses it at once.
        """
        server = self.server
        fault = ticket.fault
        if fault == "fail_first_n":
            self._outcome = fault
            self._send_json(503, _WARMING_UP.body(), request_id, started)
            return
        if fault == "timeout":
            self._outcome = fault
            held = server.wait(settings.timeout_hold_s)
            if held and settings.timeout_action == "504":
                self._send_json(504, _SERVER_ERRORS[504].body(), request_id, started)
            else:
                self._drop_connection(reset=False)
            return
        try:
            if malformed:
                raise self._invalid_json()
            payload = self._completion(body, settings)
        except _APIError as exc:
            self._outcome = "invalid"
            self._send_json(exc.status, exc.body(), request_id, started)
            return
        if not server.wait(ticket.latency_s - (time.perf_counter() - started)):
            self._outcome = "closing"
            self._drop_connection(reset=False)
            return
        if fault == "reset":
            self._outcome = fault
            self._drop_connection(reset=True)
            return
        if fault == "error_5xx":
            self._outcome = fault
            error = _SERVER_ERRORS[ticket.error_status]
            self._send_json(error.status, error.body(), request_id, started)
            return
        if fault in COPY_FAULTS:
            users = [m for m in body["messages"] if isinstance(m, Mapping)]
            data = extract_data(message_text(users[-1].get("content"))) if users else None
            for choice in payload["choices"]:
                message = choice["message"]
                copy, sep, rest = message["content"].partition("\n\nRationale:")
                message["content"] = spoil_copy(copy, data, fault) + sep + rest
            recount_usage(payload)
        if fault in (None, "bad_json", *COPY_FAULTS):
            shape = shape_answers(payload, body, settings.profile, bad_json=fault == "bad_json")
            if fault == "bad_json" and shape != "bad_json":
                fault = None  # bad_json spoils only a JSON answer; this one went out whole
            server.count_shape(shape)
        elif fault == "refusal":
            for choice in payload["choices"]:
                choice["message"]["content"] = None
                choice["message"]["refusal"] = REFUSAL
            recount_usage(payload)
        elif fault == "content_filter":
            for choice in payload["choices"]:
                choice["message"]["content"] = None
                choice["finish_reason"] = "content_filter"
        elif fault == "empty":
            payload["choices"] = []
        elif fault == "no_rationale":
            for choice in payload["choices"]:
                message = choice["message"]
                message["content"] = message["content"].split("\n\nRationale:")[0]
        server.charge(ticket, payload["usage"]["completion_tokens"])
        encoded = _dumps(payload)
        if fault == "malformed":
            encoded = encoded[: len(encoded) // 2]  # cut off mid-object, as a dropped proxy would
        self._outcome = fault or "completed"
        self._send(200, encoded, request_id, started)

    def _drop_connection(self, *, reset: bool) -> None:
        """Close the connection without an answer: a TCP reset, or an orderly close."""
        self._release()
        self.close_connection = True
        connection = self.connection
        with contextlib.suppress(OSError):
            if reset:
                # A zero linger time makes close() send RST instead of FIN.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                connection.shutdown(socket.SHUT_RDWR)
        # The socket closes for real once rfile, which holds a reference, is closed too.
        self.rfile.close()
        connection.close()

    # ----------------------------------------------------------------------------------
    # Everything else: models and the control endpoints

    def _route(self, path: str, body: Any, malformed: bool) -> tuple[int, Any]:
        known = {
            "/v1/chat/completions": {"POST"},
            "/v1/models": {"GET"},
            "/_offline/requests": {"GET", "DELETE"},
            "/_offline/config": {"GET", "POST"},
            "/_offline/stats": {"GET"},
            "/_offline/reset": {"POST"},
        }
        is_model = path.startswith("/v1/models/")
        if path not in known and not is_model:
            raise _APIError(404, f"Invalid URL ({self.command} {self.path})", code="unknown_url")
        self._authorize()
        allowed = {"GET"} if is_model else known[path]
        if self.command not in allowed:
            raise _APIError(
                405, f"Method {self.command} is not allowed on {path}; use {', '.join(allowed)}",
                code="method_not_allowed",
            )  # fmt: skip
        server = self.server
        if is_model:
            model_id = path[len("/v1/models/") :]
            self._require_model(model_id)
            return 200, self._model(model_id)
        if path == "/v1/models":
            return 200, {"object": "list", "data": [self._model(m) for m in server.models]}
        if path == "/_offline/requests":
            if self.command == "DELETE":
                return 200, {"deleted": server.clear_requests()}
            return 200, {"object": "list", "data": server.requests}
        if path == "/_offline/stats":
            return 200, server.stats()
        if path == "/_offline/reset":
            return 200, {"reset": True, "cleared_requests": server.reset()}
        if self.command == "GET":  # /_offline/config
            return 200, server.config()
        if malformed or not isinstance(body, dict):
            raise self._invalid_json()
        try:
            return 200, server.configure(**body)
        except SettingError as exc:
            raise _APIError(
                400, str(exc), param=exc.name,
                code="unknown_setting" if exc.unknown else "invalid_value",
            ) from None  # fmt: skip

    def _invalid_json(self) -> _APIError:
        return _APIError(
            400,
            "We could not parse the JSON body of your request. The offline writer "
            "expects a JSON object.",
            code="invalid_json",
        )

    def _internal_error(self) -> _APIError:
        return _APIError(500, "The offline writer hit an internal error.", type_="server_error")

    def _authorize(self) -> None:
        expected = self.server.api_key
        if expected is None:
            return
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            raise _APIError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            )
        if not hmac.compare_digest(header[7:].strip().encode(), expected.encode()):
            raise _APIError(401, "Incorrect API key provided.", code="invalid_api_key")

    def _require_model(self, model: str) -> None:
        if model not in self.server.models:
            raise _APIError(
                404,
                f"The model `{model}` does not exist or you do not have access to it. "
                f"This offline writer serves: {', '.join(self.server.models)}.",
                code="model_not_found",
            )

    def _model(self, model_id: str) -> dict[str, Any]:
        return {
            "id": model_id,
            "object": "model",
            "created": self.server.started,
            "owned_by": "hyperpers",
        }

    def _completion(self, body: Any, settings: WriterSettings) -> dict[str, Any]:
        """The composed completion in the plain shape; shape_answers() reshapes it."""
        if not isinstance(body, dict):
            raise _APIError(400, "The request body must be a JSON object.", code="invalid_json")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _APIError(
                400, "you must provide a model parameter", param="model",
                code="missing_required_parameter",
            )  # fmt: skip
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _APIError(
                400, "'messages' must be a non-empty array of messages", param="messages",
                code="missing_required_parameter",
            )  # fmt: skip
        if not all(isinstance(m, dict) and "role" in m for m in messages):
            raise _APIError(
                400, "Each message must be an object with a 'role'.", param="messages",
                code="invalid_value",
            )  # fmt: skip
        if body.get("stream"):
            raise _APIError(
                400, "The offline writer does not stream; send stream=false.",
                param="stream", code="unsupported_value",
            )  # fmt: skip
        n = body.get("n") or 1
        if not isinstance(n, int) or not 1 <= n <= 16:
            raise _APIError(400, "'n' must be an integer from 1 to 16.", param="n")
        self._require_model(model)

        content = compose_reply(messages)
        finish_reason = "stop"
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(max_tokens, int) and 0 < max_tokens < estimate_tokens(content):
            content, finish_reason = content[: max_tokens * 4], "length"
        prompt_tokens = _prompt_tokens(body)
        cached = self.server.cached_tokens(settings, messages, prompt_tokens)
        completion_tokens = estimate_tokens(content) * n
        return {
            "id": f"chatcmpl-offline-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
                for i in range(n)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached},
            },
            "hyperpers_offline_writer": dict(METADATA),
        }

    # ----------------------------------------------------------------------------------
    # Writing responses

    def _send_json(
        self,
        status: int,
        payload: Any,
        request_id: str,
        started: float,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._send(status, _dumps(payload), request_id, started, extra)

    def _send(
        self,
        status: int,
        data: bytes,
        request_id: str,
        started: float,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Write the status line, headers and body in one write."""
        headers = [
            f"{self.protocol_version} {status} {HTTPStatus(status).phrase}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
            f"x-request-id: {request_id}",
            f"openai-processing-ms: {round((time.perf_counter() - started) * 1000)}",
            *(f"{k}: {v}" for k, v in self.server.rate_limit_headers(self.server.settings)),
            *(f"{k}: {v}" for k, v in extra),
            "x-hyperpers-offline-writer: rules; not a language model",
        ]
        if self.close_connection:
            headers.append("Connection: close")
        head = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1")
        self._release()
        try:
            self.wfile.write(head + data)
        except OSError:
            # The client gave up (its own timeout, say); this connection is done.
            self.close_connection = True
            return
        if self.server.verbose:
            self.log_request(status, len(data))


def serve_in_thread(
    *, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> tuple[OfflineWriterServer, str]:
    """Start a server in a daemon thread; return it and its base URL (…/v1).

    port=0 takes a free port. Stop it with server.shutdown() then server.server_close()
    (or server.stop()). Options are OfflineWriterServer's keyword arguments.
    """
    server = OfflineWriterServer((host, port), **options)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"offline-writer-{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return server, server.base_url
