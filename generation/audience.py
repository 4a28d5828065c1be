"""Customer files from a CDP, streamed: CSV, JSON Lines and Parquet, through a mapping.

A file is read one record at a time (Parquet: one record batch at a time), so a
million customers cost the memory of one batch, not of the file. Nothing here writes;
`generation.services.customers_import` upserts what this yields.

A *mapping* says which file column becomes which of our attributes, of what type, and
what it may hold. Without one, a file must name its columns as we do: ``external_id``,
``language`` (or ``preferred_language``), and every other column is a text attribute.
A saved mapping (CustomerSource) is written as JSON:

    {"columns": {
        "CUST_ID": "external_id",
        "LANG": "language",
        "TIER": {"attribute": "value_tier", "type": "choice",
                 "choices": ["low", "medium", "high"], "required": true},
        "AGE": {"attribute": "age", "type": "integer", "min": 0, "max": 130},
        "EMAIL": {"attribute": "email", "personal": true}},
     "unmapped": "drop"}

Types: text, integer, number, boolean, date (ISO 8601, stored as YYYY-MM-DD), choice.
Columns a mapping does not name are dropped (``"unmapped": "keep"`` keeps them as
text). ``personal`` marks an attribute that never reaches an LLM endpoint, whatever a
prompt's allowlist says.

Each record comes out as a CustomerRow, or as a RowError that names the line (Parquet:
the row), the column and what is wrong. Problems with the file as a whole (its type,
its header, its encoding) raise ImportFileError.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path

from generation.importers import ImportFileError
from generation.languages import DEFAULT_LANGUAGE, LanguageTagError, language_tag

EXTERNAL_ID_MAX = 128
TEXT_MAX = 1000
# A JSON Lines record longer than this is a bad row, read in bounded pieces, never whole.
LINE_MAX_BYTES = 1 << 20
ATTRIBUTE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
TYPES = ("text", "integer", "number", "boolean", "date", "choice")
_LANGUAGE_KEYS = ("language", "preferred_language")
_TRUE = frozenset({"true", "yes", "y", "1", "t"})
_FALSE = frozenset({"false", "no", "n", "0", "f"})
_INTEGER_RE = re.compile(r"^[+-]?\d+$")
# Records a Parquet batch turns into dicts at a time.
PARQUET_BATCH_ROWS = 2_000


class MappingError(ValueError):
    """A column mapping that cannot be used, naming the entry that is wrong."""


@dataclass(frozen=True)
class Column:
    column: str
    attribute: str
    type: str = "text"
    required: bool = False
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    personal: bool = False


@dataclass(frozen=True)
class Mapping:
    """File columns → our attributes. ``columns`` empty means the file uses our names."""

    columns: tuple[Column, ...] = ()
    keep_unmapped: bool = True

    @property
    def is_identity(self) -> bool:
        return not self.columns

    @property
    def personal(self) -> frozenset[str]:
        return frozenset(c.attribute for c in self.columns if c.personal)

    @classmethod
    def parse(cls, spec: object) -> Mapping:
        """A Mapping from its JSON form; MappingError names what is wrong."""
        if not isinstance(spec, dict):
            raise MappingError('A mapping is a JSON object: {"columns": {...}}')
        unknown = sorted(set(spec) - {"columns", "unmapped"})
        if unknown:
            raise MappingError(
                f"Unknown mapping key(s) {', '.join(unknown)}; use 'columns' and 'unmapped'"
            )
        unmapped = spec.get("unmapped", "drop")
        if unmapped not in ("keep", "drop"):
            raise MappingError("'unmapped' is 'keep' or 'drop'")
        raw_columns = spec.get("columns")
        if not isinstance(raw_columns, dict) or not raw_columns:
            raise MappingError("'columns' maps file columns to attributes and cannot be empty")
        columns = [_parse_column(name, entry) for name, entry in raw_columns.items()]
        seen: dict[str, str] = {}
        for column in columns:
            if column.attribute in seen:
                raise MappingError(
                    f"Columns '{seen[column.attribute]}' and '{column.column}' both map to "
                    f"'{column.attribute}'"
                )
            seen[column.attribute] = column.column
        if "external_id" not in seen:
            raise MappingError("No column maps to external_id; one must")
        return cls(columns=tuple(columns), keep_unmapped=unmapped == "keep")

    def as_json(self) -> dict:
        columns = {}
        for c in self.columns:
            entry: dict = {"attribute": c.attribute, "type": c.type}
            if c.required:
                entry["required"] = True
            if c.choices:
                entry["choices"] = list(c.choices)
            if c.min is not None:
                entry["min"] = c.min
            if c.max is not None:
                entry["max"] = c.max
            if c.personal:
                entry["personal"] = True
            columns[c.column] = entry
        return {"columns": columns, "unmapped": "keep" if self.keep_unmapped else "drop"}


def _parse_column(name: object, entry: object) -> Column:
    if not isinstance(name, str) or not name.strip():
        raise MappingError("A column name in 'columns' is empty")
    where = f"Column '{name}'"
    if isinstance(entry, str):
        entry = {"attribute": entry}
    if not isinstance(entry, dict):
        raise MappingError(f"{where}: give an attribute name or an object with 'attribute'")
    unknown = sorted(set(entry) - {f for f in Column.__dataclass_fields__ if f != "column"})
    if unknown:
        raise MappingError(f"{where}: unknown key(s) {', '.join(unknown)}")
    attribute = entry.get("attribute")
    if not isinstance(attribute, str) or not ATTRIBUTE_RE.match(attribute):
        raise MappingError(
            f"{where}: 'attribute' must be a name of letters, digits and _ (got {attribute!r})"
        )
    kind = entry.get("type", "text")
    if kind not in TYPES:
        raise MappingError(f"{where}: type {kind!r} is not one of {', '.join(TYPES)}")
    choices = entry.get("choices", [])
    if kind == "choice" and (
        not isinstance(choices, list)
        or not choices
        or not all(isinstance(c, str) and c.strip() for c in choices)
    ):
        raise MappingError(f"{where}: a choice needs 'choices', a list of texts")
    if kind != "choice" and choices:
        raise MappingError(f"{where}: 'choices' only applies to type choice")
    bounds = {}
    for key in ("min", "max"):
        value = entry.get(key)
        if value is None:
            continue
        if kind not in ("integer", "number") or isinstance(value, bool):
            raise MappingError(f"{where}: '{key}' only applies to integer and number")
        if not isinstance(value, int | float):
            raise MappingError(f"{where}: '{key}' must be a number")
        bounds[key] = value
    if attribute in ("external_id", "language") and kind != "text":
        raise MappingError(f"{where}: {attribute} is text")
    return Column(
        column=name,
        attribute=attribute,
        type=kind,
        required=bool(entry.get("required", attribute == "external_id")),
        choices=tuple(c.strip() for c in choices),
        min=bounds.get("min"),
        max=bounds.get("max"),
        personal=bool(entry.get("personal", False)),
    )


@dataclass(frozen=True)
class CustomerRow:
    external_id: str
    language: str
    attributes: dict
    line: int


@dataclass(frozen=True)
class RowError:
    line: int
    column: str | None
    message: str
    unit: str = "line"  # "row" for Parquet, which has no lines

    def __str__(self) -> str:
        where = f"{self.unit} {self.line}"
        if self.column is not None:
            where += f", column '{self.column}'"
        return f"{where}: {self.message}"


class _Bad(Exception):
    def __init__(self, column: str | None, message: str) -> None:
        self.column, self.message = column, message


class _SeenIds:
    """The external ids read so far, each with the line it was first on.

    A dict of a million ids to their lines was half an import's peak memory (140 MB),
    a third of it the int object of each line. Here the ids are a dict's keys with no
    values (insertion-ordered), as UTF-8 bytes (48 bytes for a short id, where its str
    takes 64), and the lines an array in the same order. The position of a repeated
    id is found in an index built the first time an id repeats: a bad file pays for
    it, a good one never does.
    """

    def __init__(self) -> None:
        self._ids: dict[bytes, None] = {}
        self._lines = array("Q")
        self._positions: dict[bytes, int] | None = None

    def first(self, external_id: str, line: int) -> int | None:
        """The line `external_id` was first read on; None if it is new (it is then
        remembered as read on `line`)."""
        # surrogatepass: a lone surrogate (JSON allows one) is still one distinct key.
        ids, key = self._ids, external_id.encode("utf-8", "surrogatepass")
        if key in ids:
            if self._positions is None:
                self._positions = {known: i for i, known in enumerate(ids)}
            return self._lines[self._positions[key]]
        if self._positions is not None:
            self._positions[key] = len(ids)
        ids[key] = None
        self._lines.append(line)
        return None


@dataclass
class Reading:
    """What reading a file found so far: read by `read_customers` as it goes."""

    rows: int = 0
    bad: int = 0
    bytes_total: int = 0
    done: float = 0.0  # share of the file read, for a progress bar
    format: str = ""
    unit: str = "line"
    _seen: _SeenIds = field(default_factory=_SeenIds, repr=False)


# --- records -------------------------------------------------------------------------


def file_format(path: Path, display: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ImportFileError(
            display,
            None,
            None,
            f"unsupported file type ({suffix or 'no extension'!r}); use " + ", ".join(FORMATS),
        )
    return FORMATS[suffix]


def _csv_records(
    path: Path, display: str, required: list[str], reading: Reading
) -> Iterator[tuple[int, dict | _Bad]]:
    with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        reader = csv.reader(text)
        try:
            header = next(reader, None)
            if header is None:
                return
            header = [h.strip() for h in header]
            duplicated = sorted({h for h in header if h and header.count(h) > 1})
            if duplicated:
                raise ImportFileError(
                    display, 1, duplicated[0], "the header names this column more than once"
                )
            missing = [c for c in required if c not in header]
            if missing:
                raise ImportFileError(
                    display,
                    1,
                    missing[0],
                    "required column is missing; the header is: " + ", ".join(header),
                )
            line = reader.line_num + 1
            for count, values in enumerate(reader):
                start, line = line, reader.line_num + 1
                if count % 1000 == 0:
                    reading.done = raw.tell() / max(reading.bytes_total, 1)
                if not any(v.strip() for v in values):
                    continue
                if len(values) > len(header):
                    yield start, _Bad(None, f"{len(values)} fields, the header has {len(header)}")
                    continue
                yield start, dict(zip(header, values, strict=False))
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                display, reader.line_num + 1, None, "the file is not UTF-8 text"
            ) from exc
        except csv.Error as exc:
            raise ImportFileError(display, reader.line_num, None, f"malformed CSV ({exc})") from exc


def _jsonl_records(
    path: Path, display: str, required: list[str], reading: Reading
) -> Iterator[tuple[int, dict | _Bad]]:
    with path.open("rb") as handle:
        for line, raw in enumerate(iter(lambda: handle.readline(LINE_MAX_BYTES + 1), b""), 1):
            if line % 1000 == 0:
                reading.done = handle.tell() / max(reading.bytes_total, 1)
            if len(raw) > LINE_MAX_BYTES and not raw.endswith(b"\n"):
                # Never held whole: skip the rest of the line in bounded reads.
                while (rest := handle.readline(LINE_MAX_BYTES)) and not rest.endswith(b"\n"):
                    pass
                yield line, _Bad(None, f"the line is longer than {LINE_MAX_BYTES:,} bytes")
                continue
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except UnicodeDecodeError:
                yield line, _Bad(None, "not UTF-8 text")
                continue
            except json.JSONDecodeError as exc:
                yield line, _Bad(None, f"invalid JSON ({exc.msg}, character {exc.colno})")
                continue
            if not isinstance(data, dict):
                kind = type(data).__name__ if data is not None else "null"
                yield line, _Bad(None, f"expected a JSON object, found {kind}")
                continue
            nested = data.pop("attributes", None)
            if nested is not None:
                if not isinstance(nested, dict):
                    yield line, _Bad("attributes", "attributes must be an object")
                    continue
                clash = next((k for k in nested if k in data), None)
                if clash is not None:
                    yield line, _Bad(f"attributes.{clash}", f"{clash!r} is also at the top level")
                    continue
                data.update(nested)
            yield line, data


def _parquet_records(
    path: Path, display: str, required: list[str], reading: Reading
) -> Iterator[tuple[int, dict | _Bad]]:
    import pyarrow as pa  # a heavy import, only for Parquet files
    import pyarrow.parquet as pq

    # The system allocator gives freed memory back at once; pyarrow's default pool
    # (mimalloc) held 45 MB more at the peak of a million-row import.
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        # Neither pre-buffered nor decoded on threads: each cost 7 MB at the peak.
        parquet = pq.ParquetFile(path, pre_buffer=False)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...: all mean "not Parquet"
        raise ImportFileError(display, None, None, f"not a readable Parquet file ({exc})") from exc
    names = list(parquet.schema_arrow.names)
    missing = [c for c in required if c not in names]
    if missing:
        raise ImportFileError(
            display,
            None,
            missing[0],
            "required column is missing; the file's columns are: " + ", ".join(names),
        )
    _parquet_sizes_check(parquet, display)
    total = max(parquet.metadata.num_rows, 1)
    row = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, use_threads=False):
        for record in batch.to_pylist():
            row += 1
            yield row, record
        reading.done = row / total


# The most a value can take decompressed: TEXT_MAX characters of up to 4 bytes in UTF-8,
# and some room for the page's own encoding.
VALUE_MAX_BYTES = 4 * TEXT_MAX + 64
CHUNK_SLACK_BYTES = 1 << 20


def _parquet_sizes_check(parquet, display: str) -> None:
    """Refuse, from the file's metadata alone, a column chunk that would decompress to
    more than its rows' values can hold: a 10 KB file with one zstd-compressed 300 MB
    string is refused before a byte of it is inflated."""
    metadata = parquet.metadata
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        allowed = group.num_rows * VALUE_MAX_BYTES + CHUNK_SLACK_BYTES
        for c in range(group.num_columns):
            chunk = group.column(c)
            if chunk.total_uncompressed_size > allowed:
                raise ImportFileError(
                    display,
                    None,
                    chunk.path_in_schema,
                    f"row group {g} holds {chunk.total_uncompressed_size:,} bytes uncompressed "
                    f"for {group.num_rows:,} rows; a value is at most {TEXT_MAX:,} characters",
                )


_READERS = {"csv": _csv_records, "jsonl": _jsonl_records, "parquet": _parquet_records}


def file_columns(path: Path | str) -> list[str]:
    """The columns a file has (Parquet: its schema; CSV: its header; JSONL: the keys of
    its first records), for showing what a mapping can map."""
    path = Path(path)
    kind = file_format(path, str(path))
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    seen: dict[str, None] = {}
    for count, (_line, record) in enumerate(_READERS[kind](path, str(path), [], Reading())):
        if isinstance(record, dict):
            seen.update(dict.fromkeys(record))
        if kind == "csv" or count >= 100:
            break
    return list(seen)


# --- values --------------------------------------------------------------------------


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        raise _Bad(None, "is a list or an object; only single values can be attributes")
    return str(value).strip()


def _number(value: object, *, integer: bool) -> int | float:
    if isinstance(value, bool):
        raise _Bad(None, f"{value!r} is a boolean, not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        number = float(value)
    else:
        text = str(value).strip()
        if integer and _INTEGER_RE.match(text):
            return int(text)
        try:
            number = float(Decimal(text))
        except InvalidOperation:
            kind = "a whole number" if integer else "a number"
            raise _Bad(None, f"{text!r} is not {kind}") from None
    if not math.isfinite(number):
        raise _Bad(None, f"{value!r} is not a finite number")
    if integer:
        if not number.is_integer():
            raise _Bad(None, f"{value!r} is not a whole number")
        return int(number)
    return number


@cache
def _folded(choices: tuple[str, ...]) -> dict[str, str]:
    return {c.casefold(): c for c in choices}


def _coerce(column: Column, value: object) -> object:
    """The value in the column's type; raises _Bad."""
    kind = column.type
    if kind in ("text", "choice"):
        text = _text(value)
        if len(text) > TEXT_MAX:
            raise _Bad(None, f"longer than {TEXT_MAX} characters")
        if kind == "choice":
            folded = _folded(column.choices)
            if text.casefold() not in folded:
                raise _Bad(None, f"{text!r} is not one of {', '.join(column.choices)}")
            return folded[text.casefold()]
        return text
    if kind in ("integer", "number"):
        number = _number(value, integer=kind == "integer")
        if column.min is not None and number < column.min:
            raise _Bad(None, f"{number} is below the minimum {column.min:g}")
        if column.max is not None and number > column.max:
            raise _Bad(None, f"{number} is above the maximum {column.max:g}")
        return number
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _Bad(None, f"{value!r} is not a yes/no value (true, false, yes, no, 1, 0)")
    # date
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    try:
        return dt.date.fromisoformat(text[:10]).isoformat() if len(text) >= 10 else _no_date(text)
    except ValueError:
        return _no_date(text)


def _no_date(text: str):
    raise _Bad(None, f"{text!r} is not a date (YYYY-MM-DD)")


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def clean_external_id(value: object) -> str:
    if isinstance(value, bool | float | dict | list):
        raise _Bad("external_id", "external_id must be text or a whole number")
    external_id = str(value).strip()
    if not external_id:
        raise _Bad("external_id", "external_id is empty")
    if len(external_id) > EXTERNAL_ID_MAX:
        raise _Bad("external_id", f"external_id is longer than {EXTERNAL_ID_MAX} characters")
    return external_id


def clean_language(value: object, column: str) -> str:
    """A BCP 47 tag as stored (generation.languages), or a bad row naming the column."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_LANGUAGE
    if not isinstance(value, str):
        raise _Bad(column, "language must be text such as 'en' or 'pt-BR'")
    try:
        return language_tag(value)
    except LanguageTagError as exc:
        raise _Bad(column, str(exc)) from None


def _identity_row(record: dict) -> tuple[str, str, dict]:
    if _missing(record.get("external_id")):
        raise _Bad("external_id", "external_id is missing")
    external_id = clean_external_id(record["external_id"])
    language_key = next((k for k in _LANGUAGE_KEYS if not _missing(record.get(k))), "language")
    language = clean_language(record.get(language_key), language_key)
    attributes = {}
    for key, value in record.items():
        if key in ("external_id", *_LANGUAGE_KEYS) or _missing(value):
            continue
        try:
            text = _bounded_text(value)
        except _Bad as exc:
            raise _Bad(key, exc.message) from None
        if text:
            attributes[key] = text
    return external_id, language, attributes


def _bounded_text(value: object) -> str:
    """An attribute as text, at most TEXT_MAX characters, on every path (mapped or not):
    one 20 MB value would otherwise ride along in every prompt that sends it."""
    text = _text(value)
    if len(text) > TEXT_MAX:
        raise _Bad(None, f"longer than {TEXT_MAX} characters")
    return text


def _mapped_row(mapping: Mapping, record: dict, mapped: frozenset[str]) -> tuple[str, str, dict]:
    external_id, language, attributes = "", DEFAULT_LANGUAGE, {}
    for column in mapping.columns:
        value = record.get(column.column)
        if _missing(value):
            if column.required:
                raise _Bad(column.column, f"{column.attribute} is required and empty")
            continue
        if column.attribute == "external_id":
            try:
                external_id = clean_external_id(value)
            except _Bad as exc:
                raise _Bad(column.column, exc.message) from None
        elif column.attribute == "language":
            language = clean_language(value, column.column)
        else:
            try:
                attributes[column.attribute] = _coerce(column, value)
            except _Bad as exc:
                raise _Bad(column.column, exc.message) from None
    if mapping.keep_unmapped:
        for key, value in record.items():
            if key in mapped or _missing(value) or key in attributes:
                continue
            try:
                attributes[key] = _bounded_text(value)
            except _Bad as exc:
                raise _Bad(key, exc.message) from None
    return external_id, language, attributes


def read_customers(
    path: Path | str, *, mapping: Mapping | None = None, reading: Reading | None = None
) -> Iterator[CustomerRow | RowError]:
    """Each record of a customer file, as a CustomerRow or a RowError.

    1. File-level checks raise ImportFileError before anything is yielded: the type,
       a header without the mapped required columns.
    2. Every record is mapped and coerced; a record whose external id came earlier in
       the file is a RowError naming the earlier line, so an import never depends on
       which of two rows wins.
    """
    display = str(path)
    path = Path(path)
    mapping = mapping or Mapping()
    reading = reading if reading is not None else Reading()
    kind = file_format(path, display)
    reading.format, reading.unit = kind, "row" if kind == "parquet" else "line"
    try:
        reading.bytes_total = path.stat().st_size
    except OSError as exc:
        raise ImportFileError(display, None, None, f"cannot read the file ({exc})") from exc
    mapped = frozenset(c.column for c in mapping.columns)
    seen = reading._seen
    for line, record in _READERS[kind](path, display, _required_columns(mapping), reading):
        reading.rows += 1
        try:
            if isinstance(record, _Bad):
                raise record
            if mapping.is_identity:
                external_id, language, attributes = _identity_row(record)
            else:
                external_id, language, attributes = _mapped_row(mapping, record, mapped)
            first = seen.first(external_id, line)
            if first is not None:
                raise _Bad(
                    "external_id",
                    f"external_id {external_id!r} appears on {reading.unit} {first} and "
                    f"{reading.unit} {line}",
                )
        except _Bad as exc:
            reading.bad += 1
            yield RowError(line, exc.column, exc.message, reading.unit)
            continue
        yield CustomerRow(external_id, language, attributes, line)


def _required_columns(mapping: Mapping) -> list[str]:
    """Columns the file must have (JSON Lines: checked per record instead)."""
    if mapping.is_identity:
        return ["external_id"]
    return [c.column for c in mapping.columns if c.required]
