"""The LLM client: one OpenAI-compatible endpoint, reached with the official client.

The demo, the tests and production all take this path; only LLM_BASE_URL differs
(unset, it is the bundled offline writer).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import cache

import openai
from django.conf import settings


class LLMError(Exception):
    """The endpoint could not give us usable copy."""

    transient = False

    def __init__(self, message: str, *, retry_after: float | None = None, headers=None) -> None:
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


class NoRationaleError(LLMError):
    """The answer lacks its rationale; another sample may have it, so worth a few retries."""

    transient = True


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


@cache
def _client(base_url: str, api_key: str, timeout: float) -> openai.OpenAI:
    # Retries are ours (Celery, with backoff), so the client does not retry.
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)


def client() -> openai.OpenAI:
    return _client(settings.LLM_BASE_URL, settings.LLM_API_KEY, settings.LLM_TIMEOUT_SECONDS)


def _retry_after(headers) -> float | None:
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


def complete(*, messages: list[dict[str, str]], model: str, temperature: float) -> Completion:
    """One chat completion; raise TransientLLMError, PermanentLLMError or a subclass."""
    started = time.perf_counter()
    try:
        raw = client().chat.completions.with_raw_response.create(
            model=model, messages=messages, temperature=temperature
        )
        response = raw.parse()
    except openai.APIStatusError as exc:
        headers = exc.response.headers
        status = exc.status_code
        message = f"HTTP {status}: {exc.message}"
        if status == 429 or status in (408, 409) or status >= 500:
            raise TransientLLMError(
                message, retry_after=_retry_after(headers), headers=headers
            ) from exc
        if status in (401, 403) or (status == 404 and "model" in str(exc.message).lower()):
            raise EndpointConfigError(message, headers=headers) from exc
        raise PermanentLLMError(message, headers=headers) from exc
    except openai.APIConnectionError as exc:  # includes timeouts
        raise TransientLLMError(f"{type(exc).__name__}: {exc}") from exc
    except (openai.APIResponseValidationError, ValueError) as exc:
        raise PermanentLLMError(f"Malformed response from the endpoint: {exc}") from exc
    latency_ms = round((time.perf_counter() - started) * 1000)

    if not getattr(response, "choices", None) or response.choices[0].message.content is None:
        raise PermanentLLMError("The endpoint returned no message content")
    usage = response.usage
    details = getattr(usage, "prompt_tokens_details", None) if usage else None
    return Completion(
        content=response.choices[0].message.content,
        model=response.model or model,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        cached_tokens=(getattr(details, "cached_tokens", 0) or 0) if details else 0,
        latency_ms=latency_ms,
        response_id=response.id or "",
        headers=dict(raw.headers),
    )


_RATIONALE = re.compile(r"^\s*(?:[*_#>]+\s*)?rationale\s*[*_]*\s*:\s*[*_]*", re.I | re.M)


def split_rationale(content: str) -> tuple[str, str]:
    """Split the model's answer into (copy, rationale) at its last 'Rationale:' line.

    Raise PermanentLLMError when there is no rationale or no copy before it.
    """
    matches = list(_RATIONALE.finditer(content))
    if not matches:
        raise NoRationaleError("The answer has no 'Rationale:' section")
    last = matches[-1]
    copy = content[: last.start()].strip()
    rationale = content[last.end() :].strip()
    if not copy:
        raise PermanentLLMError("The answer has a rationale but no copy before it")
    if not rationale:
        raise PermanentLLMError("The answer's 'Rationale:' section is empty")
    return copy, rationale
