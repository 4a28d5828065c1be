"""Column mapping in the browser, its pure part: the mapping we suggest for a file's
columns, and the preview of its first rows with each error on its cell."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from generation import mapping
from generation.audience import Mapping, RowError, read_customers
from generation.mapping import Record, attribute_name, infer_type, personal_reason, suggest


def _records(columns: list[str], *rows: list[object]) -> list[Record]:
    return [Record(i + 2, dict(zip(columns, row, strict=True))) for i, row in enumerate(rows)]


@pytest.mark.parametrize(
    "column, name",
    [
        ("Kunden-ID", "kunden_id"),
        ("E-Mail", "email"),
        ("Lieblingskategorie", "lieblingskategorie"),
        ("Größe", "grosse"),
        ("emailAddress", "email_address"),
        ("Value Tier", "value_tier"),
        ("2nd phone", "c_2nd_phone"),
        ("???", ""),
    ],
)
def test_an_attribute_is_named_after_its_column_in_plain_ascii(column, name):
    assert attribute_name(column) == name


@pytest.mark.parametrize(
    "values, expected",
    [
        (["2024-01-05", "2023-12-31", ""], ("date", ())),
        ([dt.date(2024, 1, 5), None], ("date", ())),
        (["ja", "no", "yes", "true"], ("text", ())),  # "ja" is no yes/no word the reader knows
        (["yes", "no", "Yes"], ("boolean", ())),
        (["0", "1", "1"], ("integer", ())),  # 0 and 1 alone are numbers
        (["12", "-3", "+4"], ("integer", ())),
        (["0042", "0043"], ("text", ())),  # codes with a leading zero stay text
        (["12.5", "3", "1e3"], ("number", ())),
        (["12,5", "3"], ("text", ())),  # a decimal comma is not read as a number
        (["Running", "Yoga", "running", "Hiking"], ("choice", ("Running", "Yoga", "Hiking"))),
        (["Ann", "Bob", "Cid"], ("text", ())),  # no value repeats: names, not categories
        ([], ("text", ())),
        (["", None, "  "], ("text", ())),
    ],
)
def test_the_type_suggested_reads_every_sampled_value(values, expected):
    assert infer_type(values) == expected


def test_a_choice_needs_few_short_values():
    many = [f"v{i}" for i in range(mapping.CHOICES_MAX + 1)] * 2
    long = ["x" * (mapping.CHOICE_LENGTH_MAX + 1)] * 2
    assert infer_type(many) == ("text", ())
    assert infer_type(long) == ("text", ())


@pytest.mark.parametrize(
    "column, values, why",
    [
        ("E-Mail", [], "its name"),
        ("Telefon", ["+49 30 1234567"], "values look like phone numbers"),
        ("contact", ["a@example.com", "b@example.com", "-"], "values look like e-mail addresses"),
        ("contact", ["a@example.com", "-", "-"], ""),  # a minority is not enough
        ("Lieblingskategorie", ["Running"], ""),
    ],
)
def test_a_column_is_personal_by_its_name_or_most_of_its_values(column, values, why):
    assert personal_reason(column, values) == why


GERMAN = ["Kunden-ID", "Lieblingskategorie", "E-Mail", "Umsatz", "Sprache", "Kunde seit"]


def _german_rows(count: int = 6) -> list[Record]:
    categories = ["Running", "Yoga", "Hiking"]
    return _records(
        GERMAN,
        *(
            [f"K-{i}", categories[i % 3], f"k{i}@example.com", f"{i * 10.5}", "de", "2024-02-01"]
            for i in range(count)
        ),
    )


def test_a_cdp_export_with_columns_of_its_own_names_gets_a_whole_suggestion():
    suggested = suggest(GERMAN, _german_rows())
    by = {s.column: s for s in suggested.columns}
    assert suggested.external_id == "Kunden-ID"
    assert (by["Kunden-ID"].attribute, by["Kunden-ID"].required) == ("external_id", True)
    assert (by["Lieblingskategorie"].type, by["Lieblingskategorie"].choices) == (
        "choice",
        ("Running", "Yoga", "Hiking"),
    )
    assert (by["E-Mail"].attribute, by["E-Mail"].personal, by["E-Mail"].type) == (
        "email",
        True,
        "text",  # personal: never a choice, whatever its values
    )
    assert (by["Umsatz"].attribute, by["Umsatz"].type) == ("umsatz", "number")
    assert by["Sprache"].attribute == "language"
    assert (by["Kunde seit"].attribute, by["Kunde seit"].type) == ("kunde_seit", "date")
    # Only the id is required: an empty value on a later row would fail the import.
    assert [s.column for s in suggested.columns if s.required] == ["Kunden-ID"]
    assert by["Kunden-ID"].samples == ("K-0", "K-1", "K-2", "K-3", "K-4")
    # The suggestion parses as a mapping the reader takes.
    assert suggested.as_mapping().as_json()["columns"]["Kunden-ID"]["attribute"] == "external_id"


def test_no_column_is_taken_for_the_id_when_none_is_named_like_one_or_its_values_repeat():
    columns = ["Name", "Stadt"]
    assert suggest(columns, _records(columns, ["A", "Berlin"], ["B", "Köln"])).external_id is None
    columns = ["customer_id", "account_id"]
    rows = _records(columns, ["C1", "A1"], ["C1", "A2"])  # customer_id repeats
    assert suggest(columns, rows).external_id == "account_id"
    suggested = suggest(["Name"], _records(["Name"], ["A"]))
    assert suggested.as_mapping() is None  # nothing to preview until the lead chooses


def test_two_columns_named_alike_get_two_attributes():
    columns = ["E-Mail", "email", "Lang", "Sprache"]
    suggested = suggest(columns, _records(columns, ["a", "b", "de", "en"]))
    assert [s.attribute for s in suggested.columns] == ["email", "email_2", "language", "sprache"]


def test_a_saved_source_is_suggested_for_the_columns_it_names_and_its_missing_ones_listed():
    saved = Mapping.parse(
        {
            "columns": {
                "KID": "external_id",
                "TIER": {"attribute": "value_tier", "type": "choice", "choices": ["a", "b"]},
                "AGE": {"attribute": "age", "type": "integer", "min": 0, "max": 130},
                "GONE": "old",
            }
        }
    )
    columns = ["KID", "TIER", "AGE", "Neu"]
    rows = _records(columns, ["1", "a", "30", "x"], ["2", "b", "40", "y"])
    suggested = suggest(columns, rows, saved=saved)
    by = {s.column: s for s in suggested.columns}
    assert suggested.external_id == "KID"
    assert (by["TIER"].attribute, by["TIER"].choices, by["TIER"].why) == (
        "value_tier",
        ("a", "b"),
        "as saved",
    )
    assert (by["AGE"].min, by["AGE"].max) == (0, 130)
    assert by["Neu"].attribute == "neu" and by["Neu"].why == ""
    assert suggested.missing == ["GONE"]


# --- the preview ---------------------------------------------------------------------

PREVIEW_MAPPING = Mapping.parse(
    {
        "columns": {
            "Kunden-ID": "external_id",
            "Lieblingskategorie": {
                "attribute": "favourite",
                "type": "choice",
                "choices": ["Running", "Yoga"],
                "required": True,
            },
            "Umsatz": {"attribute": "revenue", "type": "number"},
            "Sprache": "language",
        },
        "unmapped": "drop",
    }
)
PREVIEW_COLUMNS = ["Kunden-ID", "Lieblingskategorie", "Umsatz", "Sprache", "E-Mail"]


def test_the_preview_marks_every_error_on_its_cell():
    rows = _records(
        PREVIEW_COLUMNS,
        ["K1", "yoga", "12.5", "DE", "a@example.com"],
        ["K2", "Chess", "zwölf", "de", ""],  # two bad cells on one row
        ["", "", "1", "xx-!!", ""],  # no id, a required value empty, a bad language
        ["K1", "Running", "", "", ""],  # K1 again
    )
    preview = mapping.preview(PREVIEW_COLUMNS, rows, PREVIEW_MAPPING)
    cells = [{c.column: c for c in row.cells} for row in preview.rows]
    assert cells[0]["Lieblingskategorie"].value == "Yoga"  # as the reader folds it
    assert cells[0]["Sprache"].value == "de"
    assert not cells[0]["E-Mail"].mapped and cells[0]["E-Mail"].text == "a@example.com"
    assert cells[1]["Lieblingskategorie"].error == "'Chess' is not one of Running, Yoga"
    assert cells[1]["Umsatz"].error == "'zwölf' is not a number"
    assert cells[2]["Kunden-ID"].error == "external_id is required and empty"
    assert cells[2]["Lieblingskategorie"].error == "favourite is required and empty"
    assert cells[2]["Sprache"].error
    assert preview.rows[3].error == "external_id 'K1' appears on line 2 and line 5"
    assert preview.bad_rows == 3 and not preview.rows[0].bad
    assert preview.messages(2) == [
        "line 3, column 'Lieblingskategorie': 'Chess' is not one of Running, Yoga",
        "line 3, column 'Umsatz': 'zwölf' is not a number",
    ]
    assert preview.heads[1] == ("Lieblingskategorie", "favourite")
    assert preview.heads[4] == ("E-Mail", "")


def test_a_required_column_empty_in_every_row_is_named():
    rows = _records(PREVIEW_COLUMNS, ["K1", "", "", "", ""], ["K2", " ", "", "", ""])
    preview = mapping.preview(PREVIEW_COLUMNS, rows, PREVIEW_MAPPING)
    assert preview.empty_required == ("Lieblingskategorie",)


def test_the_preview_shows_at_most_twenty_rows():
    rows = _records(["id"], *([f"C{i}"] for i in range(30)))
    preview = mapping.preview(["id"], rows, Mapping.parse({"columns": {"id": "external_id"}}))
    assert len(preview.rows) == mapping.PREVIEW_ROWS


CSV = (
    "Kunden-ID,Lieblingskategorie,Umsatz,Sprache,E-Mail\n"
    "K1,Yoga,12.5,de,a@example.com\n"
    "K2,Chess,zwölf,de,\n"
    "\n"
    ",Running,1,en,\n"
    "K1,Running,2,en,\n"
    "K5,Running,3,en,b@example.com,extra\n"
    "K6,Running,4,fr,\n"
)


@pytest.fixture
def staged_csv(tmp_path, settings) -> mapping.Staged:
    settings.IMPORT_DIR = tmp_path
    return mapping.stage(SimpleUploadedFile("kunden.csv", CSV.encode()), user_id=7)


def test_the_preview_flags_the_rows_the_import_refuses(staged_csv):
    """The preview and the import read a row alike: the rows it marks bad are those the
    reader refuses (the reader stops at a row's first error; the preview shows all)."""
    read = mapping.sample(staged_csv)
    preview = mapping.preview(read.columns, read.records, PREVIEW_MAPPING)
    refused = {
        item.line
        for item in read_customers(staged_csv.path, mapping=PREVIEW_MAPPING)
        if isinstance(item, RowError)
    }
    assert {row.line for row in preview.rows if row.bad} == refused == {3, 5, 6, 7}
    assert [row.line for row in preview.rows] == [2, 3, 5, 6, 7, 8]  # blank line 4 skipped


def test_a_staged_upload_is_read_only_by_its_owner_and_only_at_its_start(staged_csv, tmp_path):
    assert staged_csv.path.parent == tmp_path / "mapping" and staged_csv.name == "kunden.csv"
    assert mapping.staged(staged_csv.token, user_id=7) == staged_csv
    for token, user in [(staged_csv.token, 8), ("../../etc/passwd", 7), ("0" * 32, 7)]:
        with pytest.raises(mapping.StagedUploadGone, match="upload the file again"):
            mapping.staged(token, user_id=user)
    read = mapping.sample(staged_csv, rows=2)
    assert read.columns == CSV.splitlines()[0].split(",") and len(read.records) == 2


@pytest.mark.parametrize(
    "name, body, status, message",
    [
        ("kunden.xlsx", b"a,b\n1,2\n", 400, "the file name 'kunden.xlsx' does not tell"),
        ("kunden.csv", b"", 400, "kunden.csv is empty."),
        ("kunden.csv", b"x" * 600, 413, "IMPORT_MAX_BYTES"),
        ("kunden.csv", b"id,id\n1,2\n", 400, "the header names this column more than once"),
        ("kunden.csv", b"id,name\n", 400, "has its columns but no customers"),
        ("kunden.csv", "id\n\u00e9\n".encode("latin-1"), 400, "not UTF-8"),
        ("kunden.jsonl", b"[1]\n", 400, "no columns found"),
    ],
)
def test_a_file_that_cannot_be_mapped_is_refused_and_nothing_is_kept(
    tmp_path, settings, name, body, status, message
):
    settings.IMPORT_DIR, settings.IMPORT_MAX_BYTES = tmp_path, 500
    with pytest.raises(mapping.MappingRefused, match=message.replace(".", r"\.")) as refused:
        mapping.stage(SimpleUploadedFile(name, body), user_id=1)
    assert refused.value.status == status and refused.value.field == "file"
    assert not any((tmp_path / "mapping").glob("*"))


def test_json_lines_and_parquet_are_sampled_too(tmp_path, settings):
    settings.IMPORT_DIR = tmp_path
    jsonl = b'{"KID": "1", "Stufe": "gold"}\n{"KID": "2", "Stufe": "gold", "Alter": 40}\n'
    staged = mapping.stage(SimpleUploadedFile("cdp.jsonl", jsonl), user_id=1)
    read = mapping.sample(staged)
    assert read.columns == ["KID", "Stufe", "Alter"] and read.records[1].values["Alter"] == 40
    path = Path(tmp_path / "cdp.parquet")
    pq.write_table(pa.table({"KUNDEN_ID": ["1", "2"], "Alter": [30, 40]}), path)
    staged = mapping.stage(SimpleUploadedFile("cdp.parquet", path.read_bytes()), user_id=1)
    read = mapping.sample(staged)
    assert read.columns == ["KUNDEN_ID", "Alter"] and read.unit == "row"
    suggested = suggest(read.columns, read.records)
    assert suggested.external_id == "KUNDEN_ID" and suggested.columns[1].type == "integer"


def test_a_big_upload_is_moved_into_place_not_read_into_memory(tmp_path, settings):
    """Django spools a big upload to a temporary file: staging moves that file."""
    from django.core.files.uploadedfile import TemporaryUploadedFile

    settings.IMPORT_DIR = tmp_path
    upload = TemporaryUploadedFile("kunden.csv", "text/csv", len(CSV.encode()), "utf-8")
    upload.write(CSV.encode())
    upload.flush()
    spooled = Path(upload.temporary_file_path())
    staged = mapping.stage(upload, user_id=1)
    upload.close()  # as Django does after the request: a moved file is no error
    assert not spooled.exists() and staged.path.read_text(encoding="utf-8") == CSV


def test_only_the_start_of_a_file_is_read(tmp_path, settings):
    """A fault far past the sampled rows is the import's to find, not the mapping's."""
    settings.IMPORT_DIR = tmp_path
    body = b"Kunden-ID,Stufe\n" + b"".join(b"K-%d,gold\n" for i in range(20_000))
    body += b"K-x,\xff\xfe not UTF-8\n"  # about 200 KB in
    staged = mapping.stage(SimpleUploadedFile("kunden.csv", body), user_id=1)
    read = mapping.sample(staged)
    assert len(read.records) == mapping.SAMPLE_ROWS and read.records[-1].line == 101


def test_an_upload_gone_meanwhile_is_said_to_be_gone(staged_csv):
    staged_csv.path.unlink()  # imported by a second click, or pruned
    with pytest.raises(mapping.StagedUploadGone):
        mapping.staged(staged_csv.token, user_id=7)
    with pytest.raises(mapping.StagedUploadGone):
        mapping.sample(staged_csv)


def test_uploads_left_a_day_are_removed_when_the_next_is_staged(staged_csv, settings):
    import os
    import time

    day_old = time.time() - mapping.STAGED_SECONDS - 60
    for path in staged_csv.path.parent.iterdir():
        os.utime(path, (day_old, day_old))
    fresh = mapping.stage(SimpleUploadedFile("neu.csv", CSV.encode()), user_id=7)
    assert sorted(p.name for p in fresh.path.parent.iterdir()) == sorted(
        [fresh.path.name, f"{fresh.token}.json"]
    )
