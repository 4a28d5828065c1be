"""The copy the composer writes (composer.py), asked for over HTTP."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.hyperpers.offline_writer.conftest import (
    NAME,
    _data,
    _messages,
)


def _write(client: openai.OpenAI, **overrides: Any) -> tuple[str, str]:
    """(copy, rationale) for the default data with overrides."""
    response = client.chat.completions.create(
        model="offline-writer-1", messages=_messages(_data(**overrides))
    )
    copy, rationale = response.choices[0].message.content.split("\n\nRationale: ")
    return copy, rationale


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
