"""The LLM client: one OpenAI-compatible endpoint, reached with the official client.

The demo, the tests and production all take this path; only LLM_BASE_URL differs
(unset, it is the bundled offline writer).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import openai
from django.conf import settings
from openai.types.chat import ChatCompletionMessageParam


class LLMError(Exception):
    """The endpoint could not give us usable copy."""

    transient = False

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = dict(headers or {})


class TransientLLMError(LLMError):
    """Worth retrying later: rate limits, 5xx, timeouts, dropped connections."""

    transient = True


class PermanentLLMError(LLMError):
    """Retrying will not help: bad request, refused content, malformed body."""


class EndpointConfigError(PermanentLLMError):
    """The endpoint refuses our configuration (key, model): every call will fail alike."""


class RateLimited(TransientLLMError):
    """A 429: this call waits out its Retry-After; the others go on."""


class MalformedAnswer(LLMError):
    """An answer we could not read (a body cut off, no choices, JSON off the schema).
    Another sample may be well formed, so worth a few retries; `reason` names it
    (a Variant.FailureReason value)."""

    transient = True

    def __init__(
        self, message: str, *, reason: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, headers=headers)
        self.reason = reason


@dataclass(frozen=True)
class Completion:
    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency_ms: int
    response_id: str
    headers: dict[str, str]
    # "stop", "length" (cut off at max_tokens), "content_filter", ... as the endpoint
    # said; and the model's refusal text where it refused (content is then "").
    finish_reason: str = "stop"
    refusal: str = ""


@cache
def _client(base_url: str, api_key: str, timeout: float) -> openai.OpenAI:
    # Retries are ours (Celery, with backoff), so the client does not retry.
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)


def client() -> openai.OpenAI:
    return _client(settings.LLM_BASE_URL, settings.LLM_API_KEY, settings.LLM_TIMEOUT_SECONDS)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the endpoint asks us to wait (retry-after-ms, then Retry-After)."""
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except ValueError:
        return None  # an HTTP date: rare from LLM endpoints; our backoff applies
    return None


def complete(
    *,
    messages: list[dict[str, str]],
    model: str,
    temperature: float,
    response_format: dict[str, Any] | None = None,
    max_tokens: int | None = None,
) -> Completion:
    """One chat completion; raise TransientLLMError, PermanentLLMError or a subclass.

    A refusal or a content filter is not an error here: the Completion says so
    (finish_reason, refusal) and the caller decides what becomes of the variant.
    """
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if response_format is not None:
        extra["response_format"] = response_format
    if max_tokens is not None:
        extra["max_tokens"] = max_tokens
    try:
        raw = client().chat.completions.with_raw_response.create(
            model=model,
            # Role and content strings, as the endpoint takes them: openai types a message
            # as one TypedDict per role, which a dict[str, str] cannot be proved to match.
            messages=cast("list[ChatCompletionMessageParam]", messages),
            temperature=temperature,
            **extra,
        )
        response = raw.parse()
    except openai.APIStatusError as exc:
        headers = exc.response.headers
        status = exc.status_code
        error = f"HTTP {status}: {exc.message}"
        if status == 429:
            raise RateLimited(error, retry_after=_retry_after(headers), headers=headers) from exc
        if status in (408, 409) or status >= 500:
            raise TransientLLMError(
                error, retry_after=_retry_after(headers), headers=headers
            ) from exc
        if status in (401, 403) or (status == 404 and "model" in str(exc.message).lower()):
            raise EndpointConfigError(error, headers=headers) from exc
        raise PermanentLLMError(error, headers=headers) from exc
    except openai.APIConnectionError as exc:  # includes timeouts
        raise TransientLLMError(f"{type(exc).__name__}: {exc}") from exc
    except (openai.APIResponseValidationError, ValueError) as exc:
        # A body cut off mid-way (a proxy that dropped the connection) or not JSON.
        raise MalformedAnswer(
            f"Malformed response from the endpoint: {exc}", reason="malformed"
        ) from exc
    latency_ms = round((time.perf_counter() - started) * 1000)

    choices = getattr(response, "choices", None)
    if not choices:
        raise MalformedAnswer(
            "The endpoint answered with an empty 'choices' list", reason="empty_choices"
        )
    choice = choices[0]
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None) if message is not None else None
    refusal = (getattr(message, "refusal", None) or "") if message is not None else ""
    finish_reason = getattr(choice, "finish_reason", None) or "stop"
    if content is None and not refusal and finish_reason != "content_filter":
        raise MalformedAnswer("The endpoint returned no message content", reason="malformed")
    usage = response.usage
    details = getattr(usage, "prompt_tokens_details", None) if usage else None
    return Completion(
        content=content or "",
        model=response.model or model,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        cached_tokens=(getattr(details, "cached_tokens", 0) or 0) if details else 0,
        latency_ms=latency_ms,
        response_id=response.id or "",
        headers=dict(raw.headers),
        finish_reason=str(finish_reason),
        refusal=str(refusal),
    )
