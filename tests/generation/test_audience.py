"""Customer files from a CDP: the three formats, column mappings, bad rows, upserts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from generation import audience, services
from generation.audience import (
    CustomerRow,
    Mapping,
    MappingError,
    RowError,
    file_columns,
    read_customers,
)
from generation.importers import ImportFileError
from generation.models import Customer, CustomerSource, Segment
from tests.factories import CustomerFactory, SegmentFactory

pytestmark = pytest.mark.django_db

CDP_MAPPING = {
    "columns": {
        "CUST_ID": "external_id",
        "LANG": "language",
        "TIER": {
            "attribute": "value_tier",
            "type": "choice",
            "choices": ["low", "medium", "high"],
            "required": True,
        },
        "AGE": {"attribute": "age", "type": "integer", "min": 0, "max": 130},
        "LTV": {"attribute": "lifetime_value", "type": "number"},
        "OPT_IN": {"attribute": "newsletter", "type": "boolean"},
        "SINCE": {"attribute": "customer_since", "type": "date"},
        "EMAIL": {"attribute": "email", "personal": True},
    }
}


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def _parquet(tmp_path: Path, name: str, columns: dict) -> Path:
    path = tmp_path / name
    pq.write_table(pa.table(columns), path)
    return path


def _read(path, mapping=None) -> list:
    return list(read_customers(path, mapping=Mapping.parse(mapping) if mapping else None))


# --- reading without a mapping: our column names ---------------------------------------


def test_csv_reads_language_and_text_attributes(tmp_path):
    path = _write(
        tmp_path,
        "customers.csv",
        "external_id,preferred_language,value_tier,city\nC1,PT_BR, high ,Lisbon\nC2,,low,\n",
    )
    assert _read(path) == [
        CustomerRow("C1", "pt-br", {"value_tier": "high", "city": "Lisbon"}, 2),
        CustomerRow("C2", "en", {"value_tier": "low"}, 3),
    ]


def test_jsonl_merges_nested_attributes_and_stringifies_scalars(tmp_path):
    path = _write(
        tmp_path,
        "customers.jsonl",
        '{"external_id": "C1", "language": "FR", "age": 34, "vip": true, "note": null,'
        ' "attributes": {"value_tier": "high", "score": 0.5}}\n'
        "\n"
        '{"external_id": 7, "city": "Oslo\u2028Centrum"}\n',
    )
    assert _read(path) == [
        CustomerRow(
            "C1", "fr", {"age": "34", "vip": "true", "value_tier": "high", "score": "0.5"}, 1
        ),
        CustomerRow("7", "en", {"city": "Oslo\u2028Centrum"}, 3),
    ]


def test_parquet_reads_typed_columns_row_by_row(tmp_path):
    path = _parquet(
        tmp_path,
        "customers.parquet",
        {"external_id": ["C1", "C2"], "language": ["de", None], "age": [41, None]},
    )
    assert _read(path) == [
        CustomerRow("C1", "de", {"age": "41"}, 1),
        CustomerRow("C2", "en", {}, 2),
    ]
    assert file_columns(path) == ["external_id", "language", "age"]


@pytest.mark.parametrize(
    ("content", "line", "column", "message"),
    [
        ("external_id,language\n ,en\n", 2, "external_id", "external_id is missing"),
        ("external_id,language\nC1,English\n", 2, "language", "'English' is not a language tag"),
        ("external_id,language\nC1,en\nC1,fr\n", 3, "external_id", "on line 2 and line 3"),
        ("external_id,language\nC1,en,extra\n", 2, None, "3 fields, the header has 2"),
    ],
)
def test_a_bad_csv_row_is_reported_with_its_line_and_column(
    tmp_path, content, line, column, message
):
    path = _write(tmp_path, "customers.csv", content)
    bad = [r for r in _read(path) if isinstance(r, RowError)]
    assert [(b.line, b.column) for b in bad] == [(line, column)]
    assert message in bad[0].message


@pytest.mark.parametrize(
    ("record", "column", "message"),
    [
        ('["C2"]', None, "expected a JSON object, found list"),
        ('{"external_id": "C2",}', None, "invalid JSON"),
        ('{"language": "en"}', "external_id", "external_id is missing"),
        ('{"external_id": {"id": 2}}', "external_id", "must be text or a whole number"),
        ('{"external_id": "C2", "tags": ["a"]}', "tags", "is a list or an object"),
        ('{"external_id": "C2", "attributes": [1]}', "attributes", "must be an object"),
        ('{"external_id": "C2", "t": 1, "attributes": {"t": 2}}', "attributes.t", "top level"),
        ('{"external_id": "C2", "language": 5}', "language", "must be text"),
        ('{"external_id": "C1"}', "external_id", "appears on line 1 and line 2"),
    ],
)
def test_a_bad_json_line_names_its_line_and_key(tmp_path, record, column, message):
    path = _write(tmp_path, "customers.jsonl", '{"external_id": "C1"}\n' + record + "\n")
    good, bad = _read(path)
    assert isinstance(good, CustomerRow)
    assert (bad.line, bad.column) == (2, column)
    assert message in bad.message


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("customers.xlsx", "x", "unsupported file type ('.xlsx'); use .csv, .jsonl"),
        ("customers.csv", "id,language\n1,en\n", "required column is missing"),
        ("customers.csv", b"external_id\nC1\n\xff\n", "not UTF-8 text"),
        ("customers.parquet", b"PAR1 not really", "not a readable Parquet file"),
        ("customers.csv", "external_id,external_id\nC1,C2\n", "more than once"),
    ],
)
def test_an_unusable_file_is_an_error_for_the_whole_file(tmp_path, name, content, message):
    path = _write(tmp_path, name, content)
    with pytest.raises(ImportFileError) as error:
        _read(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


# --- mappings ---------------------------------------------------------------------------


def test_a_mapping_renames_coerces_and_drops_unmapped_columns(tmp_path):
    path = _write(
        tmp_path,
        "cdp.csv",
        "CUST_ID,LANG,TIER,AGE,LTV,OPT_IN,SINCE,EMAIL,INTERNAL\n"
        "X1,de,High,41,1234.50,yes,2021-03-04T10:00:00,a@example.com,secret\n",
    )
    [row] = _read(path, CDP_MAPPING)
    assert row == CustomerRow(
        "X1",
        "de",
        {
            "value_tier": "high",
            "age": 41,
            "lifetime_value": 1234.5,
            "newsletter": True,
            "customer_since": "2021-03-04",
            "email": "a@example.com",
        },
        2,
    )


def test_parquet_types_pass_through_a_mapping(tmp_path):
    import datetime as dt

    path = _parquet(
        tmp_path,
        "cdp.parquet",
        {
            "CUST_ID": [10, 11],
            "TIER": ["low", "medium"],
            "AGE": [30, 200],
            "OPT_IN": [True, False],
            "SINCE": [dt.date(2020, 1, 2), dt.date(2021, 5, 6)],
        },
    )
    good, bad = _read(path, CDP_MAPPING)
    assert good.attributes == {
        "value_tier": "low",
        "age": 30,
        "newsletter": True,
        "customer_since": "2020-01-02",
    }
    assert (good.external_id, good.line) == ("10", 1)
    assert str(bad) == "row 2, column 'AGE': 200 is above the maximum 130"


@pytest.mark.parametrize(
    ("cells", "column", "message"),
    [
        ("X1,en,gold,41,1,yes,2020-01-01", "TIER", "'gold' is not one of low, medium, high"),
        ("X1,en,,41,1,yes,2020-01-01", "TIER", "value_tier is required and empty"),
        ("X1,en,low,forty,1,yes,2020-01-01", "AGE", "'forty' is not a whole number"),
        ("X1,en,low,41.5,1,yes,2020-01-01", "AGE", "'41.5' is not a whole number"),
        ("X1,en,low,-1,1,yes,2020-01-01", "AGE", "-1 is below the minimum 0"),
        ("X1,en,low,41,1e999,yes,2020-01-01", "LTV", "is not a finite number"),
        ("X1,en,low,41,1,maybe,2020-01-01", "OPT_IN", "not a yes/no value"),
        ("X1,en,low,41,1,yes,01/02/2020", "SINCE", "is not a date (YYYY-MM-DD)"),
        (",en,low,41,1,yes,2020-01-01", "CUST_ID", "external_id is required and empty"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_file_column(tmp_path, cells, column, message):
    path = _write(tmp_path, "cdp.csv", f"CUST_ID,LANG,TIER,AGE,LTV,OPT_IN,SINCE\n{cells}\n")
    [bad] = _read(path, CDP_MAPPING)
    assert isinstance(bad, RowError)
    assert (bad.line, bad.column) == (2, column)
    assert message in bad.message


def test_a_mapped_required_column_missing_from_the_header_is_a_file_error(tmp_path):
    path = _write(tmp_path, "cdp.csv", "CUST_ID,LANG\nX1,en\n")
    with pytest.raises(ImportFileError, match=r"TIER.*required column is missing"):
        _read(path, CDP_MAPPING)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "A mapping is a JSON object"),
        ({"columns": {}}, "cannot be empty"),
        ({"columns": {"A": "tier"}}, "No column maps to external_id"),
        ({"columns": {"A": "external_id", "B": "external_id"}}, "both map to 'external_id'"),
        ({"columns": {"A": "external_id", "B": {"attribute": "x", "type": "money"}}}, "money"),
        ({"columns": {"A": "external_id", "B": {"attribute": "x y"}}}, "letters, digits"),
        ({"columns": {"A": "external_id", "B": {"attribute": "x", "type": "choice"}}}, "choices"),
        ({"columns": {"A": "external_id", "B": {"attribute": "x", "min": 1}}}, "'min' only"),
        ({"columns": {"A": "external_id", "B": {"attribute": "x", "colour": 1}}}, "colour"),
        ({"columns": {"A": "external_id"}, "unmapped": "sometimes"}, "'keep' or 'drop'"),
    ],
)
def test_a_bad_mapping_is_refused_naming_the_entry(spec, message):
    with pytest.raises(MappingError) as error:
        Mapping.parse(spec)
    assert message in str(error.value)


def test_a_mapping_round_trips_through_its_json_form():
    mapping = Mapping.parse(CDP_MAPPING)
    assert Mapping.parse(mapping.as_json()) == mapping
    assert mapping.personal == {"email"}


# --- importing ---------------------------------------------------------------------------


def test_a_bad_row_imports_nothing_and_every_bad_row_is_listed(tmp_path):
    CustomerFactory(external_id="KEEP", attributes={"value_tier": "low"})
    path = _write(
        tmp_path,
        "c.csv",
        "external_id,language,value_tier\nKEEP,en,high\nN1,English,low\nN2,en,low\nN3,xx-!,x\n",
    )
    with pytest.raises(services.CustomerRowsError) as error:
        services.customers_import(path=path)
    assert [(e.line, e.column) for e in error.value.errors] == [(3, "language"), (5, "language")]
    assert "2 bad row(s); nothing was imported" in str(error.value)
    assert list(Customer.objects.values_list("external_id", "attributes")) == [
        ("KEEP", {"value_tier": "low"})
    ]


def test_skip_invalid_imports_the_good_rows_and_reports_the_bad(tmp_path):
    path = _write(tmp_path, "c.jsonl", '{"external_id": "A"}\n{"external_id": ""}\n{"nope": 1}\n')
    result = services.customers_import(path=path, skip_invalid=True)
    assert (result.rows, result.created, result.skipped) == (3, 1, 2)
    assert [str(e) for e in result.errors] == [
        "line 2, column 'external_id': external_id is missing",
        "line 3, column 'external_id': external_id is missing",
    ]
    assert list(Customer.objects.values_list("external_id", flat=True)) == ["A"]


def test_listing_stops_at_the_limit_and_says_there_were_more(tmp_path):
    lines = "".join(f"C{i},Klingon\n" for i in range(10))
    path = _write(tmp_path, "c.csv", "external_id,language\n" + lines)
    with pytest.raises(services.CustomerRowsError) as error:
        services.customers_import(path=path, max_errors=3)
    assert len(error.value.errors) == 3 and error.value.more
    assert "reading stopped after 3 bad rows" in str(error.value)


def test_reimport_upserts_by_external_id_and_counts_unchanged_rows(tmp_path):
    path = _write(tmp_path, "c.jsonl", '{"external_id": "C1", "value_tier": "low"}\n')
    assert services.customers_import(path=path).created == 1
    path.write_text(
        '{"external_id": "C1", "value_tier": "high", "language": "de"}\n{"external_id": "C2"}\n'
    )
    result = services.customers_import(path=path)
    assert (result.created, result.updated, result.unchanged) == (1, 1, 0)
    assert services.customers_import(path=path).unchanged == 2
    customer = Customer.objects.get(external_id="C1")
    assert (customer.language, customer.attributes) == ("de", {"value_tier": "high"})


def test_an_import_recounts_segments_and_their_summaries(tmp_path):
    segment = SegmentFactory(slug="high", rules={"value_tier": "high"})
    path = _write(
        tmp_path,
        "c.csv",
        "external_id,value_tier,region\nA,high,north\nB,high,south\nC,low,south\nD,high,south\n",
    )
    services.customers_import(path=path)
    segment.refresh_from_db()
    assert segment.member_count == 3
    assert segment.summary["region"] == {"south": 0.6667, "north": 0.3333}


def test_the_import_through_a_saved_source_records_what_it_did(tmp_path):
    source = services.customer_source_save(slug="Acme CDP", mapping=CDP_MAPPING)
    assert source.slug == "acme-cdp"
    path = _write(tmp_path, "cdp.csv", "CUST_ID,TIER,AGE\nX1,low,30\nX2,high,50\n")
    services.customers_import(path=path, source=source)
    source.refresh_from_db()
    assert source.last_import["created"] == 2 and source.last_import["file"] == "cdp.csv"
    assert Customer.objects.get(external_id="X2").attributes == {"value_tier": "high", "age": 50}


def test_the_command_saves_a_mapping_and_prints_a_summary(tmp_path, capsys):
    mapping = _write(tmp_path, "mapping.json", json.dumps(CDP_MAPPING))
    path = _write(tmp_path, "cdp.csv", "CUST_ID,TIER\nX1,low\nX2,gold\n")
    call_command(
        "import_customers", str(path), "--source", "acme", "--mapping", str(mapping),
        "--skip-invalid",
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert "2 rows read; 1 created" in out and "1 bad row(s) skipped" in out
    assert "skipped line 3, column 'TIER': 'gold' is not one of" in err
    assert CustomerSource.objects.get().slug == "acme"

    with pytest.raises(CommandError, match=r"Unknown source .nope.\. Known sources: acme"):
        call_command("import_customers", str(path), "--source", "nope")
    with pytest.raises(CommandError, match="1 bad row"):
        call_command("import_customers", str(path), "--source", "acme")


def test_the_api_imports_parquet_through_a_source_and_lists_bad_rows(tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.review.test_rest_api import API, as_, imported

    services.customer_source_save(slug="acme", mapping=CDP_MAPPING)
    path = _parquet(tmp_path, "x.parquet", {"CUST_ID": ["P1", "P2"], "TIER": ["low", "gold"]})
    upload = SimpleUploadedFile("export.parquet", path.read_bytes())
    record = imported(as_("write"), f"{API}/imports/customers/", {"file": upload, "source": "acme"})
    assert record["status"] == "failed" and record["source"] == "acme"
    failure = record["failure"]
    assert failure["errors"] == ["row 2, column 'TIER': 'gold' is not one of low, medium, high"]
    assert failure["line"] == 2 and not Customer.objects.exists()

    upload = SimpleUploadedFile("export.parquet", path.read_bytes())
    record = imported(
        as_("write"),
        f"{API}/imports/customers/",
        {"file": upload, "source": "acme", "skip_invalid": "true"},
    )
    assert record["status"] == "done", record
    counted = ("created", "updated", "unchanged", "rows", "skipped", "errors")
    assert {k: record["result"][k] for k in counted} == {
        "created": 1, "updated": 0, "unchanged": 0, "rows": 2, "skipped": 1,
        "errors": ["row 2, column 'TIER': 'gold' is not one of low, medium, high"],
    }  # fmt: skip

    response = as_("write").post(
        f"{API}/imports/customers/",
        {"file": SimpleUploadedFile("e.csv", b"external_id\nZ\n"), "source": "ghost"},
    )
    assert response.status_code == 400 and "Unknown source 'ghost'" in str(response.json())


# --- erasing ---------------------------------------------------------------------------


def test_erasing_a_customer_removes_them_and_their_one_to_one_variants():
    from tests.factories import VariantFactory

    customer = CustomerFactory(external_id="GONE")
    VariantFactory(customer=customer, segment=None)
    kept = VariantFactory()
    segment = SegmentFactory(rules={"value_tier": "high"})
    services.segments_refresh()
    segment.refresh_from_db()
    before = segment.member_count

    assert services.customer_erase(external_id="GONE") == {"customer": 1, "variants": 1}

    assert not Customer.objects.filter(external_id="GONE").exists()
    assert list(customer.variants.all()) == []
    assert kept.__class__.objects.filter(pk=kept.pk).exists()
    segment.refresh_from_db()
    assert segment.member_count == before - 1
    with pytest.raises(services.CustomerNotFound, match="GONE"):
        services.customer_erase(external_id="GONE")


def test_segment_summaries_leave_out_identifiers_and_rule_attributes():
    for i in range(60):
        CustomerFactory(attributes={"value_tier": "high", "email": f"p{i}@x.io", "region": "n"})
    segment = SegmentFactory(rules={"value_tier": "high"})
    services.segments_refresh()
    segment.refresh_from_db()
    assert segment.member_count == 60
    assert set(segment.summary) == {"region", "language"}
    assert Segment.objects.count() == 1


def test_an_attribute_value_over_the_text_limit_is_a_bad_row_without_a_mapping_too(tmp_path):
    """Issue 15: with no mapping, a 20 MB JSONL value imported fine."""
    huge = "x" * (audience.TEXT_MAX + 1)
    path = _write(
        tmp_path, "customers.jsonl", json.dumps({"external_id": "C1", "note": huge}) + "\n"
    )
    [row] = list(audience.read_customers(path))
    assert isinstance(row, RowError)
    assert row.column == "note" and f"longer than {audience.TEXT_MAX} characters" in str(row)


def test_a_parquet_chunk_that_would_decompress_past_its_values_is_refused_unread(tmp_path):
    """Issue 15: a 10 KB Parquet file of one zstd-compressed 300 MB string took a web
    worker to 5.9 GB. The metadata says how big it inflates; that is checked first."""
    path = tmp_path / "bomb.parquet"
    table = pa.table({"external_id": ["C1"], "note": ["x" * 3_000_000]})
    pq.write_table(table, path, compression="zstd")
    assert path.stat().st_size < 50_000

    with pytest.raises(ImportFileError) as caught:
        list(read_customers(path))

    assert caught.value.column == "note"
    assert "bytes uncompressed for 1 rows" in str(caught.value)


def test_a_json_line_past_the_line_limit_is_a_bad_row_and_the_next_is_read(tmp_path):
    long = json.dumps({"external_id": "C1", "note": "x" * (audience.LINE_MAX_BYTES + 10)})
    path = _write(tmp_path, "customers.jsonl", long + "\n" + '{"external_id": "C2"}\n')

    rows = list(read_customers(path))

    assert isinstance(rows[0], RowError) and "longer than 1,048,576 bytes" in str(rows[0])
    assert isinstance(rows[1], CustomerRow) and rows[1].external_id == "C2"


def _reference_tally(segments, customers):
    """Each segment's (members, summary) counted the plain way, one customer and one
    value at a time, as text: what SegmentTally's batched count must equal."""
    from collections import Counter

    from generation.models import attribute_text

    personal = services_personal()
    # An attribute with too many distinct values among everyone counted (a member of
    # any segment) is an identifier: left out of every summary.
    counted = [c for c in customers if any(s.rules and s.matches(c) for s in segments)]
    distinct: dict[str, set[str]] = {}
    for customer in counted:
        for name, value in customer.items():
            if value is not None and value != "":
                distinct.setdefault(name, set()).add(attribute_text(value))
    results = []
    for segment in segments:
        members = [c for c in customers if segment.rules and segment.matches(c)]
        values: dict[str, Counter] = {}
        for customer in members:
            for name, value in customer.items():
                if value is None or value == "" or name in personal:
                    continue
                values.setdefault(name, Counter())[attribute_text(value)] += 1
        summary = {
            name: {v: round(c / len(members), 4) for v, c in counter.most_common()}
            for name, counter in sorted(values.items())
            if name not in segment.rules and len(distinct[name]) < services.SUMMARY_MAX_DISTINCT
        }
        results.append((len(members), summary))
    return results


def services_personal():
    from generation import prompting

    return prompting.personal_attributes()


def test_the_batched_segment_count_equals_counting_one_value_at_a_time(monkeypatch):
    """SegmentTally counts a batch's values in one C call, keyed by value and type:
    True and 1 are one dict key but not one rule answer or one summary value. Batches
    smaller than the data, values of both kinds in one attribute, a list (unhashable),
    a rule on the language, an identifier that overflows the distinct limit across
    batches, and a personal attribute all count as one at a time would."""
    from generation.services import audience as audience_services

    monkeypatch.setattr(audience_services, "_TALLY_BATCH", 7)
    segments = [
        Segment(slug="flagged", rules={"flag": True}),
        Segment(slug="one", rules={"flag": 1}),
        Segment(slug="german", rules={"language": "de"}),
        Segment(slug="none", rules={}),
        Segment(slug="tagged", rules={"tags": "a"}),  # a list's answer is not memoised
    ]
    customers = [
        {
            "flag": [True, 1, "1", 1.0, False][i % 5],
            "language": ["de", "en"][i % 2],
            "tier": ["low", "high", ""][i % 3],
            "ltv": [3, 3.0, 4.5][i % 3],
            "member": f"M{i}",  # one distinct value each: dropped from summaries
            "email": f"p{i % 4}@example.com",  # personal by its name
            **({"tags": ["a", "b"]} if i == 40 else {}),
        }
        for i in range(120)
    ]
    expected = _reference_tally(segments, customers)
    tally = audience_services.SegmentTally(segments)
    tally.add_many(customers)
    assert tally.results() == expected
    flagged, one = expected[0], expected[1]
    assert flagged[0] == 24 and one[0] == 72  # True; 1, "1" and 1.0
    assert "member" not in flagged[1] and "email" not in flagged[1]
    assert expected[2][1]["flag"]["true"] == round(12 / 60, 4)


def test_every_repeated_external_id_names_the_line_it_was_first_on(tmp_path):
    """The ids read so far are kept without a line object each; the first repeat
    builds the index of where each id was, and ids read after it are found too."""
    ids = ["A", "B", "C", "A", "D", "B", "E", "D", "A"]
    path = tmp_path / "c.csv"
    path.write_text("external_id\n" + "".join(f"{i}\n" for i in ids), encoding="utf-8")
    errors = [r for r in audience.read_customers(path) if isinstance(r, audience.RowError)]
    assert [(e.line, e.message) for e in errors] == [
        (5, "external_id 'A' appears on line 2 and line 5"),
        (7, "external_id 'B' appears on line 3 and line 7"),
        (9, "external_id 'D' appears on line 6 and line 9"),
        (10, "external_id 'A' appears on line 2 and line 10"),
    ]
