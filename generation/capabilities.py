"""What an endpoint and model support, probed once and remembered.

Structured output (`response_format` with a JSON schema) is the reliable way to get
copy and rationale apart: OpenAI, Azure OpenAI, vLLM, Ollama and llama.cpp server
accept it. Others ignore the parameter, or refuse it with a 400. So:

1. `probe()` sends one tiny request with the schema (nothing about any customer or
   product in it) and records whether the answer came back as schema-valid JSON;
2. `output_mode()` decides a run's mode: forced by LLM_STRUCTURED_OUTPUT, or what the
   probe found for this endpoint and model;
3. `ignored_response_format()` corrects the record when answers show an endpoint that
   accepted the parameter in the probe but ignores it in real calls.
"""

from __future__ import annotations

import logging

from django.conf import settings

from generation import answers, llm
from generation.models import EndpointCapability

logger = logging.getLogger(__name__)

JSON, MARKERS = "json", "markers"
PROBE_MESSAGES = [
    {
        "role": "system",
        "content": "Answer with a JSON object that has the keys copy and rationale.",
    },
    {"role": "user", "content": 'Write the copy "ok" and the rationale "probe".'},
]
PROBE_ATTEMPTS = 3


def _record(model: str, supported: bool | None, note: str) -> EndpointCapability:
    capability, _ = EndpointCapability.objects.update_or_create(
        base_url=settings.LLM_BASE_URL,
        model=model,
        defaults={"structured_output": supported, "note": note[:300]},
    )
    return capability


def known(model: str) -> EndpointCapability | None:
    return EndpointCapability.objects.filter(base_url=settings.LLM_BASE_URL, model=model).first()


PROBE_MAX_TOKENS = 400


def probe(*, model: str) -> EndpointCapability:
    """Ask the endpoint once for schema-shaped JSON and remember what it did.

    A 400 (the parameter refused) or an answer that is not JSON: not supported. JSON
    off the schema counts as not supported too: the mode would fail every answer.
    Transient errors are tried PROBE_ATTEMPTS times; after that the result is unknown
    (None), and runs use markers until a probe can tell.
    """
    last_error = ""
    for _ in range(PROBE_ATTEMPTS):
        try:
            completion = llm.complete(
                messages=PROBE_MESSAGES,
                model=model,
                temperature=0,
                response_format=answers.response_format(),
                # Room for a whole answer: one cut off at max_tokens is not JSON, and
                # would read as "unsupported" (a copy and its rationale run ~150).
                max_tokens=PROBE_MAX_TOKENS,
            )
        except llm.EndpointConfigError:
            raise
        except llm.PermanentLLMError as exc:
            return _record(model, False, f"refused response_format: {exc}")
        except llm.LLMError as exc:
            last_error = str(exc)
            continue
        try:
            parsed = answers.parse_json(completion.content)
        except answers.AnswerError as exc:
            return _record(model, False, f"answered JSON off the schema: {exc}")
        if parsed is None:
            return _record(model, False, "ignored response_format (answered in text)")
        return _record(model, True, "answered schema-valid JSON to response_format")
    return _record(model, None, f"the probe could not tell: {last_error}")


def output_mode(model: str) -> tuple[str, str]:
    """(mode, why) for calls to `model` at the configured endpoint."""
    forced = settings.LLM_STRUCTURED_OUTPUT
    if forced == JSON:
        return JSON, "forced by LLM_STRUCTURED_OUTPUT=json"
    if forced == MARKERS:
        return MARKERS, "forced by LLM_STRUCTURED_OUTPUT=markers"
    capability = known(model)
    if capability is None:
        return MARKERS, "the endpoint and model were not probed yet"
    if capability.structured_output is None:
        return MARKERS, capability.note
    return (JSON if capability.structured_output else MARKERS), f"the endpoint {capability.note}"


def ignored_response_format(model: str) -> str:
    """Answers to response_format came back as text: remember that; return the reason."""
    note = "ignored response_format in a run's answers (answered in text)"
    if settings.LLM_STRUCTURED_OUTPUT == "auto":
        _record(model, False, note)
    logger.warning("%s at %s %s; falling back to markers", model, settings.LLM_BASE_URL, note)
    return f"fell back from JSON: the endpoint {note}"
