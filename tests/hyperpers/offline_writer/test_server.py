"""The server (server.py): completions, models, keys, limits, control, the prefix cache."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest

from hyperpers.offline_writer import (
    OfflineWriterServer,
)
from hyperpers.offline_writer import server as server_module
from tests.hyperpers.offline_writer.conftest import (
    KEY,
    _client,
    _complete,
    _control,
    _data,
    _messages,
    _stats,
)


def test_a_completion_is_copy_a_blank_line_and_a_rationale_with_usage(client):
    response = client.chat.completions.create(model="offline-writer-1", messages=_messages(_data()))

    content = response.choices[0].message.content
    copy, _, rationale = content.partition("\n\nRationale: ")
    assert copy and rationale and "\n" not in rationale
    assert "fixed rules" in rationale
    assert response.choices[0].finish_reason == "stop"
    assert response.id.startswith("chatcmpl-offline-")
    assert response.model == "offline-writer-1"
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_the_response_says_it_is_not_a_language_model(client):
    raw = client.chat.completions.with_raw_response.create(
        model="offline-writer-1", messages=_messages(_data())
    )

    body = raw.http_response.json()
    assert body["hyperpers_offline_writer"]["is_language_model"] is False
    assert "not a language model" in body["hyperpers_offline_writer"]["note"]
    assert raw.parse().model_extra["hyperpers_offline_writer"]["is_language_model"] is False
    assert body["system_fingerprint"] == "offline-writer-rules-1"
    assert raw.headers["x-request-id"] and int(raw.headers["x-ratelimit-remaining-requests"])


def test_a_wrong_key_is_refused(writer):
    wrong = openai.OpenAI(base_url=writer.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as excinfo:
        wrong.chat.completions.create(model="offline-writer-1", messages=_messages(_data()))
    assert excinfo.value.code == "invalid_api_key"


def test_an_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as excinfo:
        client.chat.completions.create(model="gpt-nope", messages=_messages(_data()))
    assert excinfo.value.code == "model_not_found" and "gpt-nope" in excinfo.value.message


def test_the_models_endpoint_lists_the_configured_models(client):
    assert [m.id for m in client.models.list()] == ["offline-writer-1", "other"]


def _post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=body, headers={"Authorization": f"Bearer {KEY}"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_malformed_requests_and_unknown_paths_get_openai_shaped_errors(writer):
    url = writer.base_url
    status, body = _post(f"{url}/chat/completions", b"{not json")
    assert status == 400 and body["error"]["code"] == "invalid_json"

    status, body = _post(f"{url}/chat/completions", b'{"model": "offline-writer-1"}')
    assert status == 400 and body["error"]["param"] == "messages"

    status, body = _post(f"{url}/embeddings", b"{}")
    assert status == 404 and set(body["error"]) == {"message", "type", "param", "code"}


def test_requests_are_recorded_without_the_authorization_header(writer, client):
    client.chat.completions.create(model="offline-writer-1", messages=_messages(_data()))

    [recorded] = writer.requests
    assert (recorded["method"], recorded["path"]) == ("POST", "/v1/chat/completions")
    assert recorded["body"]["messages"] == _messages(_data())
    assert "authorization" not in recorded["headers"]

    request = urllib.request.Request(
        writer.base_url.removesuffix("/v1") + "/_offline/requests",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response)["data"] == [recorded]


def test_requests_beyond_max_concurrency_get_429_with_retry_after_at_once(start_writer):
    server = start_writer(max_concurrency=2, latency_ms=300, retry_after_s=2)
    client = _client(server)
    start = threading.Barrier(6)
    results: list[Any] = []

    def call() -> None:
        start.wait()
        try:
            results.append(_complete(client))
        except openai.RateLimitError as exc:
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    rejected = [r for r in results if isinstance(r, openai.RateLimitError)]
    answered = len(results) - len(rejected)
    assert answered >= 2 and rejected and len(results) == 6
    for exc in rejected:
        assert (exc.code, exc.type) == ("rate_limit_exceeded", "requests")
        assert exc.response.headers["retry-after"] == "2"
        assert exc.response.headers["retry-after-ms"] == "2000"
        # Refused on arrival, not after the 300 ms the admitted ones take.
        assert int(exc.response.headers["openai-processing-ms"]) < 300
    stats = _stats(server)
    assert stats["max_in_flight"] <= 2 and stats["in_flight"] == 0
    assert stats["rejected_429"] == stats["rejected_by"]["concurrency"] == len(rejected)
    assert stats["completed"] == answered and stats["requests"] == 6


def test_a_client_that_waits_for_its_answer_never_finds_its_own_request_in_flight(start_writer):
    server = start_writer(max_concurrency=1)
    client = _client(server)

    for _ in range(20):
        _complete(client)

    assert _stats(server)["rejected_429"] == 0


def test_the_rpm_limit_answers_429_with_the_seconds_until_a_slot_frees(start_writer):
    server = start_writer(rpm_limit=2)
    client = _client(server)
    _complete(client)
    _complete(client)

    with pytest.raises(openai.RateLimitError) as excinfo:
        _complete(client)

    exc = excinfo.value
    assert (exc.code, exc.type) == ("rate_limit_exceeded", "requests")
    assert "requests per min (RPM): Limit 2" in exc.message
    assert 55 <= int(exc.response.headers["retry-after"]) <= 60
    assert exc.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert _stats(server)["rejected_by"]["requests"] == 1


def test_the_tpm_limit_answers_429_when_the_window_has_no_room_for_the_prompt(start_writer):
    server = start_writer()
    client = _client(server)
    first = _complete(client)
    _control(server, "POST", "/_offline/config", {"tpm_limit": first.usage.total_tokens + 10})

    with pytest.raises(openai.RateLimitError) as excinfo:
        _complete(client)

    assert excinfo.value.type == "tokens" and "tokens per min (TPM)" in excinfo.value.message
    assert 55 <= int(excinfo.value.response.headers["retry-after"]) <= 60
    assert _stats(server)["rejected_by"]["tokens"] == 1


def test_rate_limit_headers_count_down_the_remaining_requests_and_tokens(start_writer):
    client = _client(start_writer(rpm_limit=100, tpm_limit=100_000))

    first = client.chat.completions.with_raw_response.create(
        model="offline-writer-1", messages=_messages(_data())
    ).headers
    second = client.chat.completions.with_raw_response.create(
        model="offline-writer-1", messages=_messages(_data())
    ).headers

    assert first["x-ratelimit-limit-requests"] == "100"
    assert first["x-ratelimit-limit-tokens"] == "100000"
    assert (first["x-ratelimit-remaining-requests"], second["x-ratelimit-remaining-requests"]) == (
        "99",
        "98",
    )
    assert (
        int(second["x-ratelimit-remaining-tokens"])
        < int(first["x-ratelimit-remaining-tokens"])
        < 100_000
    )
    duration = re.compile(r"\d+ms|\d+(\.\d+)?s|\d+m\d+(\.\d+)?s")
    assert duration.fullmatch(first["x-ratelimit-reset-requests"])
    assert duration.fullmatch(first["x-ratelimit-reset-tokens"])


def test_without_limits_the_rate_limit_headers_report_large_static_numbers(client):
    for _ in range(2):
        headers = client.chat.completions.with_raw_response.create(
            model="offline-writer-1", messages=_messages(_data())
        ).headers
        assert headers["x-ratelimit-limit-requests"] == "10000"
        assert headers["x-ratelimit-remaining-requests"] == "9999"
        assert headers["x-ratelimit-remaining-tokens"] == "9999999"


def test_control_endpoints_are_neither_limited_nor_faulted(start_writer):
    server = start_writer(rpm_limit=1, max_concurrency=1, fail_first_n=5, error_5xx_rate=1.0)
    client = _client(server)
    with pytest.raises(openai.InternalServerError):
        _complete(client)

    for _ in range(3):
        assert _control(server, "GET", "/_offline/stats")[0] == 200
        assert _control(server, "GET", "/_offline/config")[0] == 200

    with pytest.raises(openai.RateLimitError):
        _complete(client)
    assert _stats(server)["requests"] == 2


def test_stats_count_the_outcomes_and_reset_clears_them_with_the_records(start_writer):
    server = start_writer()
    client = _client(server)
    _complete(client)
    _complete(client)
    server.configure(empty_rate=1.0)
    _complete(client)

    stats = _stats(server)
    assert (stats["requests"], stats["completed"], stats["errors_injected"]["empty"]) == (3, 2, 1)
    assert (stats["in_flight"], stats["max_in_flight"], stats["rejected_429"]) == (0, 1, 0)
    assert len(server.requests) == 3

    status, body = _control(server, "POST", "/_offline/reset")

    assert status == 200 and body["cleared_requests"] == 3
    stats = _stats(server)
    assert (stats["requests"], stats["completed"], stats["errors_injected"]["empty"]) == (0, 0, 0)
    assert server.requests == []


def test_the_openai_client_keeps_one_connection_alive_across_requests(start_writer):
    server = start_writer()
    client = _client(server)

    for _ in range(5):
        _complete(client)

    assert server.stats()["connections"]["opened"] == 1


def test_recording_keeps_only_the_last_record_limit_requests_or_none(start_writer):
    capped = start_writer(record_limit=3)
    client = _client(capped)
    for language in ("en", "de", "fr", "es", "it"):
        client.chat.completions.create(
            model="offline-writer-1", messages=_messages(_data(language=language))
        )
    languages = [json.loads(r["body"]["messages"][1]["content"].split("<data>")[1].split(
        "</data>")[0])["language"] for r in capped.requests]  # fmt: skip
    assert languages == ["fr", "es", "it"]

    unrecorded = start_writer(record=False)
    _complete(_client(unrecorded))
    assert unrecorded.requests == []
    assert _control(unrecorded, "GET", "/_offline/requests")[1]["data"] == []


STYLE = "You write product copy for Luma. " + "Keep it warm, plain and true. " * 30


def _cached(server: OfflineWriterServer, sku: str = "MH01", system: str = STYLE) -> Any:
    """The usage of a request with a long shared system message."""
    messages = _messages(_data(product={**_data()["product"], "sku": sku, "name": f"N {sku}"}))
    messages[0]["content"] = system
    return (
        _client(server).chat.completions.create(model="offline-writer-1", messages=messages).usage
    )


def test_a_repeated_prompt_reports_cached_tokens_for_its_prefix(start_writer):
    server = start_writer()

    first, again = _cached(server), _cached(server)

    assert first.prompt_tokens_details.cached_tokens == 0
    cached = again.prompt_tokens_details.cached_tokens
    assert 0 < cached <= again.prompt_tokens and cached % 64 == 0
    assert again.prompt_tokens - cached < 64 + 2  # all but the last, partial block


def test_another_product_under_the_same_system_message_reports_the_shared_blocks(start_writer):
    server = start_writer()
    _cached(server, sku="A")

    other = _cached(server, sku="B").prompt_tokens_details.cached_tokens
    repeat = _cached(server, sku="B").prompt_tokens_details.cached_tokens

    assert len(STYLE) // 4 - 64 <= other < repeat
    assert other % 64 == 0
    fresh = _cached(server, sku="C", system="Another style. " * 60)
    assert fresh.prompt_tokens_details.cached_tokens == 0


def test_the_prefix_cache_block_size_is_a_setting(start_writer):
    coarse, fine = start_writer(), start_writer(prefix_cache_block_tokens=16)
    for server in (coarse, fine):
        _cached(server)

    by_64 = _cached(coarse).prompt_tokens_details.cached_tokens
    by_16 = _cached(fine).prompt_tokens_details.cached_tokens

    assert by_64 % 64 == 0 and by_16 % 16 == 0
    assert by_64 < by_16 <= by_64 + 48  # finer blocks cover more of the last, partial one


def test_cached_tokens_never_exceed_the_prompt_tokens(start_writer):
    # One-token blocks: every whole block of the prompt is cached, never more than
    # prompt_tokens counts (the last block is partial when the length is not a multiple
    # of four characters).
    server = start_writer(prefix_cache_block_tokens=1)
    _cached(server)

    again = _cached(server)

    assert again.prompt_tokens - 1 <= again.prompt_tokens_details.cached_tokens
    assert again.prompt_tokens_details.cached_tokens <= again.prompt_tokens


def test_the_prefix_cache_can_be_turned_off_and_reset_clears_it(start_writer):
    off = start_writer(prefix_cache=False)
    _cached(off)
    assert _cached(off).prompt_tokens_details.cached_tokens == 0

    server = start_writer()
    _cached(server)
    _control(server, "POST", "/_offline/reset")
    assert _cached(server).prompt_tokens_details.cached_tokens == 0
    assert _cached(server).prompt_tokens_details.cached_tokens > 0


def test_the_prefix_cache_forgets_the_least_recently_used_blocks(start_writer, monkeypatch):
    # Each prompt is six whole blocks of 64 tokens: B's six push out A's oldest two,
    # and A's lookup stops at its first block.
    monkeypatch.setattr(server_module, "PREFIX_CACHE_ENTRIES", 10)
    server = start_writer()
    _cached(server, sku="A")
    _cached(server, sku="B", system="Another style. " * 60)

    assert _cached(server, sku="A").prompt_tokens_details.cached_tokens == 0
    assert _cached(server, sku="A").prompt_tokens_details.cached_tokens > 0
