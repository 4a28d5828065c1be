"""The LLM client and the structured-output probe against canned answers over real HTTP.

Each test serves the exact bodies an endpoint might send (a refusal, a content
filter, an empty `choices`, a body cut off, a 400 for `response_format`) from a
small HTTP server, and reads them with the official openai client, as production does.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from generation import answers, capabilities, llm
from generation.models import EndpointCapability

MESSAGES = [{"role": "user", "content": "Write."}]


def _completion(content, *, finish_reason="stop", refusal=None, choices=True) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": (
            [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "finish_reason": finish_reason,
                }
            ]
            if choices
            else []
        ),
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }


class _Canned(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append(body)
        status, payload, headers = self.server.answers.pop(0)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint(settings):
    """`.answers`: (status, body, headers) to send, in order; `.received`: what came."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    server.answers, server.received = [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.LLM_BASE_URL = f"http://127.0.0.1:{server.server_port}/v1"
    yield server
    server.shutdown()
    server.server_close()


def _complete(**kwargs) -> llm.Completion:
    return llm.complete(messages=MESSAGES, model="m", temperature=0.5, **kwargs)


def test_a_completion_carries_its_finish_reason_and_cached_tokens(endpoint):
    endpoint.answers.append((200, _completion("Copy.", finish_reason="length"), {}))
    completion = _complete(response_format=answers.response_format(), max_tokens=50)
    assert (completion.content, completion.finish_reason) == ("Copy.", "length")
    assert (completion.prompt_tokens, completion.cached_tokens) == (10, 4)
    sent = endpoint.received[0]
    assert sent["response_format"]["json_schema"]["schema"] == answers.COPY_SCHEMA
    assert sent["max_tokens"] == 50


def test_without_a_response_format_none_is_sent(endpoint):
    endpoint.answers.append((200, _completion("Copy."), {}))
    _complete()
    assert "response_format" not in endpoint.received[0]


def test_a_refusal_comes_back_named_not_as_an_error(endpoint):
    endpoint.answers.append((200, _completion(None, refusal="I can't write that."), {}))
    completion = _complete()
    assert (completion.content, completion.refusal) == ("", "I can't write that.")


def test_a_content_filter_comes_back_as_its_finish_reason(endpoint):
    endpoint.answers.append((200, _completion(None, finish_reason="content_filter"), {}))
    assert _complete().finish_reason == "content_filter"


@pytest.mark.parametrize(
    ("answer", "reason", "message"),
    [
        (_completion("x", choices=False), "empty_choices", "empty 'choices' list"),
        (_completion(None), "malformed", "no message content"),
        (b'{"id": "chatcmpl-1", "choices": [{"index": 0, "mess', "malformed", "Malformed"),
    ],
)
def test_answers_that_cannot_be_read_are_malformed_and_worth_a_retry(
    endpoint, answer, reason, message
):
    endpoint.answers.append((200, answer, {}))
    with pytest.raises(llm.MalformedAnswer, match=message) as caught:
        _complete()
    assert caught.value.reason == reason and caught.value.transient


def test_a_429_is_rate_limited_with_its_retry_after(endpoint):
    error = {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}
    endpoint.answers.append((429, error, {"retry-after-ms": "1500"}))
    with pytest.raises(llm.RateLimited) as caught:
        _complete()
    assert caught.value.retry_after == 1.5 and caught.value.transient


def test_an_unknown_model_is_a_configuration_error(endpoint):
    error = {"error": {"message": "The model `m` does not exist", "code": "model_not_found"}}
    endpoint.answers.append((404, error, {}))
    with pytest.raises(llm.EndpointConfigError, match="404"):
        _complete()


# --- the structured-output probe --------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("answer", "supported", "note"),
    [
        (
            (200, _completion('{"copy": "ok", "rationale": "probe"}'), {}),
            True,
            "schema-valid JSON",
        ),
        (
            (200, _completion('```json\n{"copy": "ok", "rationale": "probe"}\n```'), {}),
            True,
            "schema-valid JSON",
        ),
        ((200, _completion("ok\n\nRationale: probe"), {}), False, "ignored response_format"),
        ((200, _completion('{"text": "ok"}'), {}), False, "off the schema"),
        (
            (400, {"error": {"message": "Unrecognized request argument: response_format"}}, {}),
            False,
            "refused response_format",
        ),
    ],
)
def test_the_probe_remembers_what_the_endpoint_did_with_response_format(
    endpoint, settings, answer, supported, note
):
    settings.LLM_STRUCTURED_OUTPUT = "auto"
    endpoint.answers.append(answer)
    capability = capabilities.probe(model="m")
    assert capability.structured_output is supported and note in capability.note
    stored = EndpointCapability.objects.get(base_url=settings.LLM_BASE_URL, model="m")
    assert stored.structured_output is supported
    mode, why = capabilities.output_mode("m")
    assert mode == ("json" if supported else "markers") and note in why


@pytest.mark.django_db
def test_a_probe_that_only_meets_errors_cannot_tell_and_runs_use_markers(endpoint, settings):
    error = (503, {"error": {"message": "overloaded"}}, {})
    endpoint.answers.extend([error] * capabilities.PROBE_ATTEMPTS)
    capability = capabilities.probe(model="m")
    assert capability.structured_output is None and "could not tell" in capability.note
    assert capabilities.output_mode("m")[0] == "markers"


@pytest.mark.django_db
@pytest.mark.parametrize("forced", ["json", "markers"])
def test_the_setting_forces_a_mode_whatever_the_probe_found(settings, forced):
    settings.LLM_STRUCTURED_OUTPUT = forced
    EndpointCapability.objects.create(
        base_url=settings.LLM_BASE_URL, model="m", structured_output=forced != "json"
    )
    assert capabilities.output_mode("m") == (forced, f"forced by LLM_STRUCTURED_OUTPUT={forced}")
