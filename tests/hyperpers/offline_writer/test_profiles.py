"""Provider profiles (profiles.py): the shapes of hosted models' answers."""

from __future__ import annotations

import json
import re

import pytest

from hyperpers.offline_writer import (
    OfflineWriterServer,
    SettingError,
)
from tests.hyperpers.offline_writer.conftest import (
    NAME,
    SCHEMA,
    _ask,
    _choices,
    _client,
    _control,
    _stats,
)

PROFILES = ["plain", "markdown", "json", "terse", "chatty", "truncating"]
# The rationale marks of the markdown profile: (mark, separator before the text).
MARKS = re.compile(
    r"\n\n(\*\*Rationale\*\*: |\*\*Rationale:\*\* |### Rationale\n|Rationale - |Rationale — "
    r"|\*Rationale\*: |RATIONALE: )"
)


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
