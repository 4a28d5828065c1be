"""The offline writer over HTTP, through the official openai client. No database.

The client never retries (max_retries=0), so each test sees what the server sent.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import threading
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest
from django.core.management import CommandError

from hyperpers import offline_writer
from hyperpers.management.commands.run_offline_writer import Command, writer_settings
from hyperpers.offline_writer import (
    OfflineWriterServer,
    SettingError,
    WriterSettings,
    draw_latency_ms,
    serve_in_thread,
)

KEY = "test-key"
NAME = "Chaz Kangeroo Hoodie"
DESCRIPTION = (
    "Ideal for cold-weather training, the Chaz Hoodie promises superior warmth. "
    "Thick material blocks out the wind as ribbed cuffs seal in body heat. "
    "Machine wash/dry."
)


@pytest.fixture
def writer():
    server, _base_url = serve_in_thread(api_key=KEY, models=["offline-writer-1", "other"])
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(writer) -> openai.OpenAI:
    return openai.OpenAI(base_url=writer.base_url, api_key=KEY, max_retries=0)


def _data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "brand": "Luma",
        "channel": "product_page",
        "language": "en",
        "max_length": 600,
        "product": {
            "sku": "MH01",
            "name": NAME,
            "category": "Men",
            "subcategory": "Hoodies",
            "description": DESCRIPTION,
            "attributes": {"color": "gray"},
        },
        "audience": {
            "kind": "segment",
            "name": "Hoodies × high value",
            "rules": {"preferred_subcategory": "Hoodies", "value_tier": "high"},
            "member_count": 120,
            "summary": {"discount_sensitivity": {"low": 0.7, "high": 0.3}},
        },
        "protected_terms": ["Chaz Hoodie", "Luma"],
        "banned_phrases": [],
    }
    data.update(overrides)
    return data


def _messages(data: dict[str, Any]) -> list[dict[str, str]]:
    block = json.dumps(data, ensure_ascii=False, indent=1)
    return [
        {"role": "system", "content": "Plain and warm.\n\nOutput format: copy, then Rationale."},
        {"role": "user", "content": f"Rewrite the product.\n\n<data>\n{block}\n</data>"},
    ]


def _write(client: openai.OpenAI, **overrides: Any) -> tuple[str, str]:
    """(copy, rationale) for the default data with overrides."""
    response = client.chat.completions.create(
        model="offline-writer-1", messages=_messages(_data(**overrides))
    )
    copy, rationale = response.choices[0].message.content.split("\n\nRationale: ")
    return copy, rationale


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


def test_the_copy_keeps_the_name_and_protected_terms_found_in_the_product(client):
    copy, _ = _write(client)
    assert NAME in copy
    assert "Chaz Hoodie" in copy


def test_a_protected_term_survives_a_tight_max_length(client):
    copy, _ = _write(client, max_length=90)
    assert NAME in copy and "Chaz Hoodie" in copy and len(copy) <= 90


def test_a_banned_phrase_is_avoided_where_the_rules_would_write_it(client):
    unbanned, _ = _write(client)
    assert "superior warmth" in unbanned

    copy, rationale = _write(client, banned_phrases=["SUPERIOR WARMTH"])

    assert "superior warmth" not in copy.lower()
    assert NAME in copy and "banned phrase" in rationale


def test_a_banned_framing_phrase_gets_another_phrasing(client):
    unbanned, _ = _write(client)
    hook = unbanned.split(". ")[0].removeprefix(NAME).strip(" :,.")

    copy, _ = _write(client, banned_phrases=[hook])

    assert hook.lower() not in copy.lower() and NAME in copy


@pytest.mark.parametrize("max_length", [40, 90, 140, 250])
def test_the_copy_fits_max_length(client, max_length):
    copy, _ = _write(client, max_length=max_length)
    assert len(copy) <= max_length and NAME in copy


def test_different_audiences_get_different_copy(client):
    high, high_why = _write(client)
    low, low_why = _write(
        client,
        audience={
            "kind": "segment",
            "name": "Hoodies × low value",
            "rules": {"value_tier": "low"},
            "summary": {"discount_sensitivity": {"high": 0.8, "low": 0.2}},
        },
    )

    assert high != low
    assert "quality angle" in high_why and "Hoodies" in high_why
    assert "value angle" in low_why and "value-for-money" in low_why


def test_a_customer_gets_copy_without_their_personal_identifiers(client):
    copy, rationale = _write(
        client,
        audience={
            "kind": "customer",
            "attributes": {"email": "c1@example.com", "name": "Ada", "value_tier": "high"},
        },
    )
    assert "c1@example.com" not in copy + rationale and "Ada" not in copy + rationale
    assert "one customer" in rationale and "quality angle" in rationale


def test_german_framing_differs_from_english_and_keeps_name_and_description(client):
    english, _ = _write(client)
    german, _ = _write(client, language="de")

    assert german != english
    assert NAME in german and "Thick material blocks out the wind" in german


def test_an_unknown_language_falls_back_to_english_framing(client):
    english, _ = _write(client)
    portuguese, rationale = _write(client, language="pt-BR")
    assert portuguese == english and "phrasebook for 'pt'" in rationale


def test_the_same_input_gives_the_same_copy(client):
    assert _write(client) == _write(client)


def test_a_shorter_course_correction_is_followed_and_acknowledged(client):
    before, _ = _write(client)
    after, rationale = _write(client, course_correction="Too long, make it shorter please.")
    assert len(after) < len(before)
    assert "Reviewer note acknowledged" in rationale and "shorter" in rationale


def test_a_request_without_a_data_block_still_gets_copy(client):
    response = client.chat.completions.create(
        model="offline-writer-1",
        messages=[{"role": "user", "content": "A big red mug. It keeps coffee hot."}],
    )
    content = response.choices[0].message.content
    assert content.startswith("A big red mug.") and "\n\nRationale: " in content


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


# --------------------------------------------------------------------------------------
# The test server: limits, rate-limit headers, faults and runtime control


@pytest.fixture
def start_writer():
    """Start writers with the given settings (no api key); stop them all afterwards."""
    servers: list[OfflineWriterServer] = []

    def start(**options: Any) -> OfflineWriterServer:
        server, _base_url = serve_in_thread(**options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _client(server: OfflineWriterServer, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, **options)


def _complete(client: openai.OpenAI) -> Any:
    return client.chat.completions.create(model="offline-writer-1", messages=_messages(_data()))


def _control(
    server: OfflineWriterServer, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """(status, JSON) of a request to a control endpoint, as another process would send it."""
    request = urllib.request.Request(
        server.base_url.removesuffix("/v1") + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _stats(server: OfflineWriterServer) -> dict[str, Any]:
    status, stats = _control(server, "GET", "/_offline/stats")
    assert status == 200
    return stats


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


def test_an_injected_5xx_is_an_internal_server_error_with_an_openai_error_body(start_writer):
    server = start_writer(error_5xx_rate=1.0, seed=3)
    client = _client(server)

    for _ in range(4):
        with pytest.raises(openai.InternalServerError) as excinfo:
            _complete(client)
        assert excinfo.value.status_code in (500, 502, 503)
        assert excinfo.value.type == "server_error" and "injected" in excinfo.value.message

    assert _stats(server)["errors_injected"]["error_5xx"] == 4


def test_an_injected_timeout_holds_the_request_past_the_client_timeout(start_writer):
    server = start_writer(timeout_rate=1.0, timeout_hold_s=10)

    with pytest.raises(openai.APITimeoutError):
        _complete(_client(server, timeout=0.2))

    assert _stats(server)["in_flight"] == 1  # still held; stopping the server frees it


def test_after_its_hold_a_timeout_answers_504_or_closes_the_connection(start_writer):
    server = start_writer(timeout_rate=1.0, timeout_hold_s=0.05)
    client = _client(server)

    with pytest.raises(openai.InternalServerError) as excinfo:
        _complete(client)
    assert excinfo.value.status_code == 504

    server.configure(timeout_action="close")
    with pytest.raises(openai.APIConnectionError) as excinfo:
        _complete(client)
    assert not isinstance(excinfo.value, openai.APITimeoutError)
    assert _stats(server)["errors_injected"]["timeout"] == 2


def test_a_malformed_body_makes_the_openai_client_raise_a_json_decode_error(start_writer):
    server = start_writer(malformed_rate=1.0)
    client = _client(server)

    # The client parses a JSON content type without checking; the ValueError escapes as is.
    with pytest.raises(json.JSONDecodeError):
        _complete(client)
    raw = client.chat.completions.with_raw_response.create(
        model="offline-writer-1", messages=_messages(_data())
    )
    assert raw.http_response.status_code == 200
    assert raw.http_response.text.startswith('{"id": "chatcmpl-offline-')
    assert _stats(server)["errors_injected"]["malformed"] == 2


def test_an_empty_answer_is_a_completion_without_choices(start_writer):
    server = start_writer(empty_rate=1.0)

    response = _complete(_client(server))

    assert response.choices == [] and response.usage.total_tokens > 0
    assert _stats(server)["errors_injected"]["empty"] == 1


def test_a_no_rationale_answer_is_the_copy_without_its_rationale_line(start_writer):
    server = start_writer(no_rationale_rate=1.0)

    content = _complete(_client(server)).choices[0].message.content

    assert NAME in content and "Rationale:" not in content
    assert _stats(server)["errors_injected"]["no_rationale"] == 1


def test_a_reset_connection_is_an_api_connection_error_and_the_client_recovers(start_writer):
    server = start_writer(reset_rate=1.0)
    client = _client(server)

    with pytest.raises(openai.APIConnectionError) as excinfo:
        _complete(client)
    assert not isinstance(excinfo.value, openai.APITimeoutError)

    server.configure(reset_rate=0.0)
    assert _complete(client).choices
    assert _stats(server)["errors_injected"]["reset"] == 1


def test_the_first_n_requests_get_503_and_the_rest_are_answered(start_writer):
    server = start_writer(fail_first_n=2)
    client = _client(server)

    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as excinfo:
            _complete(client)
        assert excinfo.value.status_code == 503
    assert _complete(client).choices

    stats = _stats(server)
    assert stats["errors_injected"]["fail_first_n"] == 2 and stats["completed"] == 1
    assert stats["fail_first_n_remaining"] == 0


def test_a_seed_repeats_the_same_faults(start_writer):
    def outcomes(server: OfflineWriterServer) -> list[str]:
        client, seen = _client(server), []
        for _ in range(12):
            try:
                _complete(client)
                seen.append("ok")
            except openai.InternalServerError as exc:
                seen.append(str(exc.status_code))
        return seen

    first = outcomes(start_writer(error_5xx_rate=0.5, seed=7))
    second = outcomes(start_writer(error_5xx_rate=0.5, seed=7))

    assert first == second and "ok" in first and set(first) - {"ok"}


def test_latency_is_fixed_jittered_uniformly_or_lognormal_around_the_median():
    rng = random.Random(1)
    fixed = WriterSettings(latency_ms=100)
    uniform = WriterSettings(latency_ms=100, latency_jitter_ms=20)
    lognormal = WriterSettings(latency_ms=100, latency_distribution="lognormal")

    assert {draw_latency_ms(fixed, rng) for _ in range(50)} == {100}
    draws = [draw_latency_ms(uniform, rng) for _ in range(500)]
    assert 80 <= min(draws) < 85 and 115 < max(draws) <= 120
    draws = [draw_latency_ms(lognormal, rng) for _ in range(2001)]
    assert 90 < statistics.median(draws) < 110 and max(draws) > 200


def test_posting_config_changes_the_next_request(start_writer):
    server = start_writer()
    client = _client(server)

    status, config = _control(server, "POST", "/_offline/config", {"error_5xx_rate": 1.0})
    assert status == 200 and config["error_5xx_rate"] == 1.0
    with pytest.raises(openai.InternalServerError):
        _complete(client)

    _control(server, "POST", "/_offline/config", {"error_5xx_rate": 0, "latency_ms": 5})
    assert _complete(client).choices
    status, config = _control(server, "GET", "/_offline/config")
    assert (config["error_5xx_rate"], config["latency_ms"], config["max_concurrency"]) == (
        0,
        5,
        None,
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"latency": 5}, "latency"),
        ({"error_5xx_rate": 1.5}, "error_5xx_rate"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"timeout_action": "hang"}, "timeout_action"),
        ({"latency_ms": 5, "reset_rate": 0.6, "empty_rate": 0.6}, "reset_rate"),
    ],
)
def test_an_unknown_or_bad_setting_gets_400_naming_it_and_changes_nothing(
    start_writer, change, named
):
    server = start_writer()

    status, body = _control(server, "POST", "/_offline/config", change)

    assert status == 400
    assert body["error"]["param"] == named and named in body["error"]["message"]
    assert server.config() == WriterSettings().as_dict()


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


def test_the_command_flags_become_writer_settings():
    parser = Command().create_parser("manage.py", "run_offline_writer")
    flags = (
        "--latency-ms 250 --latency-jitter-ms 50 --max-concurrency 8 --rpm 600 --tpm 90000 "
        "--error-5xx-rate 0.1 --timeout-rate 0.05 --timeout-hold-s 2 --malformed-rate 0.01 "
        "--empty-rate 0.01 --no-rationale-rate 0.02 --reset-rate 0.01 --fail-first-n 3 "
        "--seed 7 --no-record"
    )
    options = vars(parser.parse_args(flags.split()))

    server = OfflineWriterServer(**writer_settings(options))
    server.server_close()

    assert server.settings == WriterSettings(
        latency_ms=250, latency_jitter_ms=50, max_concurrency=8, rpm_limit=600, tpm_limit=90_000,
        error_5xx_rate=0.1, timeout_rate=0.05, timeout_hold_s=2, malformed_rate=0.01,
        empty_rate=0.01, no_rationale_rate=0.02, reset_rate=0.01, fail_first_n=3, seed=7,
        record=False,
    )  # fmt: skip
    assert writer_settings(vars(parser.parse_args([]))) == {}


# --------------------------------------------------------------------------------------
# Provider profiles: the shapes of hosted models' answers


PROFILES = ["plain", "markdown", "json", "terse", "chatty", "truncating"]
SCHEMA = {"type": "json_schema", "json_schema": {"name": "c", "schema": {"type": "object"}}}
# The rationale marks of the markdown profile: (mark, separator before the text).
MARKS = re.compile(
    r"\n\n(\*\*Rationale\*\*: |\*\*Rationale:\*\* |### Rationale\n|Rationale - |Rationale — "
    r"|\*Rationale\*: |RATIONALE: )"
)


def _ask(server: OfflineWriterServer, sku: str = "MH01", **extra: Any) -> Any:
    product = {**_data()["product"], "sku": sku}
    return _client(server).chat.completions.create(
        model="offline-writer-1", messages=_messages(_data(product=product)), **extra
    )


def _choices(server: OfflineWriterServer, count: int = 24, **extra: Any) -> list[Any]:
    """The first choice of answers to `count` requests that differ only in the SKU."""
    return [_ask(server, sku=f"S{i}", **extra).choices[0] for i in range(count)]


def _plain(start_writer, count: int = 24) -> list[tuple[str, str]]:
    """(copy, rationale) of the same requests from a plain writer, for comparison."""
    contents = [c.message.content for c in _choices(start_writer(), count)]
    return [tuple(c.split("\n\nRationale: ")) for c in contents]


def test_the_plain_profile_is_the_default_and_ignores_response_format(start_writer):
    server = start_writer()
    assert server.config()["profile"] == "plain"

    with_format = _ask(server, response_format=SCHEMA).choices[0].message.content
    assert with_format == _ask(server).choices[0].message.content
    copy, rationale = with_format.split("\n\nRationale: ")
    assert NAME in copy and "fixed rules" in rationale
    assert server.stats()["shapes"] == {"plain": 2}


def test_the_markdown_profile_bolds_the_name_adds_headings_and_marks_the_rationale(start_writer):
    plain = _plain(start_writer)
    server = start_writer(profile="markdown")
    choices = _choices(server)

    headings, marks = set(), set()
    for choice, (plain_copy, plain_rationale) in zip(choices, plain, strict=True):
        content = choice.message.content
        assert choice.finish_reason == "stop" and "\n\nRationale: " not in content
        copy, mark, rationale = MARKS.split(content)
        marks.add(mark)
        assert rationale == plain_rationale
        if copy.startswith("#"):
            heading, copy = copy.split("\n\n", 1)
            headings.add(heading)
        assert f"**{NAME}**" in copy and copy.replace("**", "") == plain_copy
    assert headings == {f"# {NAME}", f"## {NAME}"}
    assert len(marks) >= 4
    assert server.stats()["shapes"] == {"bold_name": 24}


def test_the_markdown_profile_marks_the_rationale_of_copy_without_a_product_name(start_writer):
    server = start_writer(profile="markdown")
    messages = [{"role": "user", "content": "A big red mug. It keeps coffee hot."}]

    content = (
        _client(server)
        .chat.completions.create(model="offline-writer-1", messages=messages)
        .choices[0]
        .message.content
    )

    copy, _mark, rationale = MARKS.split(content)
    assert copy.startswith("A big red mug.") and "**" not in copy and "fixed rules" in rationale
    assert server.stats()["shapes"] == {"marked": 1}


def test_the_json_profile_answers_json_to_response_format_sometimes_in_a_code_fence(
    start_writer,
):
    plain = _plain(start_writer)
    server = start_writer(profile="json")
    choices = _choices(server, response_format=SCHEMA)

    fenced = 0
    for choice, (plain_copy, plain_rationale) in zip(choices, plain, strict=True):
        content = choice.message.content
        if content.startswith("```json\n"):
            assert content.endswith("\n```")
            content, fenced = content.removeprefix("```json\n").removesuffix("\n```"), fenced + 1
        assert json.loads(content) == {"copy": plain_copy, "rationale": plain_rationale}
    assert 0 < fenced < len(choices)
    assert server.stats()["shapes"] == {"json": len(choices) - fenced, "json_fenced": fenced}

    answer = _ask(server, response_format={"type": "json_object"}).choices[0].message.content
    assert json.loads(answer.removeprefix("```json\n").removesuffix("\n```"))["copy"]


def test_the_json_profile_without_response_format_answers_like_plain(start_writer):
    plain = _ask(start_writer()).choices[0].message.content
    server = start_writer(profile="json")

    assert _ask(server).choices[0].message.content == plain
    text_format = _ask(server, response_format={"type": "text"}).choices[0].message.content
    assert text_format == plain
    assert server.stats()["shapes"] == {"plain": 2}


def test_the_terse_profile_leaves_out_some_rationales_and_shortens_the_rest(start_writer):
    plain = _plain(start_writer)
    server = start_writer(profile="terse")
    choices = _choices(server)

    missing = 0
    for choice, (plain_copy, plain_rationale) in zip(choices, plain, strict=True):
        content = choice.message.content
        if content == plain_copy:
            missing += 1
            continue
        copy, rationale = content.split("\n\nRationale: ")
        assert copy == plain_copy and "\n" not in rationale
        assert len(rationale) < len(plain_rationale) and rationale.endswith(".")
    assert 4 <= missing <= 12  # about one in three of 24
    assert server.stats()["shapes"] == {"no_rationale": missing, "short_rationale": 24 - missing}


def test_the_chatty_profile_opens_with_a_preamble_and_sometimes_quotes_the_copy(start_writer):
    plain = _plain(start_writer)
    server = start_writer(profile="chatty")
    choices = _choices(server)

    preambles, quoted = set(), 0
    for choice, (plain_copy, plain_rationale) in zip(choices, plain, strict=True):
        preamble, copy, rationale = choice.message.content.split("\n\n")
        preambles.add(preamble)
        assert preamble.endswith(":") and preamble.startswith(("Here", "Sure", "Certainly", "Of"))
        if copy.startswith('"'):
            copy, quoted = copy.removeprefix('"').removesuffix('"'), quoted + 1
        assert copy == plain_copy and rationale == f"Rationale: {plain_rationale}"
    assert len(preambles) >= 3 and 0 < quoted < len(choices)
    assert server.stats()["shapes"] == {"preamble": 24}


def test_the_truncating_profile_cuts_some_answers_off_mid_copy_with_finish_reason_length(
    start_writer,
):
    plain = _plain(start_writer)
    server = start_writer(profile="truncating")
    choices = _choices(server)

    cut = [c for c in choices if c.finish_reason == "length"]
    for choice, (plain_copy, plain_rationale) in zip(choices, plain, strict=True):
        content = choice.message.content
        if choice.finish_reason == "length":
            assert plain_copy.startswith(content) and len(content) < len(plain_copy)
            assert "Rationale" not in content
        else:
            assert choice.finish_reason == "stop"
            assert content == f"{plain_copy}\n\nRationale: {plain_rationale}"
    assert 2 <= len(cut) <= 10  # about one in four of 24
    assert server.stats()["shapes"] == {"truncated": len(cut), "plain": 24 - len(cut)}


def test_max_tokens_still_cuts_the_answer_in_any_profile(start_writer):
    for profile in PROFILES:
        server = start_writer(profile=profile)
        choice = _ask(server, max_tokens=10, response_format=SCHEMA).choices[0]
        assert (choice.finish_reason, len(choice.message.content)) == ("length", 40), profile
        assert server.stats()["shapes"] == {"truncated": 1}, profile


@pytest.mark.parametrize("profile", PROFILES)
def test_a_request_gets_the_same_shape_every_time_whatever_the_seed(start_writer, profile):
    first = start_writer(profile=profile, seed=1)
    second = start_writer(profile=profile, seed=2)

    answers = [(c.message.content, c.finish_reason) for c in _choices(first, 12)]

    assert [(c.message.content, c.finish_reason) for c in _choices(first, 12)] == answers
    assert [(c.message.content, c.finish_reason) for c in _choices(second, 12)] == answers


@pytest.mark.parametrize("profile", ["plain", "markdown", "terse", "chatty", "truncating"])
def test_profiles_without_structured_output_ignore_response_format(start_writer, profile):
    server = start_writer(profile=profile)

    without = [c.message.content for c in _choices(server, 12)]

    for response_format in (SCHEMA, {"type": "json_object"}):
        assert [
            c.message.content for c in _choices(server, 12, response_format=response_format)
        ] == (without)
    assert not any(c.lstrip().startswith(("{", "```")) for c in without)


def test_the_profile_can_be_switched_while_serving(start_writer):
    server = start_writer()
    plain = _ask(server, response_format=SCHEMA).choices[0].message.content

    status, config = _control(server, "POST", "/_offline/config", {"profile": "json"})

    assert status == 200 and config["profile"] == "json"
    answer = _ask(server, response_format=SCHEMA).choices[0].message.content
    assert answer != plain and json.loads(answer.strip("`").removeprefix("json"))["copy"]


def test_an_unknown_profile_is_refused_naming_the_setting(start_writer):
    with pytest.raises(SettingError) as caught:
        OfflineWriterServer(profile="poetic")
    assert caught.value.name == "profile"

    server = start_writer()
    with pytest.raises(SettingError) as caught:
        server.configure(profile="Markdown")
    assert caught.value.name == "profile"
    status, body = _control(server, "POST", "/_offline/config", {"profile": "poetic"})
    assert status == 400 and body["error"]["param"] == "profile"
    assert "plain, markdown, json, terse, chatty, truncating" in body["error"]["message"]
    assert server.config()["profile"] == "plain"


# --------------------------------------------------------------------------------------
# The faults of hosted models: random 429s, refusals, content filters, JSON off the schema


def test_a_random_429_comes_at_once_with_retry_after_and_the_budget_left(start_writer):
    server = start_writer(
        rate_limit_rate=1.0, retry_after_s=2.5, rpm_limit=100, tpm_limit=100_000, latency_ms=500
    )

    with pytest.raises(openai.RateLimitError) as caught:
        _ask(server)

    exc = caught.value
    assert (exc.status_code, exc.code, exc.type) == (429, "rate_limit_exceeded", "requests")
    assert "injected" in exc.message
    headers = exc.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("3", "2500")
    assert int(headers["openai-processing-ms"]) < 500  # refused before the latency
    assert headers["x-ratelimit-remaining-requests"] == "100"
    assert headers["x-ratelimit-remaining-tokens"] == "100000"
    stats = server.stats()
    assert stats["rejected_by"] == {"concurrency": 0, "requests": 0, "tokens": 0, "random": 1}
    assert stats["rejected_429"] == 1 == stats["errors_injected"]["rate_limit"]
    assert (stats["in_flight"], stats["max_in_flight"], stats["window"]["requests"]) == (0, 0, 0)
    assert stats["completed"] == 0 and stats["shapes"] == {}


def test_random_429s_are_drawn_like_the_other_faults(start_writer):
    server = start_writer(rate_limit_rate=0.5, seed=5)
    outcomes = []
    for i in range(20):
        try:
            _ask(server, sku=f"S{i}")
            outcomes.append("ok")
        except openai.RateLimitError:
            outcomes.append("429")

    stats = server.stats()
    assert 0 < outcomes.count("429") < 20
    assert stats["errors_injected"]["rate_limit"] == outcomes.count("429") == stats["rejected_429"]
    assert stats["completed"] == outcomes.count("ok")


def test_a_refusal_has_no_content_and_says_why_in_message_refusal(start_writer):
    server = start_writer(refusal_rate=1.0, profile="json")

    response = _ask(server, response_format=SCHEMA)

    choice = response.choices[0]
    assert choice.message.content is None and "can't help" in choice.message.refusal
    assert choice.finish_reason == "stop"
    assert response.usage.completion_tokens > 0
    stats = server.stats()
    assert stats["errors_injected"]["refusal"] == 1 and stats["completed"] == 0
    assert stats["shapes"] == {}


def test_a_content_filter_answer_has_no_content_and_finish_reason_content_filter(start_writer):
    server = start_writer(content_filter_rate=1.0)

    choice = _ask(server).choices[0]

    assert (choice.message.content, choice.finish_reason) == (None, "content_filter")
    assert choice.message.refusal is None
    assert server.stats()["errors_injected"]["content_filter"] == 1


def test_bad_json_is_valid_json_off_the_schema_for_a_json_answer(start_writer):
    server = start_writer(profile="json", bad_json_rate=1.0)

    answers = [json.loads(c.message.content) for c in _choices(server, 12, response_format=SCHEMA)]

    assert {tuple(a) for a in answers} == {("text",), ("copy",)}
    assert all(isinstance(a["text"], str) for a in answers if "text" in a)
    assert all(isinstance(a["copy"], int) for a in answers if "copy" in a)
    stats = server.stats()
    assert stats["errors_injected"]["bad_json"] == 12 and stats["shapes"] == {"bad_json": 12}


@pytest.mark.parametrize(
    ("profile", "extra"), [("json", {}), ("markdown", {"response_format": SCHEMA})]
)
def test_bad_json_leaves_an_answer_that_is_not_json_alone(start_writer, profile, extra):
    clean = _ask(start_writer(profile=profile), **extra).choices[0].message.content
    server = start_writer(profile=profile, bad_json_rate=1.0)

    assert _ask(server, **extra).choices[0].message.content == clean
    stats = server.stats()
    assert stats["errors_injected"]["bad_json"] == 0 and stats["completed"] == 1


def test_the_new_fault_rates_count_towards_the_limit_of_one(start_writer):
    server = start_writer(refusal_rate=0.5)

    status, body = _control(
        server, "POST", "/_offline/config", {"rate_limit_rate": 0.3, "bad_json_rate": 0.3}
    )

    assert status == 400 and body["error"]["param"] == "rate_limit_rate"
    assert server.config()["rate_limit_rate"] == 0


# --------------------------------------------------------------------------------------
# The prefix cache

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
    monkeypatch.setattr(offline_writer, "PREFIX_CACHE_ENTRIES", 10)
    server = start_writer()
    _cached(server, sku="A")
    _cached(server, sku="B", system="Another style. " * 60)

    assert _cached(server, sku="A").prompt_tokens_details.cached_tokens == 0
    assert _cached(server, sku="A").prompt_tokens_details.cached_tokens > 0


# --------------------------------------------------------------------------------------
# The shapes counter and the command


def test_the_shapes_counter_counts_completed_answers_by_shape_and_reset_clears_it(start_writer):
    server = start_writer(profile="terse")
    choices = _choices(server, 9)
    server.configure(profile="json")
    _ask(server, response_format=SCHEMA)
    server.configure(empty_rate=1.0)
    _ask(server)  # a spoiled answer is an injected error, not a shape

    missing = sum("Rationale" not in c.message.content for c in choices)
    shapes = _stats(server)["shapes"]
    assert shapes == {
        "no_rationale": missing,
        "short_rationale": 9 - missing,
        next(iter(set(shapes) - {"no_rationale", "short_rationale"})): 1,
    }
    assert set(shapes) - {"no_rationale", "short_rationale"} <= {"json", "json_fenced"}
    assert sum(shapes.values()) == _stats(server)["completed"] == 10

    _control(server, "POST", "/_offline/reset")
    assert _stats(server)["shapes"] == {}


def test_the_command_takes_a_profile_and_the_prefix_cache_settings():
    parser = Command().create_parser("manage.py", "run_offline_writer")
    flags = (
        "--profile chatty --no-prefix-cache --prefix-cache-block-tokens 128 "
        "--rate-limit-rate 0.1 --refusal-rate 0.02 --content-filter-rate 0.01 "
        "--bad-json-rate 0.05"
    )

    chosen = writer_settings(vars(parser.parse_args(flags.split())))

    assert chosen == {
        "profile": "chatty", "prefix_cache": False, "prefix_cache_block_tokens": 128,
        "rate_limit_rate": 0.1, "refusal_rate": 0.02, "content_filter_rate": 0.01,
        "bad_json_rate": 0.05,
    }  # fmt: skip
    server = OfflineWriterServer(**chosen)
    server.server_close()
    assert server.settings.profile == "chatty" and server.settings.prefix_cache is False
    with pytest.raises(CommandError, match="invalid choice: 'poetic'"):
        parser.parse_args(["--profile", "poetic"])
