"""Catalog and audience data in: product and customer imports, sources, erasure."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from generation import (
    audience,
    checks,
    prompting,
    signals,
)
from generation.audience import CustomerRow, Reading, RowError
from generation.errors import NotFound
from generation.importers import ImportFileError, read_products
from generation.models import (
    Customer,
    CustomerSource,
    PersonalAttribute,
    Product,
    Prompt,
    Segment,
    Variant,
)
from generation.services.audience import SegmentTally, segments_refresh

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


def _upsert(
    model: type[Product], key: str, rows: list[dict[str, Any]], fields: list[str]
) -> ImportResult:
    """Create or update `rows` keyed by `key`, in the caller's transaction."""
    existing = {
        getattr(obj, key): obj
        for obj in model.objects.filter(**{f"{key}__in": [r[key] for r in rows]})
    }
    to_create, to_update, unchanged = [], [], 0
    for row in rows:
        obj = existing.get(row[key])
        if obj is None:
            to_create.append(model(**row))
        elif any(getattr(obj, f) != row[f] for f in fields):
            for f in fields:
                setattr(obj, f, row[f])
            to_update.append(obj)
        else:
            unchanged += 1
    model.objects.bulk_create(to_create, batch_size=BATCH_SIZE)
    model.objects.bulk_update(to_update, [*fields, "updated"], batch_size=BATCH_SIZE)
    return ImportResult(created=len(to_create), updated=len(to_update), unchanged=unchanged)


def products_import(*, path: Path, store_views: dict[str, str] | None = None) -> ImportResult:
    """1. Read and validate the whole file (raises ImportFileError, nothing written).
    2. Upsert by SKU in one transaction."""
    rows = read_products(path, store_views=store_views)
    fields = ["name", "category", "subcategory", "description", "attributes", "translations"]
    now = timezone.now()
    with transaction.atomic():
        result = _upsert(
            Product,
            "sku",
            [{"sku": r.sku, "updated": now, **{f: getattr(r, f) for f in fields}} for r in rows],
            fields,
        )
        # Bulk writes send no post_save: tell delivery the base copy changed.
        signals.live_copy_changed.send(sender=Product)
    return result


MAX_LISTED_ERRORS = 50
CUSTOMER_BATCH_SIZE = 2000


class CustomerRowsError(ImportFileError):
    """Bad rows in a customer file, when the import was asked to write none of them.

    ``line`` and ``column`` are the first bad row's; the message lists up to
    MAX_LISTED_ERRORS of them."""

    def __init__(self, path: Path | str, errors: list[RowError], *, more: bool) -> None:
        self.errors = errors
        self.more = more
        first = errors[0]
        listed = "\n".join(f"  {e}" for e in errors)
        tail = f"\n  ... reading stopped after {len(errors)} bad rows" if more else ""
        count = f"{len(errors)}{'+' if more else ''}"
        super().__init__(
            path,
            first.line,
            first.column,
            f"{count} bad row(s); nothing was imported (--skip-invalid imports the good "
            f"rows):\n{listed}{tail}",
        )


@dataclass(frozen=True)
class CustomerImportResult(ImportResult):
    rows: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)
    more_errors: bool = False
    segments: int = 0
    seconds: float = 0.0
    # attribute → why its values made it personal (it never reaches an endpoint)
    personal: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = super().__str__()
        if self.skipped:
            text += f", {self.skipped} bad row(s) skipped"
        if self.personal:
            found = "; ".join(f"{a} ({why})" for a, why in self.personal.items())
            text += f". Marked personal, never sent to an endpoint nor summarised: {found}"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "errors": [str(e) for e in self.errors],
            "segments": self.segments,
            "seconds": round(self.seconds, 2),
            "personal": self.personal,
        }


# A customer's attributes as the database stores them. One encoder for the whole import:
# json.dumps with an option builds a new one for every row.
_attributes_json = json.JSONEncoder(ensure_ascii=False).encode


def _customers_upsert(batch: list[CustomerRow], now: datetime) -> tuple[int, int, int]:
    """Write one batch by external id: (created, updated, unchanged)."""
    existing = {
        external_id: (language, attributes)
        for external_id, language, attributes in Customer.objects.filter(
            external_id__in=[r.external_id for r in batch]
        ).values_list("external_id", "language", "attributes")
    }
    write = []
    created = unchanged = 0
    for row in batch:
        before = existing.get(row.external_id)
        if before is None:
            created += 1
        elif before == (row.language, row.attributes):
            unchanged += 1
            continue
        write.append(
            (
                row.external_id,
                row.language,
                _attributes_json(row.attributes),
                now,
                now,
            )
        )
    if write:
        _upsert_customer_rows(write)
    return created, len(write) - created, unchanged


def _upsert_customer_rows(rows: list[tuple[str, str, str, datetime, datetime]]) -> None:
    """One INSERT ... ON CONFLICT for new and changed rows alike, bypassing the ORM's
    per-value preparation (most of an import's time otherwise). SQLite and PostgreSQL
    share the syntax; PostgreSQL needs the JSON cast."""
    table = connection.ops.quote_name(Customer._meta.db_table)
    attributes = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    sql = (
        f"INSERT INTO {table} (external_id, language, attributes, created, updated) "
        f"VALUES (%s, %s, {attributes}, %s, %s) ON CONFLICT (external_id) DO UPDATE SET "
        "language = excluded.language, attributes = excluded.attributes, "
        "updated = excluded.updated"
    )
    field = Customer._meta.get_field("updated")
    stamp = field.get_db_prep_save(rows[0][3], connection)
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(*row[:3], stamp, stamp) for row in rows])


class _BatchWriter:
    """Upserts rows CUSTOMER_BATCH_SIZE at a time (_customers_upsert): any database,
    and the one SQLite (the demo's) takes."""

    # The segments are recounted from the database once the rows are written.
    tally = None

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.batch: list[CustomerRow] = []
        self.counts = (0, 0, 0)

    def __enter__(self) -> _BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.batch.clear()

    def add(self, row: CustomerRow) -> None:
        self.batch.append(row)
        if len(self.batch) >= CUSTOMER_BATCH_SIZE:
            self._flush()

    def finish(self) -> tuple[int, int, int]:
        """Write what is left: (created, updated, unchanged) over the whole import."""
        if self.batch:
            self._flush()
        return self.counts

    def _flush(self) -> None:
        written = _customers_upsert(self.batch, self.now)
        self.counts = (
            self.counts[0] + written[0],
            self.counts[1] + written[1],
            self.counts[2] + written[2],
        )
        self.batch.clear()


# Private to the session (TEMPORARY) and gone at its transaction's end (ON COMMIT DROP).
STAGING_TABLE = "hyperpers_customer_import"
# Rows a COPY sends before their upsert is queued: the server writes one chunk while
# the next is read from the file.
COPY_CHUNK_ROWS = 20_000


class _CopyWriter:
    """PostgreSQL: rows go by COPY into a temporary staging table, a chunk at a time,
    and one statement a chunk upserts them into the customers table.

    Row by row, even in batches of INSERTs, PostgreSQL's import ran at a fifth of the
    rate the file is read at: each row paid for its statement. A chunk's upsert is one
    statement that writes the new and changed rows and counts them. It is queued (psycopg's
    pipeline mode) and runs on the server while the next chunk is read here; only the
    next COPY waits for it (a COPY cannot be pipelined).

    It counts the segments' members as the rows go by (`tally`): reading every customer
    back after the write cost as much as the write. When the database holds customers
    the file does not name, that count is not the whole and `tally` is None: the
    segments are recounted from the database, as before.

    Used as a context manager inside the import's transaction: leaving it on an
    exception ends the pipeline, and the transaction's rollback takes everything back.
    """

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.tally: SegmentTally | None = SegmentTally(list(Segment.objects.all()))
        self.pending: list[tuple[str, str, str]] = []
        self.staged = 0
        self.upserts: list[Any] = []  # a cursor per chunk, read at the end
        self._open = ExitStack()  # the cursor and the chunks' cursors
        self._queued = ExitStack()  # the pipeline while a chunk's upsert runs

    def __enter__(self) -> _CopyWriter:
        with ExitStack() as opening, connection.wrap_database_errors:
            self._cursor = opening.enter_context(connection.cursor())
            # Two imports in one transaction (a test's) would find the first's table.
            self._cursor.execute(f"DROP TABLE IF EXISTS {STAGING_TABLE}")
            # The customers table's own types: a value too long fails the COPY.
            self._cursor.execute(
                f"CREATE TEMPORARY TABLE {STAGING_TABLE} ON COMMIT DROP AS SELECT "
                f"external_id, language, attributes FROM {_customers()} WITH NO DATA"
            )
            self._open = opening.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        # On an exception (bad rows, the worker stopping) the pipeline ends first: the
        # connection is then usable for the rollback.
        with connection.wrap_database_errors:
            try:
                self._queued.__exit__(*exc)
            finally:
                self._open.__exit__(*exc)

    def add(self, row: CustomerRow) -> None:
        self.pending.append((row.external_id, row.language, _attributes_json(row.attributes)))
        if self.tally is not None:
            self.tally.add({**row.attributes, "language": row.language})
        if len(self.pending) >= COPY_CHUNK_ROWS:
            self._send()

    def _send(self) -> None:
        """COPY the pending rows as the next chunk, and queue their upsert."""
        if not self.pending:
            return
        # psycopg's own errors (a NUL byte in a text) become Django's, which the
        # import reports as "the database refused the data".
        with connection.wrap_database_errors:
            self._queued.close()  # waits for the last chunk's upsert
            copying = self._cursor.copy(
                f"COPY {STAGING_TABLE} (external_id, language, attributes) FROM STDIN"
            )
            with copying as copy:
                for values in self.pending:
                    copy.write_row(values)
            self.staged += len(self.pending)
            self.pending.clear()
            self._queued.enter_context(connection.connection.pipeline())
            upsert = self._open.enter_context(connection.cursor())
            upsert.execute(
                _STAGED_UPSERT.format(staging=STAGING_TABLE, customers=_customers()),
                {"now": self.now},
            )
            # Emptied for the next chunk, so that no upsert reads the rows before it.
            self._cursor.execute(f"TRUNCATE {STAGING_TABLE}")
        self.upserts.append(upsert)

    def finish(self) -> tuple[int, int, int]:
        """Write the last chunk and wait for every upsert: (created, updated,
        unchanged)."""
        self._send()
        with connection.wrap_database_errors:
            self._queued.close()
            created = written = 0
            for upsert in self.upserts:
                chunk_created, chunk_written = upsert.fetchone()
                created, written = created + chunk_created, written + chunk_written
            # Every staged row is a customer now: as many customers, and none is another.
            self._cursor.execute(f"SELECT count(*) FROM {_customers()}")
            if self._cursor.fetchone()[0] != self.staged:
                self.tally = None
            self._cursor.execute(f"DROP TABLE {STAGING_TABLE}")
        return created, written - created, self.staged - written


def _customers() -> str:
    return connection.ops.quote_name(Customer._meta.db_table)


# A chunk's new and changed rows in one statement that also counts them. An unchanged
# row is left alone, `updated` and all (ON CONFLICT's WHERE: one index probe a row); a
# new one has the import's own `created` stamp, where an older customer keeps theirs.
# The file has each external id once (the reader refuses a repeat), so no row is
# upserted twice.
_STAGED_UPSERT = """
WITH written AS (
    INSERT INTO {customers} (external_id, language, attributes, created, updated)
    SELECT external_id, language, attributes, %(now)s, %(now)s FROM {staging}
    ON CONFLICT (external_id) DO UPDATE SET
        language = excluded.language, attributes = excluded.attributes,
        updated = excluded.updated
    WHERE {customers}.language <> excluded.language
        OR {customers}.attributes <> excluded.attributes
    RETURNING created
)
SELECT count(*) FILTER (WHERE created = %(now)s), count(*) FROM written
"""


def _customer_writer(now: datetime) -> _BatchWriter | _CopyWriter:
    """COPY on PostgreSQL, where most instances run; batches of upserts elsewhere."""
    return _CopyWriter(now) if connection.vendor == "postgresql" else _BatchWriter(now)


def customers_import(
    *,
    path: Path,
    source: CustomerSource | None = None,
    skip_invalid: bool = False,
    max_errors: int = MAX_LISTED_ERRORS,
    progress: Callable[[Reading], None] | None = None,
) -> CustomerImportResult:
    """Import a customer file, streamed, in bounded memory.

    1. Read the file through the source's column mapping (without a source, the file
       uses our column names), one record at a time.
    2. Upsert good rows by external id in batches, all in one transaction.
    3. A bad row: without `skip_invalid`, writing stops, reading goes on to list up to
       `max_errors` bad rows, and CustomerRowsError rolls everything back. With it,
       the bad rows are reported (up to `max_errors` listed) and the rest imported.
    4. Recompute every segment's members and summary, and record the import on the
       source.
    """
    started = time.monotonic()
    mapping = audience.Mapping.parse(source.mapping) if source is not None else None
    reading = audience.Reading()
    errors: list[RowError] = []
    more = False
    added = 0
    now = timezone.now()
    watch = checks.PersonalValues()

    with transaction.atomic(), _customer_writer(now) as writer:
        for item in audience.read_customers(path, mapping=mapping, reading=reading):
            if isinstance(item, RowError):
                if len(errors) < max_errors:
                    errors.append(item)
                else:
                    more = True
                    if not skip_invalid:
                        break
                continue
            if errors and not skip_invalid:
                continue  # doomed: read on only to list the bad rows
            writer.add(item)
            watch.add(item.attributes)
            added += 1
            if progress is not None and added % CUSTOMER_BATCH_SIZE == 0:
                progress(reading)
        if errors and not skip_invalid:
            raise CustomerRowsError(path, errors, more=more)
        counts = writer.finish()
        if progress is not None:
            reading.done = 1.0
            progress(reading)
        good = reading.rows - reading.bad
        if not good:
            raise ImportFileError(
                path,
                None,
                None,
                "the file has no customers" if not reading.rows else "no row could be imported",
            )
        # Before the summaries: they never hold a personal attribute.
        known = prompting.personal_attributes()
        personal = {name: why for name, why in watch.found().items() if name not in known}
        for name, why in personal.items():
            PersonalAttribute.objects.get_or_create(name=name, defaults={"reason": why})
        segments = segments_refresh(tally=writer.tally)
        result = CustomerImportResult(
            created=counts[0],
            updated=counts[1],
            unchanged=counts[2],
            rows=reading.rows,
            skipped=reading.bad,
            errors=errors,
            more_errors=more,
            segments=segments,
            seconds=time.monotonic() - started,
            personal=personal,
        )
        if source is not None:
            # Counts only: the listed errors quote values, which may be personal.
            totals = {k: v for k, v in result.as_json().items() if k != "errors"}
            source.last_import = {"file": Path(path).name, "at": now.isoformat(), **totals}
            source.save(update_fields=["last_import", "updated"])
    return result


@transaction.atomic
def customer_source_save(*, slug: str, name: str = "", mapping: object) -> CustomerSource:
    """Create or replace a source's column mapping; MappingError names what is wrong."""
    parsed = audience.Mapping.parse(mapping)
    slug = slugify(slug)
    if not slug:
        raise audience.MappingError("A source needs a name made of letters or digits")
    source, _ = CustomerSource.objects.update_or_create(
        slug=slug, defaults={"name": name or slug, "mapping": parsed.as_json()}
    )
    return source


@transaction.atomic
def customer_erase(*, external_id: str) -> dict[str, int]:
    """Erase a customer (GDPR art. 17): their row, their attributes and every
    one-to-one variant written for them, with those variants' review history and
    engagement. Engagement they caused on segment copy stays, without them.
    Returns what was removed; CustomerNotFound when there is no such customer."""
    customer = Customer.objects.select_for_update().filter(external_id=external_id).first()
    if customer is None:
        raise CustomerNotFound(f"No customer with external id '{external_id}'")
    variants = Variant.objects.filter(customer=customer)
    variant_count = variants.count()
    prompt_ids = set(variants.values_list("prompt_id", flat=True))
    products = set(variants.values_list("product_id", flat=True))
    attributes = customer.segment_attributes()
    customer.delete()  # cascades to the variants, their events and review history
    for product_id in products:
        for prompt_id in prompt_ids:
            signals.live_copy_changed.send(
                sender=Prompt, prompt_id=prompt_id, product_id=product_id
            )
    # Their segments lose a member now; summaries (shares) are recomputed with the
    # next import, as a full recount reads every customer.
    left = [s.pk for s in Segment.objects.exclude(rules={}) if s.matches(attributes)]
    Segment.objects.filter(pk__in=left, member_count__gt=0).update(
        member_count=F("member_count") - 1
    )
    logger.info("customer erased", extra={"variants": variant_count})
    return {"customer": 1, "variants": variant_count}


class CustomerNotFound(NotFound):
    pass
