"""The phrase tables (tables.py): data/*.json, read once and checked on load."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from hyperpers.offline_writer import tables
from hyperpers.offline_writer.tables import (
    DataFileError,
    parse_angles,
    parse_answers,
    parse_phrasebook,
    parse_reviewer_notes,
    read_data_file,
)

FILES: dict[str, Callable[[Any, str], Any]] = {
    "phrasebook.json": parse_phrasebook,
    "angles.json": parse_angles,
    "reviewer_notes.json": parse_reviewer_notes,
    "answers.json": parse_answers,
}


def _shipped(name: str) -> Any:
    value, _where = read_data_file(name)
    return copy.deepcopy(value)


def test_the_shipped_files_are_the_tables_the_writer_uses():
    assert parse_phrasebook(*read_data_file("phrasebook.json")) == tables.PHRASEBOOK
    assert set(tables.PHRASEBOOK) == {"en", "de", "fr", "es", "it", "nl"}
    assert parse_angles(*read_data_file("angles.json")) == (
        tables.TIER_ANGLES,
        tables.ANGLE_WORDS,
    )
    assert tables.TIER_ANGLES["vip"] == "quality" and tables.TIER_ANGLES["budget"] == "value"
    assert "kürzer" in tables.SHORTER_NOTES and "more detail" in tables.LONGER_NOTES
    assert len(tables.RATIONALE_MARKS) == 7 and len(tables.PREAMBLES) == 5


def test_a_missing_data_file_is_named():
    with pytest.raises(DataFileError, match=r"data/nowhere\.json: cannot be read"):
        read_data_file("nowhere.json")


def test_a_data_file_that_is_not_json_names_the_file_and_the_line(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "phrasebook.json").write_text('{"en": {\n  "language": English\n}}')
    monkeypatch.setattr(tables, "files", lambda package: tmp_path)

    with pytest.raises(DataFileError) as caught:
        read_data_file("phrasebook.json")

    assert "phrasebook.json: is not valid JSON" in str(caught.value)
    assert "line 2" in str(caught.value)


def _without(key: str) -> Callable[[dict], None]:
    return lambda value: value["de"].pop(key)


@pytest.mark.parametrize(
    ("name", "spoil", "key", "problem"),
    [
        ("phrasebook.json", lambda v: v.pop("en"), "en", "is missing"),
        ("phrasebook.json", _without("hook_value"), "de.hook_value", "is missing"),
        ("phrasebook.json", lambda v: v["de"].update(hook_vaule=["x"]), "de.hook_vaule",
         "is not a known key"),
        ("phrasebook.json", lambda v: v["de"]["hook_value"].append("{nmae} spart."),
         "de.hook_value[2]", "uses {nmae}; the placeholders it may use: {name}"),
        ("phrasebook.json", lambda v: v["fr"].update(closing=[]), "fr.closing",
         "is not a non-empty list of strings"),
        ("phrasebook.json", lambda v: v["es"].update(featuring=["Con {terms}."]),
         "es.featuring", "is not a non-empty string"),
        ("phrasebook.json", lambda v: v["it"]["subcategory"].__setitem__(0, "Per {"),
         "it.subcategory[0]", "has a stray brace"),
        ("phrasebook.json", lambda v: v.update({"pt-BR": v["en"]}), "pt-BR",
         "is not a language code"),
        ("phrasebook.json", lambda v: v.update(nl=[1]), "nl", "is not a JSON object"),
        ("angles.json", lambda v: v["tiers"]["value"].append("High"), "tiers.value[5]",
         "is not written as tiers are compared"),
        ("angles.json", lambda v: v["tiers"]["value"].append("gold"), "tiers.value[5]",
         "is under quality already"),
        ("angles.json", lambda v: v["tiers"].update(luxury=["x"]), "tiers.luxury",
         "is not an angle"),
        ("angles.json", lambda v: v["suiting_words"]["value"].append("Cheap"),
         "suiting_words.value[10]", "is not in lower case"),
        ("reviewer_notes.json", lambda v: v.pop("longer"), "longer", "is missing"),
        ("reviewer_notes.json", lambda v: v["shorter"].append(""), "shorter[11]",
         "is not a non-empty string"),
        ("answers.json", lambda v: v["rationale_marks"].append("Why: {why}"),
         "rationale_marks[7]", "uses {why}"),
        ("answers.json", lambda v: v["rationale_marks"].append("Rationale:"),
         "rationale_marks[7]", "leaves out the rationale"),
        ("answers.json", lambda v: v.update(preambles="Here:"), "preambles",
         "is not a non-empty list of strings"),
    ],
)  # fmt: skip
def test_a_malformed_table_is_refused_naming_the_file_and_the_key(name, spoil, key, problem):
    value = _shipped(name)
    spoil(value)

    with pytest.raises(DataFileError) as caught:
        FILES[name](value, f"data/{name}")

    assert str(caught.value).startswith(f"data/{name}: {key}: ")
    assert problem in str(caught.value)
