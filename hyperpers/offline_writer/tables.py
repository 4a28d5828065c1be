"""The phrase tables the composer and the profiles pick from, read from data/*.json.

They are read once, when the package is imported, and checked then: a malformed file
stops the import with a DataFileError naming the file and the key, rather than failing
in the middle of a request. The files hold data only:

- data/phrasebook.json: per language code ("de", never "de-AT": requests are matched
  on the code alone; "en" is the fallback and must be there), the framing of the copy.
  Lists of phrasings, one picked by a hash of the request: hook_quality, hook_value,
  hook_balanced and hook_neutral ({name}), subcategory ({subcategory}), value_line,
  closing ({brand}) and closing_nobrand. Single strings: language (its English name),
  featuring ({terms}: the protected terms the copy lacked), and (the word joining the
  last two terms) and nothing (the copy when nothing else fits).
- data/angles.json: "tiers", per angle (quality, balanced, value), the value tiers
  that set it, written as they are compared (lower case, "_" for spaces and hyphens);
  "suiting_words", per angle, the lower-case words that make a description sentence
  suit it.
- data/reviewer_notes.json: "shorter" and "longer", the lower-case words of a
  reviewer's note that ask for shorter or longer copy.
- data/answers.json: "rationale_marks", how the markdown profile marks the rationale
  ({r} is the rationale); "preambles", the lines the chatty profile opens with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from importlib.resources import files
from string import Formatter
from typing import Any

# The angles a value tier can set; each has its hook_<angle> phrasings. Without a tier
# the angle is neutral.
ANGLES: tuple[str, ...] = ("quality", "balanced", "value")
# The phrasebook's keys and the placeholders each may use. Lists of phrasings first,
# then single strings; None: the string is used as it is, never formatted.
PHRASINGS: dict[str, frozenset[str]] = {
    "hook_quality": frozenset({"name"}),
    "hook_value": frozenset({"name"}),
    "hook_balanced": frozenset({"name"}),
    "hook_neutral": frozenset({"name"}),
    "subcategory": frozenset({"subcategory"}),
    "value_line": frozenset(),
    "closing": frozenset({"brand"}),
    "closing_nobrand": frozenset(),
}
STRINGS: dict[str, frozenset[str] | None] = {
    "language": None,
    "featuring": frozenset({"terms"}),
    "and": None,
    "nothing": None,
}


class DataFileError(ValueError):
    """A data file of the offline writer that cannot be read, is not JSON, or is not in
    the shape the code reads; the message names the file and the key."""


def read_data_file(name: str) -> tuple[Any, str]:
    """(the parsed JSON of data/<name>, where it is, for error messages)."""
    resource = files(__package__) / "data" / name
    where = str(resource)
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFileError(f"{where}: cannot be read ({exc.strerror or exc}).") from None
    try:
        return json.loads(text), where
    except ValueError as exc:
        raise DataFileError(f"{where}: is not valid JSON: {exc}.") from None


def parse_phrasebook(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """The phrasebook: per language code, tuples of phrasings and single strings."""
    books = _object(value, where, "the top level")
    if "en" not in books:
        raise _error(where, "en", "is missing; English is the fallback for every language")
    phrasebook: dict[str, dict[str, Any]] = {}
    for code, book in books.items():
        if not re.fullmatch(r"[a-z]{2,3}", code):
            raise _error(where, code, "is not a language code of two or three lower-case letters")
        book = _object(book, where, code)
        _same_keys(book, where, code, [*PHRASINGS, *STRINGS])
        phrasebook[code] = {
            key: (
                _strings(text, where, f"{code}.{key}", placeholders=PHRASINGS[key])
                if key in PHRASINGS
                else _string(text, where, f"{code}.{key}", placeholders=STRINGS[key])
            )
            for key, text in book.items()
        }
    return phrasebook


def parse_angles(value: Any, where: str) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """(the angle of each value tier, the words that suit each angle)."""
    top = _object(value, where, "the top level")
    _same_keys(top, where, "", ["tiers", "suiting_words"])
    tier_angles: dict[str, str] = {}
    for angle, tiers in _object(top["tiers"], where, "tiers").items():
        _angle(angle, where, f"tiers.{angle}")
        for i, tier in enumerate(_strings(tiers, where, f"tiers.{angle}")):
            key = f"tiers.{angle}[{i}]"
            if tier != tier.lower() or re.search(r"[\s-]", tier):
                raise _error(
                    where, key, f"{tier!r} is not written as tiers are compared: in lower "
                    "case, with _ for spaces and hyphens",
                )  # fmt: skip
            if tier in tier_angles:
                raise _error(where, key, f"{tier!r} is under {tier_angles[tier]} already")
            tier_angles[tier] = angle
    angle_words: dict[str, tuple[str, ...]] = {}
    for angle, words in _object(top["suiting_words"], where, "suiting_words").items():
        _angle(angle, where, f"suiting_words.{angle}")
        angle_words[angle] = _strings(words, where, f"suiting_words.{angle}", lower=True)
    return tier_angles, angle_words


def parse_reviewer_notes(value: Any, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the words asking for shorter copy, the words asking for longer copy)."""
    top = _object(value, where, "the top level")
    _same_keys(top, where, "", ["shorter", "longer"])
    return (
        _strings(top["shorter"], where, "shorter", lower=True),
        _strings(top["longer"], where, "longer", lower=True),
    )


def parse_answers(value: Any, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the markdown profile's rationale marks, the chatty profile's preambles)."""
    top = _object(value, where, "the top level")
    _same_keys(top, where, "", ["rationale_marks", "preambles"])
    marks = _strings(
        top["rationale_marks"], where, "rationale_marks", placeholders=frozenset({"r"})
    )
    for i, mark in enumerate(marks):
        if "{r}" not in mark:
            raise _error(
                where, f"rationale_marks[{i}]", f"{mark!r} leaves out the rationale, {{r}}"
            )
    return marks, _strings(top["preambles"], where, "preambles")


# --------------------------------------------------------------------------------------
# Checks


def _error(where: str, key: str, problem: str) -> DataFileError:
    return DataFileError(f"{where}: {key}: {problem}.")


def _object(value: Any, where: str, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _error(where, key, "is not a JSON object")
    return value


def _same_keys(value: Mapping[str, Any], where: str, key: str, expected: Iterable[str]) -> None:
    expected = list(expected)
    prefix = f"{key}." if key else ""
    if missing := [k for k in expected if k not in value]:
        raise _error(where, f"{prefix}{missing[0]}", "is missing")
    if unknown := [k for k in value if k not in expected]:
        raise _error(
            where, f"{prefix}{unknown[0]}", f"is not a known key (known: {', '.join(expected)})"
        )


def _angle(angle: str, where: str, key: str) -> None:
    if angle not in ANGLES:
        raise _error(where, key, f"{angle!r} is not an angle ({', '.join(ANGLES)})")


def _strings(
    value: Any, where: str, key: str, *, placeholders: frozenset[str] | None = None,
    lower: bool = False,
) -> tuple[str, ...]:  # fmt: skip
    if not isinstance(value, list) or not value:
        raise _error(where, key, "is not a non-empty list of strings")
    return tuple(
        _string(item, where, f"{key}[{i}]", placeholders=placeholders, lower=lower)
        for i, item in enumerate(value)
    )


def _string(
    value: Any, where: str, key: str, *, placeholders: frozenset[str] | None = None,
    lower: bool = False,
) -> str:  # fmt: skip
    """The value, if it is a non-empty string that uses only the given placeholders
    (None: it is never formatted, so braces are plain text)."""
    if not isinstance(value, str) or not value.strip():
        raise _error(where, key, "is not a non-empty string")
    if lower and value != value.lower():
        raise _error(where, key, f"{value!r} is not in lower case, as the text it is matched in")
    if placeholders is not None:
        try:
            used = {field for _, field, _, _ in Formatter().parse(value) if field is not None}
        except ValueError as exc:
            raise _error(where, key, f"{value!r} has a stray brace ({exc})") from None
        if unknown := sorted(used - placeholders):
            allowed = ", ".join(f"{{{p}}}" for p in sorted(placeholders)) or "none"
            raise _error(
                where, key, f"{value!r} uses {{{unknown[0]}}}; the placeholders it may use: "
                f"{allowed}",
            )  # fmt: skip
    return value


# --------------------------------------------------------------------------------------
# The tables, read once

PHRASEBOOK: dict[str, dict[str, Any]] = parse_phrasebook(*read_data_file("phrasebook.json"))
TIER_ANGLES, ANGLE_WORDS = parse_angles(*read_data_file("angles.json"))
SHORTER_NOTES, LONGER_NOTES = parse_reviewer_notes(*read_data_file("reviewer_notes.json"))
RATIONALE_MARKS, PREAMBLES = parse_answers(*read_data_file("answers.json"))
