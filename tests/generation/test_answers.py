"""Model answers taken apart: JSON, marker text, and the copy normalised per channel."""

from __future__ import annotations

import pytest

from generation.answers import (
    COPY_SCHEMA,
    AnswerError,
    Normalised,
    normalise,
    parse_json,
    response_format,
    salvage_json_copy,
    split_marked,
)

COPY = "The Chaz Kangeroo Hoodie keeps you warm."
WHY = "Anna runs at dawn, so warmth leads."

# ------------------------------------------------------------------- response format


def test_response_format_asks_for_the_strict_copy_schema():
    assert response_format() == {
        "type": "json_schema",
        "json_schema": {"name": "marketing_copy", "strict": True, "schema": COPY_SCHEMA},
    }
    assert COPY_SCHEMA["type"] == "object"
    assert COPY_SCHEMA["required"] == ["copy", "rationale"]
    assert COPY_SCHEMA["additionalProperties"] is False
    assert {p["type"] for p in COPY_SCHEMA["properties"].values()} == {"string"}


def test_response_format_hands_out_a_copy_callers_cannot_corrupt():
    response_format()["json_schema"]["schema"]["required"].append("tone")
    assert COPY_SCHEMA["required"] == ["copy", "rationale"]


# ---------------------------------------------------------------------- split_marked


def test_a_json_answer_cut_off_at_the_length_limit_keeps_the_copy_it_had():
    assert salvage_json_copy('{"copy": "Soft \\"cotton\\" caf\\u00e9 for wa') == (
        'Soft "cotton" café for wa'
    )
    assert salvage_json_copy('```json\n{"copy": "Caf\\u00') == "Caf"
    assert salvage_json_copy("Not JSON at all") == ""


@pytest.mark.parametrize(
    ("content", "copy", "rationale"),
    [
        pytest.param(f"{COPY}\n\nRationale: {WHY}", COPY, WHY, id="plain-label"),
        pytest.param(f"{COPY}\n\n**Rationale**: {WHY}", COPY, WHY, id="colon-outside-bold"),
        pytest.param(f"{COPY}\n\n**Rationale:** {WHY}", COPY, WHY, id="colon-inside-bold"),
        pytest.param(f"{COPY}\n\n### Rationale\n{WHY}", COPY, WHY, id="heading-text-below"),
        pytest.param(f"{COPY}\n\n## Rationale:\n\n{WHY}", COPY, WHY, id="heading-with-colon"),
        pytest.param(f"{COPY}\n\n## Rationale: {WHY}", COPY, WHY, id="heading-text-same-line"),
        pytest.param(f"{COPY}\n\n### Rationale ###\n{WHY}", COPY, WHY, id="closed-heading"),
        pytest.param(f"{COPY}\nRationale - {WHY}", COPY, WHY, id="hyphen"),
        pytest.param(f"{COPY}\nRationale — {WHY}", COPY, WHY, id="em-dash"),
        pytest.param(f"{COPY}\nRationale—{WHY}", COPY, WHY, id="em-dash-unspaced"),
        pytest.param(f"{COPY}\nRationale – {WHY}", COPY, WHY, id="en-dash"),
        pytest.param(f"{COPY}\n\n*Rationale*: {WHY}", COPY, WHY, id="italic-label"),
        pytest.param(f"{COPY}\n\n__Rationale__\n{WHY}", COPY, WHY, id="underscore-bold"),
        pytest.param(f"{COPY}\n\nRATIONALE: {WHY}", COPY, WHY, id="upper-case"),
        pytest.param(f"{COPY}\n\nrationale: {WHY}", COPY, WHY, id="lower-case"),
        pytest.param(f"{COPY}\nrationale : {WHY}", COPY, WHY, id="space-before-colon"),
        pytest.param(f"{COPY}\n\nRationale\n{WHY}", COPY, WHY, id="bare-label-alone"),
        pytest.param(f"{COPY}\n\n> **Rationale:** {WHY}", COPY, WHY, id="blockquote"),
        pytest.param(
            f"{COPY}\n\n> **Rationale:** Anna runs at dawn,\n> so warmth leads.",
            COPY,
            "Anna runs at dawn,\nso warmth leads.",
            id="blockquote-over-lines",
        ),
        pytest.param(f"{COPY}\n\nReasoning: {WHY}", COPY, WHY, id="reasoning"),
        pytest.param(f"{COPY}\n\n**Reasoning** {WHY}", COPY, WHY, id="bold-without-separator"),
        pytest.param(f"{COPY}\n\n*Rationale: {WHY}*", COPY, WHY, id="whole-line-italic"),
        pytest.param(
            f"{COPY}\n\nRationale (for the reviewer): {WHY}", COPY, WHY, id="parenthetical"
        ),
        pytest.param(f"**Copy:** {COPY}\n\n**Rationale:** {WHY}", COPY, WHY, id="bold-copy-label"),
        pytest.param(f"Copy:\n{COPY}\nRationale: {WHY}", COPY, WHY, id="copy-label-own-line"),
        pytest.param(
            f"Marketing copy: {COPY}\nRationale: {WHY}", COPY, WHY, id="marketing-copy-label"
        ),
        pytest.param(
            f"**Product copy:**\n{COPY}\n\n**Rationale:**\n{WHY}",
            COPY,
            WHY,
            id="product-copy-label",
        ),
        pytest.param(
            f"### Copy\n{COPY}\n\n### Rationale\n{WHY}", COPY, WHY, id="copy-and-rationale-headings"
        ),
        pytest.param(
            f"Sure! Here you go.\n\n**Copy:** {COPY}\n\n**Rationale:** {WHY}",
            COPY,
            WHY,
            id="chatter-before-copy-label-dropped",
        ),
        pytest.param(f"**Rationale:** {WHY}\n\n**Copy:** {COPY}", COPY, WHY, id="rationale-first"),
        pytest.param(
            f"### Rationale\n{WHY}\n\n### Copy\n{COPY}", COPY, WHY, id="rationale-first-headings"
        ),
        pytest.param(COPY, COPY, "", id="no-rationale"),
        pytest.param(f"**Copy:** {COPY}", COPY, "", id="copy-label-no-rationale"),
        pytest.param(f"Rationale: {WHY}", "", WHY, id="rationale-only"),
        pytest.param(
            f"{COPY}\nRationale: the rationale is warmth.\nRationale, again: mornings.",
            COPY,
            "the rationale is warmth.\nRationale, again: mornings.",
            id="rationale-mentions-rationale-later",
        ),
        pytest.param(
            f"{COPY}\nRationale: first.\nRationale: second.",
            COPY,
            "first.\nRationale: second.",
            id="splits-at-first-marker",
        ),
        pytest.param(
            f"Our rationale: comfort first. {COPY}\n\nRationale: {WHY}",
            f"Our rationale: comfort first. {COPY}",
            WHY,
            id="copy-mentions-rationale-mid-sentence",
        ),
        pytest.param(
            "Rationale-driven design, soft fleece.\nRationale behind it: none.",
            "Rationale-driven design, soft fleece.\nRationale behind it: none.",
            "",
            id="word-at-line-start-is-not-a-label",
        ),
        pytest.param(f"{COPY}\r\n\r\nRationale: {WHY}\r\n", COPY, WHY, id="crlf-line-endings"),
        pytest.param(
            f"  {COPY}   \n\n  Rationale:   {WHY}   \n\n  ", COPY, WHY, id="trailing-whitespace"
        ),
        pytest.param(f"{COPY}\n\n---\n\n**Rationale:** {WHY}", COPY, WHY, id="rule-between"),
        pytest.param(
            f"First paragraph.\n\n{COPY}\n\n**Rationale:** {WHY}",
            f"First paragraph.\n\n{COPY}",
            WHY,
            id="multi-paragraph-copy",
        ),
        pytest.param(
            f"{COPY}\n\nRationale:\nFirst reason.\n\nSecond reason.",
            COPY,
            "First reason.\n\nSecond reason.",
            id="multi-paragraph-rationale",
        ),
    ],
)
def test_split_marked_reads_real_world_shapes(content, copy, rationale):
    assert split_marked(content) == (copy, rationale)


# ------------------------------------------------------------------------ parse_json


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(f'{{"copy": "{COPY}", "rationale": "{WHY}"}}', (COPY, WHY), id="plain"),
        pytest.param(
            f'```json\n{{"copy": "{COPY}", "rationale": "{WHY}"}}\n```',
            (COPY, WHY),
            id="json-fence",
        ),
        pytest.param(
            f'```\n{{"copy": "{COPY}", "rationale": "{WHY}"}}\n```', (COPY, WHY), id="bare-fence"
        ),
        pytest.param(
            f'\n\n  {{"copy": "{COPY}", "rationale": "{WHY}"}}  \n', (COPY, WHY), id="whitespace"
        ),
        pytest.param(
            f'  \n```json\n{{"copy": "{COPY}", "rationale": "{WHY}"}}\n```\n ',
            (COPY, WHY),
            id="fence-in-whitespace",
        ),
        pytest.param(
            f'Here is the JSON:\n\n```json\n{{"copy": "{COPY}", "rationale": "{WHY}"}}\n```',
            (COPY, WHY),
            id="preamble-then-fence",
        ),
        pytest.param(f'{{"copy": "{COPY}"}}', (COPY, ""), id="rationale-missing"),
        pytest.param(
            f'{{"copy": "{COPY}", "rationale": "{WHY}", "tone": "warm"}}',
            (COPY, WHY),
            id="extra-keys-ignored",
        ),
        pytest.param(
            '{"copy": "Grüße, Zoë — 50 % Rabatt 🎉", "rationale": "\\u00e9t\\u00e9"}',
            ("Grüße, Zoë — 50 % Rabatt 🎉", "été"),
            id="unicode",
        ),
        pytest.param(
            f'{{"copy": "  {COPY}\\n", "rationale": " {WHY} "}}', (COPY, WHY), id="stripped"
        ),
    ],
)
def test_parse_json_reads_the_copy_and_rationale(content, expected):
    assert parse_json(content) == expected


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(COPY, id="plain-text"),
        pytest.param(f"{COPY}\n\n**Rationale:** {WHY}", id="marker-text"),
        pytest.param(f'"{COPY}"', id="copy-in-quotes-is-a-json-string"),
        pytest.param("2024", id="a-number"),
        pytest.param("{first_name}, the hoodie is back.", id="braces-that-are-not-json"),
        pytest.param(f"```\n{COPY}\n```", id="fence-of-text"),
        pytest.param('```python\n{"copy": "A"}\n```', id="fence-of-another-language"),
    ],
)
def test_parse_json_returns_none_when_the_answer_is_not_json(content):
    assert parse_json(content) is None


@pytest.mark.parametrize(
    ("content", "message", "reason"),
    [
        pytest.param(
            '["copy", "rationale"]', "The JSON answer is a list, not an object", "schema", id="list"
        ),
        pytest.param(
            f'{{"rationale": "{WHY}"}}',
            "The JSON answer has no 'copy' string",
            "schema",
            id="no-copy",
        ),
        pytest.param(
            '{"copy": 3, "rationale": "x"}',
            "'copy' is a number, not a string",
            "schema",
            id="copy-number",
        ),
        pytest.param(
            '{"copy": "A", "rationale": 7}',
            "'rationale' is a number, not a string",
            "schema",
            id="why-number",
        ),
        pytest.param(
            '{"copy": "A", "rationale": null}',
            "'rationale' is null, not a string",
            "schema",
            id="why-null",
        ),
        pytest.param(
            '{"copy": {"text": "A"}}',
            "'copy' is an object, not a string",
            "schema",
            id="copy-object",
        ),
        pytest.param('{"copy": "   "}', "'copy' is empty", "empty_copy", id="copy-empty"),
        pytest.param(
            '{"copy": "The hoodie',
            "looks like JSON but does not decode",
            "malformed",
            id="truncated",
        ),
        pytest.param(
            "```json\nThe hoodie\n```",
            "looks like JSON but does not decode",
            "malformed",
            id="json-fence",
        ),
    ],
)
def test_parse_json_names_what_is_wrong_with_json_that_misses_the_schema(content, message, reason):
    with pytest.raises(AnswerError) as caught:
        parse_json(content)
    assert message in str(caught.value)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


# ------------------------------------------------------------------------- normalise

UNCHANGED = [
    pytest.param("Size 5 * 3 = 15", id="lone-asterisk"),
    pytest.param("2 * 3 * 4 = 24", id="spaced-asterisks"),
    pytest.param("50% off_now", id="intraword-underscore"),
    pytest.param("snake_case_name and __init__ly", id="underscores"),
    pytest.param("C# & F# fans <3 it, a < b > c", id="hash-ampersand-angles"),
    pytest.param("#1 seller. Save 20%! Use code SAVE20.", id="hash-without-space"),
    pytest.param("Visit https://example.com/a_b_c today", id="bare-url"),
    pytest.param("Don't miss out — it's 3-in-1!", id="dashes-apostrophes"),
    pytest.param('"Soft," she said. "Warm," he said.', id="two-quotations"),
    pytest.param("Line one\n  Line two  \n\n\n\nLast paragraph.", id="odd-whitespace-kept"),
    pytest.param("Line one\r\nLine two\r\n\r\nPara", id="crlf-kept"),
    pytest.param("Three reasons to love it: warmth, fleece, pockets.", id="colon-sentence"),
    pytest.param("~50 pieces left, ~ever~ so soft", id="single-tildes"),
]


@pytest.mark.parametrize("fmt", ["plain", "markdown"])
@pytest.mark.parametrize("text", UNCHANGED)
def test_normalise_leaves_text_without_markdown_byte_for_byte(text, fmt):
    assert normalise(f"  \n{text}\n\n ", fmt=fmt) == Normalised(text, [], [])


@pytest.mark.parametrize(
    ("text", "expected", "note"),
    [
        pytest.param(
            "Meet the **Chaz Kangeroo Hoodie**.",
            "Meet the Chaz Kangeroo Hoodie.",
            "bold around 'Chaz Kangeroo Hoodie'",
            id="bold",
        ),
        pytest.param("So __warm__.", "So warm.", "bold around 'warm'", id="underscore-bold"),
        pytest.param("It's *soft*.", "It's soft.", "italic around 'soft'", id="italic"),
        pytest.param("It's *the* 3-in-1", "It's the 3-in-1", "italic around 'the'", id="em-parsed"),
        pytest.param("It's _soft_.", "It's soft.", "italic around 'soft'", id="underscore-italic"),
        pytest.param(
            "Was ~~$80~~ $60.", "Was $80 $60.", "strikethrough around '$80'", id="strikethrough"
        ),
        pytest.param(
            "## Chaz Kangeroo Hoodie\nSoft fleece.",
            "Chaz Kangeroo Hoodie\nSoft fleece.",
            "heading '## Chaz Kangeroo Hoodie' (kept as text)",
            id="atx-heading",
        ),
        pytest.param(
            "Chaz Hoodie\n===\n\nSoft.",
            "Chaz Hoodie\n\nSoft.",
            "heading 'Chaz Hoodie' (kept as text)",
            id="setext-heading",
        ),
        pytest.param(
            "Use `SAVE10` today.", "Use SAVE10 today.", "inline code 'SAVE10'", id="inline-code"
        ),
        pytest.param(
            "Intro.\n\n```\nSoft *fleece*\n```\n\nEnd.",
            "Intro.\n\nSoft *fleece*\n\nEnd.",
            "code fence",
            id="fence-mid-copy-kept-literally",
        ),
        pytest.param(
            "Shop [the hoodie](https://example.com/chaz) now.",
            "Shop the hoodie now.",
            "link 'the hoodie' (https://example.com/chaz)",
            id="link",
        ),
        pytest.param(
            "Shop <https://example.com> now.",
            "Shop https://example.com now.",
            "angle brackets around 'https://example.com'",
            id="autolink",
        ),
        pytest.param(
            "Three reasons:\n- Warm\n- Soft\n\nBuy now.",
            "Three reasons:\nWarm\nSoft\n\nBuy now.",
            "bullet list markers",
            id="bullets",
        ),
        pytest.param(
            "* Warm\n  * Soft, nested",
            "Warm\nSoft, nested",
            "bullet list markers",
            id="nested-bullets",
        ),
        pytest.param("1. Warm\n2) Soft", "Warm\nSoft", "numbered list markers", id="numbered"),
        pytest.param("Warm.\n\n---\n\nSoft.", "Warm.\n\nSoft.", "horizontal rule", id="rule"),
        pytest.param("Warm.\n***\nSoft.", "Warm.\n\nSoft.", "horizontal rule", id="rule-tight"),
        pytest.param("> Warm and\n> soft.", "Warm and\nsoft.", "blockquote", id="blockquote"),
        pytest.param("Tom &amp; Jerry", "Tom & Jerry", "HTML entity '&amp;'", id="entity-decoded"),
        pytest.param(
            "Only \\*today\\* at 5 \\_sharp\\_",
            "Only *today* at 5 _sharp_",
            "backslash escapes",
            id="escapes-become-literal",
        ),
    ],
)
def test_normalise_plain_removes_markdown_and_says_what(text, expected, note):
    result = normalise(text, fmt="plain")
    assert result.text == expected
    assert note in result.removed
    assert result.problems == []


@pytest.mark.parametrize(
    ("text", "expected", "removed"),
    [
        pytest.param(
            "## Chaz Hoodie\n\nSo **warm** and *soft*.",
            "Chaz Hoodie\n\nSo **warm** and *soft*.",
            ["heading '## Chaz Hoodie' (kept as text)"],
            id="heading-out-emphasis-kept",
        ),
        pytest.param(
            "## 1. Pick a size\nThen relax.",
            "1\\. Pick a size\nThen relax.",
            ["heading '## 1. Pick a size' (kept as text)"],
            id="heading-text-that-looks-like-a-list",
        ),
        pytest.param(
            "Use `SAVE10` or `**x**`.",
            "Use SAVE10 or \\*\\*x\\*\\*.",
            ["inline code 'SAVE10'", "inline code '**x**'"],
            id="inline-code-stays-literal",
        ),
        pytest.param(
            "Warm.\n\n```\n# not a heading\n```",
            "Warm.\n\n\\# not a heading",
            ["code fence"],
            id="fence-mid-copy",
        ),
        pytest.param(
            "Was ~~$80~~ **$60**.",
            "Was $80 **$60**.",
            ["strikethrough around '$80'"],
            id="strikethrough",
        ),
        pytest.param("> **Warm**.", "**Warm**.", ["blockquote"], id="blockquote"),
        pytest.param("Warm.\n\n---\n\nSoft.", "Warm.\n\nSoft.", ["horizontal rule"], id="rule"),
        pytest.param(
            '# Hoodie\n\n- **Warm** [shop](https://x.example/a_(b) "Shop")\n- Soft  \n  fleece\n\n'
            "3) Three\n\nMail <sales@x.example> or \\*star\\* &amp; more",
            'Hoodie\n\n- **Warm** [shop](<https://x.example/a_(b)> "Shop")\n- Soft  \n  fleece\n\n'
            "3) Three\n\nMail <sales@x.example> or \\*star\\* &amp; more",
            ["heading '# Hoodie' (kept as text)"],
            id="the-subset-survives-a-re-render",
        ),
    ],
)
def test_normalise_markdown_keeps_the_email_subset_and_removes_the_rest(text, expected, removed):
    assert normalise(text, fmt="markdown") == Normalised(expected, removed, [])


@pytest.mark.parametrize(
    "text",
    [
        "So **warm** and *soft* and __bold__ and _it_.",
        "Shop [the hoodie](https://example.com/chaz) or [mail us](mailto:a@example.com).",
        "Reasons:\n\n- Warm\n- Soft\n  - nested\n\n1. One\n2. Two",
        "Only \\*today\\*: Tom &amp; Jerry, <https://example.com>",
    ],
)
def test_normalise_markdown_leaves_the_email_subset_as_written(text):
    assert normalise(text, fmt="markdown") == Normalised(text, [], [])


@pytest.mark.parametrize(
    "text",
    [
        "## Hoodie\n\n> **Warm** `code` ~~old~~\n\n- a\n  1. b\n\n---\n\n[x](https://e.example)",
        "Here is the copy:\n\n```markdown\n# Title\n\n* one\n* two\n```",
        "# 1) Not a list\n\n```\n- not a list\n> not a quote\n```",
    ],
)
def test_normalise_markdown_output_is_already_normal(text):
    once = normalise(text, fmt="markdown").text
    assert normalise(once, fmt="markdown") == Normalised(once, [], [])


@pytest.mark.parametrize("fmt", ["plain", "markdown"])
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("| Size | Price |\n|---|---|\n| M | $60 |", "a table", id="table"),
        pytest.param("Look: ![the hoodie](https://x.example/h.png)", "an image", id="image"),
        pytest.param("<div>Warm</div>\n\nSoft.", "HTML <div>", id="html-block"),
        pytest.param("Warm<br>soft.", "HTML <br>", id="html-inline"),
        pytest.param("<!-- draft -->\n\nWarm.", "an HTML comment or declaration", id="comment"),
        pytest.param(
            "[Claim](javascript:alert(1)) now",
            "a link to 'javascript:alert(1)' (only http, https and mailto links work)",
            id="javascript-link",
        ),
        pytest.param(
            "[Shop](/chaz) now",
            "a link to '/chaz' (only http, https and mailto links work)",
            id="relative-link",
        ),
    ],
)
def test_normalise_lists_what_the_format_cannot_hold(text, problem, fmt):
    assert problem in normalise(text, fmt=fmt).problems


@pytest.mark.parametrize("fmt", ["plain", "markdown"])
def test_normalise_leaves_a_table_in_place_for_the_reviewer(fmt):
    table = "| Size | Price |\n|---|---|\n| M | $60 |"
    result = normalise(f"Sizes:\n\n{table}", fmt=fmt)
    assert result == Normalised(f"Sizes:\n\n{table}", [], ["a table"])


@pytest.mark.parametrize("fmt", ["plain", "markdown"])
def test_normalise_drops_a_javascript_link_but_keeps_its_text(fmt):
    result = normalise("[Claim](javascript:alert(1)) your **hoodie**", fmt=fmt)
    assert result.text.startswith("Claim your ")
    assert "javascript" not in result.text
    assert "link 'Claim' (javascript:alert(1))" in result.removed


@pytest.mark.parametrize("fmt", ["plain", "markdown"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f'"{COPY}"', COPY, id="straight-double"),
        pytest.param(f"“{COPY}”", COPY, id="curly-double"),
        pytest.param(f"'{COPY}'", COPY, id="straight-single"),
        pytest.param(f"‘{COPY}’", COPY, id="curly-single"),
        pytest.param("'It's warm, it's soft'", "It's warm, it's soft", id="apostrophes-inside"),
        pytest.param("«Warm.»", "Warm.", id="guillemets"),
        pytest.param(f'  "\n{COPY}\n"  ', COPY, id="quotes-on-own-lines"),
    ],
)
def test_normalise_takes_off_quotes_around_the_whole_copy(text, expected, fmt):
    assert normalise(text, fmt=fmt) == Normalised(expected, ["wrapping quotes"], [])


@pytest.mark.parametrize("fmt", ["plain", "markdown"])
@pytest.mark.parametrize(
    "text",
    [
        pytest.param('"Warm," she said. "Soft."', id="two-quotations"),
        pytest.param("'Warm' is the word, 'soft' the feel'", id="single-quotes-inside"),
        pytest.param('Warm "and" soft', id="quotes-inside-only"),
        pytest.param("“Warm” and “soft”", id="curly-pairs"),
    ],
)
def test_normalise_keeps_quotes_that_do_not_wrap_the_whole_copy(text, fmt):
    assert normalise(text, fmt=fmt) == Normalised(text, [], [])


@pytest.mark.parametrize("fmt", ["plain", "markdown"])
@pytest.mark.parametrize(
    "preamble",
    [
        "Here is the copy:",
        "Here's your product description:",
        "Sure! Here's a version for Anna, who runs at dawn:",
        "Sure! Here's a version for …:",
        "Certainly, a warmer take:",
        "Of course! Tailored for runners:",
        "Absolutely! Below is the e-mail:",
        "Here you go:",
        "Here it is:",
        "**Here is the copy:**",
        "The following is a short SMS:",
    ],
)
def test_normalise_takes_off_a_preamble(preamble, fmt):
    result = normalise(f"{preamble}\n\n{COPY}", fmt=fmt)
    assert result == Normalised(COPY, [f"preamble '{preamble}'"], [])


@pytest.mark.parametrize("fmt", ["plain", "markdown"])
@pytest.mark.parametrize(
    "first_line",
    [
        "Three reasons to love it:",
        "Here's why you'll love it:",
        "Here are three reasons to love it:",
        "Great! Three reasons to love it:",
        "Absolutely everything you need:",
        "Sure-footed on ice:",
    ],
)
def test_normalise_keeps_a_colon_line_that_is_real_copy(first_line, fmt):
    assert normalise(f"{first_line}\nWarmth, fleece, pockets.", fmt=fmt) == Normalised(
        f"{first_line}\nWarmth, fleece, pockets.", [], []
    )


def test_normalise_keeps_a_preamble_like_line_that_is_all_there_is():
    assert normalise("Here is the copy:", fmt="plain") == Normalised("Here is the copy:", [], [])


@pytest.mark.parametrize(
    ("fmt", "expected", "removed"),
    [
        (
            "plain",
            "Warm\n\nSoft fleece.",
            ["heading '## Warm' (kept as text)", "bold around 'Soft'"],
        ),
        ("markdown", "Warm\n\n**Soft** fleece.", ["heading '## Warm' (kept as text)"]),
    ],
)
def test_normalise_unwraps_preamble_fence_and_quotes_together(fmt, expected, removed):
    text = 'Sure! Here\'s the copy:\n\n```markdown\n"## Warm\n\n**Soft** fleece."\n```'
    assert normalise(text, fmt=fmt) == Normalised(
        expected,
        ["preamble 'Sure! Here's the copy:'", "code fence", "wrapping quotes", *removed],
        [],
    )


@pytest.mark.parametrize("fmt", ["plain", "markdown"])
def test_normalise_unwraps_a_code_fence_around_the_whole_copy(fmt):
    assert normalise(f"```text\n{COPY}\n```", fmt=fmt) == Normalised(COPY, ["code fence"], [])


def test_normalise_keeps_paragraph_breaks_as_one_blank_line():
    result = normalise("**Warm.**\n\n\n\nSoft.\nFleece.", fmt="plain")
    assert result.text == "Warm.\n\nSoft.\nFleece."


def test_normalise_notes_each_removal_once():
    result = normalise("**Warm** and **Warm** again", fmt="plain")
    assert result.removed == ["bold around 'Warm'"]


def test_normalise_of_nothing_is_nothing():
    assert normalise("  \n ", fmt="plain") == Normalised("", [], [])


@pytest.mark.parametrize("fmt", ["html", "Plain", ""])
def test_normalise_refuses_an_unknown_format_naming_the_known_ones(fmt):
    with pytest.raises(ValueError, match=r"plain, markdown"):
        normalise(COPY, fmt=fmt)
