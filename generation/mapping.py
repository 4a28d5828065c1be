"""Column mapping for a CDP export, in the browser: the columns a file has, the mapping
we suggest for them, and the first rows read through a mapping with each error on its
cell, before anything is imported.

1. An upload is *staged* (stage()): streamed to disk under IMPORT_DIR/mapping/ as the
   import path stores uploads (never held whole; IMPORT_MAX_BYTES holds), with who sent
   it. Nothing is recorded in the database until the lead imports it.
2. Only the file's first SAMPLE_ROWS records are ever read here (sample()): to show
   sample values, to suggest a mapping (suggest(), pure) and to preview one
   (preview(), pure), by the customer reader's own rules (generation.audience), so the
   preview says what the import will say.
3. mapping_import() saves the mapping as a CustomerSource and hands the staged file to
   the path every upload takes (imports.receive): a recorded Import a worker runs.

A suggestion is a starting point the lead corrects, and it errs on the side that fails
loudly or protects people: only the external id is required (a required column empty
on row 90,000 fails the whole import), a column is personal when its name or most of
its values say so, and a choice's choices are what the sample holds.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyascii import anyascii
from django.conf import settings
from django.db import transaction

from generation import audience, checks, imports, services
from generation.audience import ATTRIBUTE_RE, Column, Mapping, MappingError, Reading
from generation.errors import NotFound, ServiceError
from generation.importers import ImportFileError
from generation.models import CustomerSource, Import

# Records read from the top of a file to suggest a mapping (types, choices); the
# preview shows the first PREVIEW_ROWS of them.
SAMPLE_ROWS = 100
PREVIEW_ROWS = 20
# The mapping page has a row per column: a wider file is mapped with a JSON mapping
# (manage.py import_customers --mapping).
COLUMNS_MAX = 200
SAMPLE_VALUES = 5  # distinct values shown beside a column
CHOICES_MAX = 12  # more distinct values than this in the sample: text, not a choice
CHOICE_LENGTH_MAX = 40
SHOWN_MAX = 80  # characters of a value the page shows
STAGED_SECONDS = 24 * 3600  # a staged upload nobody imported is removed after this
_TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")

# Column names (their words joined, as checks.attribute_tokens reads them) that hold a
# customer's id in CDP exports; a name ending in one of _ID_WORDS may too.
_ID_NAMES = frozenset(
    {"externalid", "customerid", "custid", "clientid", "userid", "contactid", "profileid",
     "personid", "memberid", "accountid", "id", "uid", "kundenid", "kundennummer",
     "kundennr", "customernumber", "customerno", "clientnumber"}
)  # fmt: skip
_ID_WORDS = frozenset({"id", "uid", "nr", "nummer", "number", "no"})
_LANGUAGE_NAMES = frozenset(
    {"language", "lang", "preferredlanguage", "languagecode", "languagetag", "locale",
     "sprache", "langue", "idioma", "lingua", "taal"}
)  # fmt: skip
_LEADING_ZERO = re.compile(r"^[+-]?0\d")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


class MappingRefused(ServiceError):
    """An upload or a mapping the page cannot take; nothing was written."""


class MappingTooLarge(MappingRefused):
    """Over IMPORT_MAX_BYTES (413), as imports.ImportTooLarge."""

    status = 413


class StagedUploadGone(NotFound):
    default_field = None


# --- staged uploads ------------------------------------------------------------------


@dataclass(frozen=True)
class Staged:
    """An upload waiting on disk for its mapping."""

    token: str
    path: Path
    name: str  # as it was sent
    size: int
    format: str
    user_id: int


def _staging() -> Path:
    directory = Path(settings.IMPORT_DIR) / "mapping"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _prune(directory: Path) -> None:
    """Remove uploads staged more than STAGED_SECONDS ago: leads who never imported."""
    cutoff = time.time() - STAGED_SECONDS
    for path in directory.iterdir():
        with contextlib.suppress(OSError):  # another request removed it meanwhile
            if path.stat().st_mtime < cutoff:
                path.unlink()


def stage(upload: Any, *, user_id: int) -> Staged:
    """Stream an upload (a Django UploadedFile) to disk and check that it is a customer
    file whose columns can be mapped. MappingRefused (413 over IMPORT_MAX_BYTES) names
    what is wrong, and nothing is kept."""
    name = Path(upload.name or "upload").name[:255]
    if upload.size is not None and upload.size > settings.IMPORT_MAX_BYTES:
        raise _refused(imports._too_big(name, upload.size))
    if upload.size == 0:
        raise MappingRefused(f"{name} is empty.", field="file")
    try:
        chosen = imports.format_for(Import.Kind.CUSTOMERS, name)
    except imports.ImportRefused as exc:
        raise MappingRefused(exc.message, field="file") from exc
    directory = _staging()
    _prune(directory)
    token = uuid.uuid4().hex
    path = directory / f"{token}.{chosen}"
    try:
        size = imports._store(upload, path)
    except imports.ImportTooLarge as exc:
        raise _refused(exc) from exc
    staged = Staged(token, path, name, size, chosen, user_id)
    try:
        sample(staged)  # the file's own faults, now, while the lead is at the upload
        meta = {"name": name, "size": size, "format": chosen, "user_id": user_id}
        _meta_path(directory, token).write_text(json.dumps(meta), encoding="utf-8")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return staged


def _refused(exc: imports.ImportTooLarge) -> MappingTooLarge:
    return MappingTooLarge(exc.message.replace(" Nothing was imported.", ""), field="file")


def _meta_path(directory: Path, token: str) -> Path:
    return directory / f"{token}.json"


def _gone() -> StagedUploadGone:
    return StagedUploadGone(
        "This upload is no longer here (an upload waits a day for its mapping, and is "
        "gone once imported): upload the file again."
    )


def staged(token: str, *, user_id: int) -> Staged:
    """The upload `token` names, if this user staged it and it is still there."""
    gone = _gone()
    if not _TOKEN_RE.match(token):
        raise gone
    directory = _staging()
    try:
        meta = json.loads(_meta_path(directory, token).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise gone from None
    path = directory / f"{token}.{meta['format']}"
    if meta.get("user_id") != user_id or not path.is_file():
        raise gone
    return Staged(token, path, meta["name"], meta["size"], meta["format"], user_id)


# --- the sample ------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One record of the sample: its line (Parquet: row), its values by column, or why
    the reader could not read it as a record."""

    line: int
    values: dict[str, Any]
    error: str = ""


@dataclass(frozen=True)
class Sample:
    columns: list[str]
    records: list[Record]
    unit: str = "line"


def sample(staged: Staged, *, rows: int = SAMPLE_ROWS) -> Sample:
    """The file's columns and its first `rows` records, read by the customer reader
    (nothing past them). MappingRefused for a file that cannot be read or mapped."""
    reader = audience._READERS[staged.format]  # the import's own reader, not a copy
    records: list[Record] = []
    try:
        columns = _csv_header(staged) if staged.format == "csv" else []
        for line, record in reader(staged.path, staged.name, [], Reading()):
            if isinstance(record, audience._Bad):
                records.append(Record(line, {}, record.message))
            else:
                records.append(Record(line, record))
            if len(records) >= rows:
                break
        if staged.format == "parquet":
            import pyarrow.parquet as pq

            columns = list(pq.ParquetFile(staged.path).schema_arrow.names)
    except ImportFileError as exc:
        raise MappingRefused(str(exc), field="file") from exc
    except FileNotFoundError as exc:  # imported (or pruned) by another request meanwhile
        raise _gone() from exc
    if staged.format == "jsonl":
        columns = list(dict.fromkeys(c for r in records for c in r.values))
    if not columns:
        raise MappingRefused(f"{staged.name}: no columns found to map.", field="file")
    if len(columns) > COLUMNS_MAX:
        raise MappingRefused(
            f"{staged.name} has {len(columns)} columns; this page maps at most {COLUMNS_MAX} "
            "(map a wider file with a JSON mapping: manage.py import_customers --mapping).",
            field="file",
        )
    if not records:
        raise MappingRefused(f"{staged.name} has its columns but no customers.", field="file")
    return Sample(columns, records, "row" if staged.format == "parquet" else "line")


def _csv_header(staged: Staged) -> list[str]:
    """The header as the reader reads it (its duplicated names are the reader's to
    refuse); a header-only file still has columns."""
    with (
        staged.path.open("rb") as raw,
        io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text,
    ):
        try:
            header = next(csv.reader(text), None)
        except UnicodeDecodeError as exc:
            raise ImportFileError(staged.name, None, None, "the file is not UTF-8 text") from exc
        except csv.Error as exc:
            raise ImportFileError(staged.name, 1, None, f"malformed CSV ({exc})") from exc
    return [h.strip() for h in header or []]


def shown(value: object) -> str:
    """A value as the page shows it: text, at most SHOWN_MAX characters."""
    if value is None:
        return ""
    try:
        text = audience._text(value)
    except audience._Bad:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 1] + "…"


# --- suggestions (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    """What we suggest for one file column: an attribute of a type, or to ignore it."""

    column: str
    attribute: str
    type: str = "text"
    choices: tuple[str, ...] = ()
    personal: bool = False
    required: bool = False
    ignore: bool = False
    min: float | None = None
    max: float | None = None
    why: str = ""  # why it is personal, or where the suggestion comes from
    samples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suggested:
    columns: list[Suggestion]
    external_id: str | None  # the column that holds the external id, when one looks it
    # Columns a saved source maps that this file lacks (a re-import through the source
    # would not read them).
    missing: list[str] = field(default_factory=list)

    def as_mapping(self) -> Mapping | None:
        """The suggestion as a mapping to preview (None without an external id)."""
        if self.external_id is None:
            return None
        entries: dict[str, Any] = {}
        for s in self.columns:
            if s.ignore or s.column == self.external_id:
                continue
            entry: dict[str, Any] = {"attribute": s.attribute, "type": s.type}
            entry |= {"choices": list(s.choices)} if s.choices else {}
            entry |= {k: v for k, v in (("min", s.min), ("max", s.max)) if v is not None}
            entry |= {"required": True} if s.required else {}
            entry |= {"personal": True} if s.personal else {}
            entries[s.column] = entry
        entries[self.external_id] = "external_id"
        try:
            return Mapping.parse({"columns": entries, "unmapped": "drop"})
        except MappingError:
            return None


def attribute_name(column: str) -> str:
    """An attribute name for a column: its words in ASCII, lower case, joined by _
    ("Kunden-ID" → kunden_id, "E-Mail" → email, "Größe" → grosse); "" when none."""
    words = checks.attribute_tokens(anyascii(column))
    name = "_".join(words)[:64].strip("_")
    if name and not name[0].isalpha():
        name = f"c_{name}"[:64]
    return name if ATTRIBUTE_RE.match(name) else ""


def _joined(column: str) -> str:
    return "".join(checks.attribute_tokens(anyascii(column)))


def _id_score(column: str) -> int:
    """How much a column's name says it holds the customer's id: 2, 1 or 0."""
    if _joined(column) in _ID_NAMES:
        return 2
    words = checks.attribute_tokens(anyascii(column))
    return 1 if words and words[-1] in _ID_WORDS else 0


def _present(values: Sequence[object]) -> list[object]:
    return [v for v in values if not audience._missing(v)]


def _all_coerce(kind: str, values: Iterable[object]) -> bool:
    column = Column(column="", attribute="x", type=kind)
    try:
        for value in values:
            audience._coerce(column, value)
    except audience._Bad:
        return False
    return True


def infer_type(values: Sequence[object]) -> tuple[str, tuple[str, ...]]:
    """The type (and a choice's choices) that reads every value of the sample, by the
    reader's own rules: a suggested type never fails on the rows it was drawn from.

    1. Dates (ISO 8601), then yes/no words (0 and 1 alone are numbers), then whole
       numbers (not with a leading zero: codes such as "0042" stay text), then numbers.
    2. A few short values that repeat: a choice of them, in the order first seen.
    3. Anything else, or nothing at all: text.
    """
    present = _present(values)
    if not present:
        return "text", ()
    texts = [str(v).strip() for v in present]
    dates = all(
        isinstance(v, dt.date | str) and _DATE_RE.match(t)
        for v, t in zip(present, texts, strict=True)
    )
    if dates and _all_coerce("date", present):
        return "date", ()
    if _all_coerce("boolean", present) and any(t.lower() not in ("0", "1") for t in texts):
        return "boolean", ()
    if _all_coerce("integer", present) and not any(_LEADING_ZERO.match(t) for t in texts):
        return "integer", ()
    if _all_coerce("number", present) and not any(_LEADING_ZERO.match(t) for t in texts):
        return "number", ()
    firsts: dict[str, str] = {}
    for text in texts:
        firsts.setdefault(text.casefold(), text)
    if (
        len(firsts) <= CHOICES_MAX
        and len(firsts) < len(texts)  # values repeat: a set of categories, not names
        and all(0 < len(t) <= CHOICE_LENGTH_MAX for t in firsts.values())
        and all(isinstance(v, str) for v in present)
    ):
        return "choice", tuple(firsts.values())
    return "text", ()


def personal_reason(column: str, values: Sequence[object]) -> str:
    """Why a column holds personal data ("its name", "values look like e-mail
    addresses"), or "" when nothing says so."""
    if checks.is_personal_attribute(column) or checks.is_personal_attribute(attribute_name(column)):
        return "its name"
    watch = checks.PersonalValues()
    for value in _present(values):
        watch.add({"c": shown(value)})
    return watch.found().get("c", "")


def _samples(values: Sequence[object]) -> tuple[str, ...]:
    distinct = dict.fromkeys(shown(v) for v in _present(values))
    return tuple(list(distinct)[:SAMPLE_VALUES])


def _external_id(columns: Sequence[str], values: dict[str, list[object]]) -> str | None:
    """The column most likely to hold the external id: named like an id, and (in the
    sample) never empty and never repeated."""
    best: tuple[int, int] | None = None
    chosen = None
    for position, column in enumerate(columns):
        score = _id_score(column)
        held = values[column]
        present = _present(held)
        if not score or len(present) < len(held) or len({shown(v) for v in present}) < len(held):
            continue
        rank = (score, -position)
        if best is None or rank > best:
            best, chosen = rank, column
    return chosen


def suggest(
    columns: Sequence[str], records: Sequence[Record], *, saved: Mapping | None = None
) -> Suggested:
    """The mapping we suggest for a file's columns, from their names and the sample's
    values; a saved source's mapping (`saved`) for the columns it names.

    1. The external id: the saved one, else the column named like an id whose sampled
       values are all there and all different (none: the lead chooses).
    2. The language: a column named like one (language, locale, Sprache...).
    3. Every other column: an attribute named after it, of the type that reads all its
       sampled values, personal when its name or values say so; a name taken twice
       gets a number (_2).
    """
    values = {c: [r.values.get(c) for r in records if not r.error] for c in columns}
    by_column = {c.column: c for c in saved.columns} if saved is not None else {}
    saved_ids = [
        c.column for c in by_column.values() if c.attribute == "external_id" and c.column in values
    ]
    external_id = saved_ids[0] if saved_ids else _external_id(columns, values)
    taken: set[str] = {"external_id"}
    suggestions = []
    language_found = False
    for column in columns:
        held = values[column]
        samples = _samples(held)
        if column == external_id:
            suggestions.append(Suggestion(column, "external_id", required=True, samples=samples))
            continue
        known = by_column.get(column)
        if known is not None and known.attribute not in taken:
            taken.add(known.attribute)
            suggestions.append(
                Suggestion(
                    column,
                    known.attribute,
                    known.type,
                    known.choices,
                    known.personal,
                    known.required,
                    min=known.min,
                    max=known.max,
                    why="as saved",
                    samples=samples,
                )
            )
            continue
        if not language_found and "language" not in taken and _joined(column) in _LANGUAGE_NAMES:
            language_found = True
            taken.add("language")
            suggestions.append(Suggestion(column, "language", samples=samples))
            continue
        attribute = _unique(attribute_name(column) or "column", taken)
        taken.add(attribute)
        why = personal_reason(column, held)
        kind, choices = ("text", ()) if why else infer_type(held)
        suggestions.append(
            Suggestion(
                column, attribute, kind, choices, personal=bool(why), why=why, samples=samples
            )
        )
    missing = [c for c in by_column if c not in values]
    return Suggested(suggestions, external_id, missing)


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    number = 2
    while f"{name[:60]}_{number}" in taken:
        number += 1
    return f"{name[:60]}_{number}"


# --- the preview (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    column: str
    text: str  # the value as the file holds it
    value: str = ""  # as it would be imported ("" when empty or not imported)
    error: str = ""
    mapped: bool = True


@dataclass(frozen=True)
class PreviewRow:
    line: int
    cells: tuple[Cell, ...]
    error: str = ""  # the record as a whole: unreadable, or its id came earlier

    @property
    def bad(self) -> bool:
        return bool(self.error) or any(c.error for c in self.cells)


@dataclass(frozen=True)
class Preview:
    columns: tuple[str, ...]
    rows: tuple[PreviewRow, ...]
    unit: str = "line"
    # Required columns with no value in any previewed row.
    empty_required: tuple[str, ...] = ()
    # (column, the attribute it becomes or "" when not imported), in the file's order.
    heads: tuple[tuple[str, str], ...] = ()

    @property
    def bad_rows(self) -> int:
        return sum(1 for row in self.rows if row.bad)

    def messages(self, limit: int = 10) -> list[str]:
        """The errors as the import would list them: "line 3, column 'X': ..."."""
        found = []
        for row in self.rows:
            if row.error:
                found.append(f"{self.unit} {row.line}: {row.error}")
            found += [
                f"{self.unit} {row.line}, column '{c.column}': {c.error}"
                for c in row.cells
                if c.error
            ]
        return found[:limit]


def _parsed(column: Column, value: object) -> str:
    """The value as imported, as text; raises audience._Bad naming nothing."""
    if column.attribute == "external_id":
        return audience.clean_external_id(value)
    if column.attribute == "language":
        return audience.clean_language(value, column.column)
    parsed = audience._coerce(column, value)
    if isinstance(parsed, bool):
        return "yes" if parsed else "no"
    return str(parsed)


def preview(
    columns: Sequence[str], records: Sequence[Record], mapping: Mapping, *, unit: str = "line"
) -> Preview:
    """The first PREVIEW_ROWS records read through `mapping`, every error on its cell
    (the import stops at a row's first; the lead wants to see them all at once)."""
    by_column = {c.column: c for c in mapping.columns}
    rows = []
    seen: dict[str, int] = {}
    filled: Counter[str] = Counter()
    for record in records[:PREVIEW_ROWS]:
        cells = []
        for name in columns:
            raw = record.values.get(name)
            column = by_column.get(name)
            if column is None:
                cells.append(Cell(name, shown(raw), mapped=False))
                continue
            if audience._missing(raw):
                error = f"{column.attribute} is required and empty" if column.required else ""
                cells.append(Cell(name, "", error=error))
                continue
            filled[name] += 1
            try:
                cells.append(Cell(name, shown(raw), shown(_parsed(column, raw))))
            except audience._Bad as exc:
                cells.append(Cell(name, shown(raw), error=exc.message))
        error = record.error
        identifier = next(
            (c for c in cells if by_column.get(c.column, _NONE).attribute == "external_id"), None
        )
        if identifier is not None and not identifier.error and identifier.value:
            first = seen.setdefault(identifier.value, record.line)
            if first != record.line:
                error = (
                    f"external_id {identifier.value!r} appears on {unit} {first} and "
                    f"{unit} {record.line}"
                )
        rows.append(PreviewRow(record.line, tuple(cells), error))
    empty = tuple(c.column for c in mapping.columns if c.required and not filled[c.column])
    heads = tuple((c, by_column[c].attribute if c in by_column else "") for c in columns)
    return Preview(tuple(columns), tuple(rows), unit, empty if rows else (), heads)


_NONE = Column(column="", attribute="")


# --- saving and importing ----------------------------------------------------------------


class _StagedUpload:
    """A staged file as imports.receive takes an upload: it moves the file into place
    (Django's temporary uploads are taken the same way)."""

    def __init__(self, staged: Staged) -> None:
        self.name, self.size, self._path = staged.name, staged.size, staged.path

    def temporary_file_path(self) -> str:
        return str(self._path)


def check_columns(mapping: Mapping, columns: Sequence[str]) -> None:
    """MappingRefused when `mapping` names a column the file lacks."""
    lacking = [c.column for c in mapping.columns if c.column not in columns]
    if lacking:
        raise MappingRefused(
            f"The file has no column {', '.join(repr(c) for c in lacking)}; "
            f"its columns are: {', '.join(columns)}",
            field="columns",
        )


def mapping_import(
    *,
    staged: Staged,
    name: str,
    mapping: Mapping,
    skip_invalid: bool,
    requested_by: str,
) -> tuple[CustomerSource, Import]:
    """Save `mapping` as the source `name` (created, or replaced when its slug exists)
    and queue the staged file's import through it, as a recorded Import.

    1. Check first, write nothing when refused: every mapped column is in the file;
       the previewed rows have no bad cell, unless the good rows are to be imported
       (`skip_invalid`), as the import would then skip the bad ones.
    2. The source and the Import are written in one transaction; the file moves from
       its staging place to where imports wait for their worker.
    """
    read = sample(staged)
    check_columns(mapping, read.columns)
    shown_rows = preview(read.columns, read.records, mapping, unit=read.unit)
    if shown_rows.empty_required:
        names = ", ".join(repr(c) for c in shown_rows.empty_required)
        raise MappingRefused(
            f"Required column {names} is empty in every previewed row: map another column, "
            "or untick Required.",
            field="columns",
        )
    if shown_rows.bad_rows and not skip_invalid:
        raise MappingRefused(
            f"{shown_rows.bad_rows} of the first {len(shown_rows.rows)} rows cannot be "
            f"imported ({'; '.join(shown_rows.messages(3))}). Fix the mapping, or tick "
            "“Import the good rows” to skip the bad ones.",
            field="columns",
        )
    with transaction.atomic():
        try:
            source = _source_save(name=name, mapping=mapping)
        except MappingError as exc:
            raise MappingRefused(str(exc), field="name") from exc
        record = imports.receive(
            _StagedUpload(staged),
            kind=Import.Kind.CUSTOMERS,
            format=staged.format,
            source=source,
            options={"skip_invalid": skip_invalid},
            requested_by=requested_by,
            via="web",
        )
    _meta_path(staged.path.parent, staged.token).unlink(missing_ok=True)
    return source, record


def _source_save(*, name: str, mapping: Mapping) -> CustomerSource:
    return services.customer_source_save(slug=name, name=name, mapping=mapping.as_json())
