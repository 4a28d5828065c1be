"""Imports as recorded jobs: an upload is written to disk and recorded as an Import,
and a worker imports it (tasks.import_run), so no web request reads a big file.

The command line records its imports the same way and runs them in place, so every
import, whoever sent it, is listed in one place with what it did. An import either
writes everything it reports or nothing (the services' transaction); a failed one
keeps where and why (file, line, column, every bad row listed).
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Protocol, cast

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from generation import audience, services
from generation.audience import MappingError, Reading
from generation.errors import ServiceError
from generation.importers import ImportFileError
from generation.models import CustomerSource, Import

logger = logging.getLogger(__name__)

PROGRESS_SECONDS = 0.5  # how often a running import tells its progress
PROGRESS_TTL = 24 * 3600
# The file kinds each import reads, by extension: the customer reader's own table.
FORMATS = {Import.Kind.PRODUCTS: {".csv": "csv"}, Import.Kind.CUSTOMERS: audience.FORMATS}
MAPPING_HINT = (
    "The file may name its columns its own way: read it through a column mapping (a source)."
)


class ImportRefused(ServiceError):
    """An upload that is not recorded at all: empty, or of a kind we do not read.
    `field` names the form field at fault."""

    default_field = "file"


class ImportTooLarge(ImportRefused):
    """Over IMPORT_MAX_BYTES (413)."""

    status = 413


def format_for(kind: str, file_name: str, named: str | None = None) -> str:
    """The format of an upload: the one named, else the file name's extension."""
    known = FORMATS[Import.Kind(kind)]
    formats = sorted(set(known.values()))
    if named:
        if named not in formats:
            raise ImportRefused(
                f"'{named}' is not a format we read: {', '.join(formats)}", field="format"
            )
        return named
    suffix = Path(file_name).suffix.lower()
    if suffix not in known:
        raise ImportRefused(
            f"Name the format ({' or '.join(formats)}): the file name '{file_name}' does not tell",
            field="format",
        )
    return known[suffix]


def _directory() -> Path:
    directory = Path(settings.IMPORT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _too_big(file_name: str, size: int) -> ImportTooLarge:
    return ImportTooLarge(
        f"{file_name} is {size / 1e6:,.1f} MB; an import takes at most "
        f"{settings.IMPORT_MAX_BYTES / 1e6:,.0f} MB (IMPORT_MAX_BYTES). Nothing was imported.",
        field="file",
    )


def _store(upload, target: Path) -> int:
    """Put an upload at `target` without holding it in memory: move Django's temporary
    file when there is one, else stream its chunks, stopping at IMPORT_MAX_BYTES."""
    temporary = getattr(upload, "temporary_file_path", None)
    if temporary is not None:
        shutil.move(temporary(), target)
        return target.stat().st_size
    written = 0
    try:
        with target.open("wb") as out:
            for chunk in upload.chunks():
                written += len(chunk)
                if written > settings.IMPORT_MAX_BYTES:
                    raise _too_big(upload.name, written)
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return written


def receive(
    upload,
    *,
    kind: str,
    requested_by: str,
    via: str,
    token_id: int | None = None,
    format: str | None = None,
    source: CustomerSource | None = None,
    options: dict | None = None,
) -> Import:
    """Record an upload (a Django UploadedFile) and queue its import.

    ImportRefused (nothing recorded) for a file over IMPORT_MAX_BYTES or of a format
    the import does not read."""
    name = Path(upload.name or "upload").name[:255]
    if upload.size is not None and upload.size > settings.IMPORT_MAX_BYTES:
        raise _too_big(name, upload.size)
    if upload.size == 0:
        raise ImportRefused(f"{name} is empty. Nothing was imported.", field="file")
    chosen = format_for(kind, name, format)
    target = _directory() / f"{uuid.uuid4().hex}.{chosen}"
    size = _store(upload, target)
    try:
        with transaction.atomic():
            record = Import.objects.create(
                kind=kind,
                file_name=name,
                size=size,
                format=chosen,
                path=str(target),
                source=source,
                options=options or {},
                requested_by=requested_by[:200],
                requested_by_token=token_id,
                via=via,
            )
            transaction.on_commit(lambda: queue(record.pk))
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return record


def queue(import_id: int) -> None:
    from generation.tasks import import_run

    import_run.delay(import_id)


def record_local(
    path: Path,
    *,
    kind: str,
    requested_by: str,
    source: CustomerSource | None = None,
    options: dict | None = None,
) -> Import:
    """Record an import of a file that is already on this machine (the command line):
    read in place, and never removed."""
    return Import.objects.create(
        kind=kind,
        file_name=str(path)[:255],
        size=path.stat().st_size if path.is_file() else 0,
        format=path.suffix.lower().lstrip("."),
        path=str(path),
        owns_file=False,
        source=source,
        options=options or {},
        requested_by=requested_by[:200],
        via="cli",
    )


# --- running ---------------------------------------------------------------------------


def progress_key(import_id: int) -> str:
    return f"hyperpers:import:{import_id}:progress"


def progress(record: Import) -> dict:
    """How far a running import has read: rows, bad rows, and the share of the file."""
    if record.status == Import.Status.DONE:
        rows = (record.result or {}).get("rows")
        return {"rows": rows, "bad": (record.result or {}).get("skipped", 0), "done": 1.0}
    return cache.get(progress_key(record.pk)) or {"rows": 0, "bad": 0, "done": 0.0}


class _Reporter:
    """Tells a running import's progress to the cache (its row is inside the import's
    transaction, which nobody else can see until the end), a few times a second."""

    def __init__(self, import_id: int, also: Callable[[Reading], None] | None) -> None:
        self.key, self.also, self.told = progress_key(import_id), also, 0.0

    def __call__(self, reading: Reading) -> None:
        if self.also is not None:
            self.also(reading)
        now = time.monotonic()
        if now - self.told >= PROGRESS_SECONDS or reading.done >= 1:
            self.told = now
            state = {
                "rows": reading.rows,
                "bad": reading.bad,
                "done": round(min(reading.done, 1.0), 4),
            }
            try:
                cache.set(self.key, state, PROGRESS_TTL)
            except Exception:  # progress is a courtesy: never fail an import over it
                logger.warning("import progress not stored (cache unreachable)", exc_info=True)


def _claim(import_id: int, claim: str) -> bool:
    """Take an import to run: a queued one, or one this same claim was running (the
    task retried after the database went away; its transaction was rolled back). It
    keeps its first start, so fail_abandoned counts from there. An import whose row
    another worker holds (PostgreSQL) is not taken, without waiting for it."""
    mine = Q(status=Import.Status.QUEUED) | Q(status=Import.Status.RUNNING, claim=claim[:64])
    try:
        with transaction.atomic():
            found = list(
                Import.objects.select_for_update(nowait=True, of=("self",))
                .filter(mine, pk=import_id)
                .values_list("pk", flat=True)
            )
            if not found:
                return False
            Import.objects.filter(pk=import_id).update(
                status=Import.Status.RUNNING,
                claim=claim[:64],
                started=Coalesce(F("started"), Value(timezone.now())),
            )
    except OperationalError:
        return False  # locked: running in another worker
    return True


def _failure(record: Import, exc: ImportFileError | MappingError) -> dict:
    """Where and what, under the name the file was sent as (never our path)."""
    if isinstance(exc, MappingError):
        return {
            "file": [f"{record.file_name}: {exc}. Nothing was imported."],
            "line": None,
            "column": None,
        }
    rows, more = (
        (exc.errors, exc.more) if isinstance(exc, services.CustomerRowsError) else ([], False)
    )
    if rows:
        message = f"{record.file_name}: {len(rows)}{'+' if more else ''} bad row(s)"
    else:
        message = str(ImportFileError(record.file_name, exc.line, exc.column, exc.message))
    failure = {
        "file": [f"{message}. Nothing was imported."],
        "line": exc.line,
        "column": None if exc.column is None else str(exc.column),
    }
    if rows:
        failure["errors"] = [str(e) for e in rows]
        failure["more"] = bool(more)
        if record.source_id is None and all(e.column == "external_id" for e in rows):
            failure["hint"] = MAPPING_HINT
    return failure


def _run(record: Import, reporter: _Reporter) -> dict:
    path = Path(record.path)
    if record.kind == Import.Kind.PRODUCTS:
        result = services.products_import(path=path, store_views=record.options.get("store_views"))
        return {"created": result.created, "updated": result.updated, "unchanged": result.unchanged}
    result = services.customers_import(
        path=path,
        source=record.source,
        skip_invalid=bool(record.options.get("skip_invalid")),
        max_errors=max(int(record.options.get("max_errors") or services.MAX_LISTED_ERRORS), 1),
        progress=reporter,
    )
    return result.as_json() | {"more_errors": result.more_errors}


def _failed(record: Import, message: str) -> dict:
    return {
        "file": [f"{record.file_name}: {message} Nothing was imported."],
        "line": None,
        "column": None,
    }


class _Busy(Exception):
    """Another worker holds the import's row lock: it is running there."""


def _attempt(record: Import, reporter: _Reporter) -> None:
    """Import the file into `record`'s result, or its failure: everything but the
    database's own errors ends here."""
    try:
        record.result = _run(record, reporter)
        record.status = Import.Status.DONE
        return
    except (ImportFileError, MappingError) as exc:
        record.failure = _failure(record, exc)
    except DatabaseError:
        raise
    except SoftTimeLimitExceeded:
        record.failure = _failed(
            record, f"the import ran past IMPORT_TIME_LIMIT ({settings.IMPORT_TIME_LIMIT} s)."
        )
    except Exception:
        logger.exception("import %s failed", record.pk)
        record.failure = _failed(
            record, "the import stopped on an unexpected error (it is in the worker's log)."
        )
    record.status = Import.Status.FAILED


def _finish(record: Import) -> None:
    record.finished = timezone.now()
    record.save(update_fields=["result", "failure", "status", "finished"])


def execute(
    *, import_id: int, claim: str, progress: Callable[[Reading], None] | None = None
) -> Import | None:
    """Run a recorded import once: the report on `result`, or where it failed on
    `failure` with nothing written. An import already finished, or running under
    another claim, is returned as it is; None when there is no such import.

    The data and the record's outcome commit together, under a lock on the record's
    row (PostgreSQL): a second delivery of the task while the first still runs (a
    visibility timeout shorter than the import) finds the row locked and leaves it.
    """
    if not _claim(import_id, claim):
        return Import.objects.filter(pk=import_id).first()
    reporter = _Reporter(import_id, progress)
    record = None
    try:
        with transaction.atomic():
            try:
                record = (
                    Import.objects.select_for_update(nowait=True, of=("self",))
                    .select_related("source")
                    .get(pk=import_id)
                )
            except OperationalError as exc:
                raise _Busy from exc
            if record.status != Import.Status.RUNNING or record.claim != claim[:64]:
                raise _Busy
            _attempt(record, reporter)
            _finish(record)
    except _Busy:
        return Import.objects.filter(pk=import_id).first()
    except (OperationalError, InterfaceError):
        raise  # the database went away: the task runs again under the same claim
    except DatabaseError as exc:
        # The data broke one of the database's rules (a NUL byte PostgreSQL refuses,
        # a value too long): rolled back, and said.
        logger.exception("import %s failed in the database", import_id)
        record = Import.objects.get(pk=import_id)
        record.failure = _failed(
            record, f"the database refused the data ({exc.__class__.__name__}: {str(exc)[:200]})."
        )
        record.status = Import.Status.FAILED
        _finish(record)
    except BaseException:
        # Ctrl-C in the command, the worker shutting down: rolled back; say so.
        Import.objects.filter(pk=import_id, status=Import.Status.RUNNING).update(
            status=Import.Status.FAILED,
            failure={
                "file": ["The import was interrupted. Nothing was imported."],
                "line": None,
                "column": None,
            },
            finished=timezone.now(),
        )
        _remove_file(import_id)
        raise
    if record.owns_file:
        Path(record.path).unlink(missing_ok=True)
    return record


def _remove_file(import_id: int) -> None:
    record = Import.objects.filter(pk=import_id).first()
    if record is not None and record.owns_file:
        Path(record.path).unlink(missing_ok=True)


def fail_abandoned(*, grace_seconds: float = 300) -> int:
    """Beat's net for an import whose worker was killed outright (the hard time limit,
    a lost machine): past IMPORT_TIME_LIMIT and a grace from its first start, it is not
    running any more. One still holding its row lock (PostgreSQL) is alive: skipped."""
    cutoff = timezone.now() - timedelta(seconds=settings.IMPORT_TIME_LIMIT + grace_seconds)
    with transaction.atomic():
        abandoned = list(
            Import.objects.select_for_update(skip_locked=True).filter(
                status=Import.Status.RUNNING, started__lt=cutoff
            )
        )
        for record in abandoned:
            record.failure = _failed(
                record, "its worker stopped before the end (killed, or past IMPORT_TIME_LIMIT)."
            )
            record.status = Import.Status.FAILED
            _finish(record)
    for record in abandoned:
        if record.owns_file:
            Path(record.path).unlink(missing_ok=True)
    return len(abandoned)


def requeue_stale(*, older_than_seconds: float = 600) -> int:
    """Beat's net: queue again the imports whose task was lost before it started (a
    broker restart between the upload and the worker)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stale = list(
        Import.objects.filter(status=Import.Status.QUEUED, created__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    for pk in stale:
        queue(pk)
    return len(stale)


def requester(user, token=None) -> str:
    if token is not None:
        return f"token {token.name}"
    return getattr(user, "username", "") or "someone"


class ShowsProgress(Protocol):
    """An import as its page and the API read it: with `.progress` (progress()), kept on
    the instance by with_progress(), as it comes from the cache and not from a column."""

    progress: dict


def with_progress(record: Import) -> Import:
    """The import with its progress attached (`.progress`), for a page or the API."""
    cast(ShowsProgress, record).progress = progress(record)
    return record


def listed(records: Iterable[Import]) -> list[Import]:
    """Imports with their progress attached (`.progress`), for a page or the API."""
    return [with_progress(record) for record in records]
