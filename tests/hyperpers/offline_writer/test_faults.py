"""Settings and injected faults (faults.py): how the writer fails, on purpose."""

from __future__ import annotations

import json
import random
import statistics

import openai
import pytest

from hyperpers.offline_writer import (
    OfflineWriterServer,
    WriterSettings,
    draw_latency_ms,
)
from tests.hyperpers.offline_writer.conftest import (
    NAME,
    SCHEMA,
    _ask,
    _choices,
    _client,
    _complete,
    _control,
    _data,
    _messages,
    _stats,
)


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
