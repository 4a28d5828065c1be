"""The offline writer over HTTP, through the official openai client. No database."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest

from generation.offline_writer import serve_in_thread

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
