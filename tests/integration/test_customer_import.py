"""The customer import's two writers: COPY into a staging table and one upsert on
PostgreSQL, batches of upserts on SQLite. Whichever runs, an import counts what it
created, changed and left alone, and a bad file, a value the database refuses or an
interruption mid-stream writes nothing. The COPY tests skip on SQLite; CI runs this
file on PostgreSQL too (DATABASE_URL)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from generation import imports, services
from generation.models import Customer, PersonalAttribute, Segment
from tests.factories import CustomerFactory, SegmentFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

# More rows than one batch (CUSTOMER_BATCH_SIZE), so that the writers' batching counts.
ROWS = services.CUSTOMER_BATCH_SIZE * 2 + 500


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Several COPY chunks a file, each upserted while the next is read."""
    from generation.services import catalog

    monkeypatch.setattr(catalog, "COPY_CHUNK_ROWS", 1000)


def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the COPY path is PostgreSQL's")


def _customers_csv(tmp_path: Path, rows: int, *, tier=lambda i: "low", extra: str = "") -> Path:
    path = tmp_path / "customers.csv"
    lines = "".join(f"C{i:05d},{tier(i)},north\n" for i in range(rows))
    path.write_text("external_id,value_tier,region\n" + lines + extra, encoding="utf-8")
    return path


def _received(body: bytes, name: str = "cdp.jsonl"):
    return imports.receive(
        SimpleUploadedFile(name, body), kind="customers", requested_by="lead", via="web"
    )


def test_postgresql_streams_rows_by_copy_and_upserts_them_a_chunk_at_a_time(tmp_path):
    _postgresql_only()
    path = _customers_csv(tmp_path, ROWS)

    with CaptureQueriesContext(connection) as queries:
        result = services.customers_import(path=path)

    assert (result.created, result.updated, result.unchanged) == (ROWS, 0, 0)
    assert Customer.objects.count() == ROWS
    table = connection.ops.quote_name(Customer._meta.db_table)
    writes = [q["sql"] for q in queries if f"INSERT INTO {table}" in q["sql"]]
    # One statement a chunk of COPY'd rows (COPY itself goes by the side of Django's log).
    assert len(writes) == 5, writes
    assert all("FROM hyperpers_customer_import" in sql for sql in writes)
    assert Customer.objects.get(external_id="C00042").attributes == {
        "value_tier": "low",
        "region": "north",
    }


def test_a_reimport_counts_created_changed_and_unchanged_and_stamps_only_what_changed(tmp_path):
    path = _customers_csv(tmp_path, ROWS)
    services.customers_import(path=path)
    long_ago = timezone.now() - timedelta(days=30)
    Customer.objects.update(created=long_ago, updated=long_ago)

    changed = {7, ROWS - 1}  # one in the first batch, one in the last
    path = _customers_csv(
        tmp_path,
        ROWS,
        tier=lambda i: "high" if i in changed else "low",
        extra="NEW1,medium,south\n",
    )
    result = services.customers_import(path=path)

    assert (result.created, result.updated, result.unchanged) == (1, 2, ROWS - 2)
    moved = set(Customer.objects.filter(updated__gt=long_ago).values_list("external_id", flat=True))
    assert moved == {"C00007", f"C{ROWS - 1:05d}", "NEW1"}
    assert Customer.objects.get(external_id="C00007").created == long_ago
    assert Customer.objects.get(external_id="C00007").attributes["value_tier"] == "high"


def test_a_bad_row_after_thousands_of_good_ones_writes_nothing(tmp_path):
    CustomerFactory(external_id="C00003", attributes={"value_tier": "medium"})
    path = _customers_csv(tmp_path, ROWS, extra="BAD,gold,north\n,low,north\n")

    with pytest.raises(services.CustomerRowsError) as error:
        services.customers_import(
            path=path, source=services.customer_source_save(slug="cdp", mapping=_TIERS)
        )

    assert [(e.line, e.column) for e in error.value.errors] == [
        (ROWS + 2, "value_tier"),
        (ROWS + 3, "external_id"),
    ]
    # The rows already streamed to the database went back with the import; the
    # connection is usable after the aborted COPY.
    assert list(Customer.objects.values_list("external_id", "attributes")) == [
        ("C00003", {"value_tier": "medium"})
    ]


_TIERS = {
    "columns": {
        "external_id": "external_id",
        "value_tier": {"attribute": "value_tier", "type": "choice", "choices": ["low", "high"]},
        "region": "region",
    }
}


@pytest.mark.parametrize(
    "record",
    [
        {"external_id": "C2", "note": "a\u0000b"},  # refused by the server, inside the COPY
        {"external_id": "C\u00002"},  # refused by the driver, before it is sent
    ],
    ids=["in-an-attribute", "in-the-external-id"],
)
def test_a_nul_byte_postgresql_refuses_fails_the_import_and_writes_nothing(record):
    _postgresql_only()
    CustomerFactory(external_id="KEPT", attributes={"value_tier": "low"})
    lines = [{"external_id": f"C{i:05d}", "value_tier": "high"} for i in range(ROWS)]
    body = "\n".join(json.dumps(r) for r in [*lines, record]).encode()

    done = imports.execute(import_id=_received(body).pk, claim="t1")

    assert done.status == "failed", done.result
    assert "the database refused the data (DataError" in done.failure["file"][0]
    assert list(Customer.objects.values_list("external_id", flat=True)) == ["KEPT"]


def test_an_import_interrupted_mid_stream_is_failed_and_writes_nothing(tmp_path):
    body = "".join(json.dumps({"external_id": f"C{i:05d}"}) + "\n" for i in range(ROWS))
    record = _received(body.encode())
    told = []

    def stop_after_the_first_batch(reading):
        told.append(reading.rows)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        imports.execute(import_id=record.pk, claim="cli-1", progress=stop_after_the_first_batch)

    record.refresh_from_db()
    assert told and told[0] < ROWS  # it stopped mid-file
    assert record.status == "failed" and "interrupted" in record.failure["file"][0]
    assert not Customer.objects.exists()


def test_the_recorded_import_reports_counts_segments_and_personal_values(tmp_path):
    segment = SegmentFactory(slug="high", rules={"value_tier": "high"})
    lines = [
        {"external_id": f"C{i:05d}", "value_tier": "high" if i % 4 == 0 else "low",
         "contact": f"person{i}@example.com"}
        for i in range(ROWS)
    ]  # fmt: skip
    body = "".join(json.dumps(r) + "\n" for r in lines).encode()

    done = imports.execute(import_id=_received(body).pk, claim="t1")

    assert done.status == "done", done.failure
    assert {k: done.result[k] for k in ("rows", "created", "updated", "unchanged")} == {
        "rows": ROWS, "created": ROWS, "updated": 0, "unchanged": 0,
    }  # fmt: skip
    assert imports.progress(done)["done"] == 1.0
    segment.refresh_from_db()
    assert segment.member_count == len(range(0, ROWS, 4))
    # Found personal by its values: never counted in a summary.
    assert PersonalAttribute.objects.filter(name="contact").exists()
    assert "contact" not in Segment.objects.get(pk=segment.pk).summary


def test_the_segments_counted_during_the_import_match_a_recount_from_the_database(tmp_path):
    """PostgreSQL counts the segments as the rows stream when the file names every
    customer, and recounts from the database when it does not: either way the result
    is what a recount finds."""
    high = SegmentFactory(slug="high", rules={"value_tier": "high"})
    north = SegmentFactory(slug="north-young", rules={"region": "north", "age": {"lt": 30}})
    lines = [
        {"external_id": f"C{i:05d}", "value_tier": ["low", "high"][i % 2],
         "region": ["north", "south"][i % 3 == 0], "age": 18 + i % 40,
         "contact": f"p{i % 3}@example.com", "club": ["gold", "silver"][i % 2]}
        for i in range(ROWS)
    ]  # fmt: skip
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")

    def assert_as_recounted() -> None:
        segments = [high, north]
        recounted = services.segment_tallies(segments)
        for segment, (members, summary) in zip(segments, recounted, strict=True):
            segment.refresh_from_db()
            assert (segment.member_count, segment.summary) == (members, summary), segment.slug

    services.customers_import(path=path)  # every customer is in the file
    assert_as_recounted()
    assert high.member_count == len(range(1, ROWS, 2))
    # Personal by its values, found during this import: left out, as a recount does.
    assert "contact" not in high.summary and high.summary["club"] == {"silver": 1.0}

    for i in range(30):  # not in the file: counted from the database
        CustomerFactory(
            external_id=f"OLD{i}",
            language="de",
            attributes={"value_tier": "high", "region": "south", "age": 20 + i},
        )
    services.customers_import(path=path)
    assert_as_recounted()
    assert high.member_count == 30 + len(range(1, ROWS, 2))
