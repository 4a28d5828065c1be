"""Read catalog and audience files into plain rows: parse and validate, never write.

The upsert services build on these functions. Every problem is an ImportFileError that
names the file, the line and the column, and reading stops at the first one, so that
nothing is half-imported.

Product files are CSV in one of three layouts, told apart by the header:

1. ours: ``sku, name, description`` and optionally ``category, subcategory``, and
   translated base copy in ``description:de`` / ``name:de``-style columns (any BCP 47
   tag after the colon); every other column is an attribute;
2. the Magento / Adobe Commerce product export (``product_type`` with ``categories``,
   ``additional_attributes`` or ``attribute_set_code``): configurable products absorb
   their size/colour children, and rows with a ``store_view_code`` carry the
   translated ``name`` / ``description`` of the store view's language (a code that is
   a language tag, such as ``de`` or ``fr_ch``, or one mapped by ``store_views``);
3. the Magento sample-data fixtures (``category`` and ``attribute_set``, no
   ``subcategory``): one simple product per row, category paths and multi-valued
   attributes one item per line inside a quoted field.

Customer files are streamed through a column mapping: see generation.audience.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from html.parser import HTMLParser
from pathlib import Path

from generation.languages import LanguageTagError, language_tag

# Mirror the max_length of the fields in generation.models, so that a value that would
# not fit is reported with its line instead of failing inside the write transaction.
SKU_MAX = 64
NAME_MAX = 255
CATEGORY_MAX = 120


PRODUCT_EXTENSIONS = (".csv",)

# Top-level categories that group products for merchandising, not by what they are.
NON_PRODUCT_CATEGORY_ROOTS = frozenset({"collections", "promotions"})
# additional_attributes keys that describe the shop's mechanics, not the product.
MAGENTO_NOISE_KEYS = frozenset(
    {
        "has_options",
        "required_options",
        "quantity_and_stock_status",
        "options_container",
        "gift_message_available",
        "gift_wrapping_available",
        "is_returnable",
        "tax_class_id",
    }
)
MAGENTO_NOT_VISIBLE = "not visible individually"
SAMPLE_FIXTURE_NOISE_COLUMNS = frozenset({"qty", "attribute_set"})
APPAREL_SIZES = ("XXS", "XS", "S", "M", "L", "XL", "XXL", "2XL", "XXXL", "3XL", "4XL", "5XL")

Attributes = dict[str, str | list[str]]


class ImportFileError(Exception):
    """A file that cannot be imported, with where the problem is.

    ``line`` is the 1-based physical line where the record starts (newlines inside
    quoted fields count) or None for the file as a whole; ``column`` is a header name,
    a JSON key, a character position (int, JSON syntax errors) or None.
    """

    def __init__(
        self, path: Path | str, line: int | None, column: str | int | None, message: str
    ) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f", line {self.line}"
        if isinstance(self.column, int):
            where += f", column {self.column}"
        elif self.column is not None:
            where += f", column '{self.column}'"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class ProductRow:
    sku: str
    name: str
    category: str
    subcategory: str
    description: str
    attributes: Attributes
    line: int
    # {tag: {"name": ..., "description": ...}}: the base copy in other languages.
    translations: dict[str, dict[str, str]] = field(default_factory=dict)


# --- HTML ----------------------------------------------------------------------------

_PARAGRAPH_TAGS = frozenset(
    {"p", "div", "ul", "ol", "dl", "table", "blockquote", "pre", "section", "article"}
    | {"header", "footer", "aside", "main", "figure", "hr"}
    | {"h1", "h2", "h3", "h4", "h5", "h6"}
)
_LINE_TAGS = frozenset({"br", "tr", "dt", "dd"})
_DROPPED_TAGS = frozenset({"script", "style", "template"})
_HTML_HINT = re.compile(r"</?[a-zA-Z][^>]*>|<!--")
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);")
_INLINE_SPACE = re.compile(r"[^\S\n]+")
_ANY_SPACE = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    """Collect text with line breaks where the blocks were; _tidy_lines finishes it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.trailing_newlines = 0
        self.dropped_depth = 0
        # One entry per open list: whether it has an open item. Descriptions often
        # leave <li> unclosed, so a new <li> or the list's end closes the last one.
        self.lists: list[bool] = []
        self.pending_bullet = False

    def _newlines(self, count: int) -> None:
        if self.trailing_newlines < count:
            self.parts.append("\n" * (count - self.trailing_newlines))
            self.trailing_newlines = count

    def _paragraph(self) -> None:
        # Inside a list item a paragraph is only a new line, so bullets stay together.
        self._newlines(1 if any(self.lists) else 2)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED_TAGS:
            self.dropped_depth += 1
        if self.dropped_depth:
            return
        if tag == "li":
            if not self.lists:
                self.lists.append(False)
            self.lists[-1] = True
            self.pending_bullet = True
            self._newlines(1)
        elif tag == "br":
            self.parts.append("\n")
            self.trailing_newlines += 1
        elif tag in _LINE_TAGS:
            self._newlines(1)
        elif tag in _PARAGRAPH_TAGS:
            self._paragraph()
            if tag in ("ul", "ol"):
                self.lists.append(False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br /> is a start tag only; the default would also run handle_endtag.
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED_TAGS:
            self.dropped_depth = max(0, self.dropped_depth - 1)
            return
        if self.dropped_depth:
            return
        if tag == "li":
            if self.lists:
                self.lists[-1] = False
            self.pending_bullet = False
        elif tag == "br":  # a stray </br>, which browsers read as <br>
            self.handle_starttag(tag, [])
        elif tag in _PARAGRAPH_TAGS:
            if tag in ("ul", "ol") and self.lists:
                self.lists.pop()
            self._paragraph()

    def handle_data(self, data: str) -> None:
        if self.dropped_depth:
            return
        text = _ANY_SPACE.sub(" ", data)
        if not text.strip():
            self.parts.append(text)
            return
        if self.pending_bullet:
            self.parts.append("• ")
            self.pending_bullet = False
        self.parts.append(text)
        self.trailing_newlines = 0


def _tidy_lines(text: str) -> str:
    """Collapse spaces within lines, keep at most one blank line, normalise bullets."""
    out: list[str] = []
    for raw in text.split("\n"):
        line = _INLINE_SPACE.sub(" ", raw).strip()
        if line.startswith("•"):
            line = "• " + line[1:].lstrip()
            if line == "• ":
                continue
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def _decode_entities(text: str) -> str:
    """Decode well-formed entities only, so a bare "&" in plain text stays as it is."""
    return _ENTITY.sub(lambda m: html.unescape(m.group()), text)


def html_to_text(html_text: str) -> str:
    """Turn an HTML (or plain text) description into clean text.

    Paragraphs are separated by a blank line, ``<br>`` starts a new line, list items
    become "• ..." lines; entities are decoded and every tag is removed, scripts and
    styles with their content. Text without tags keeps its own line breaks.
    """
    if not _HTML_HINT.search(html_text):
        return _tidy_lines(re.sub(r"\r\n?", "\n", _decode_entities(html_text)))
    parser = _TextExtractor()
    parser.feed(html_text)
    parser.close()
    return _tidy_lines("".join(parser.parts))


# --- files and CSV -------------------------------------------------------------------


def _check_extension(path: Path, display: str, allowed: tuple[str, ...]) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        found = f"'{path.suffix}'" if path.suffix else "no extension"
        raise ImportFileError(
            display, None, None, f"unsupported file type ({found}); use {', '.join(allowed)}"
        )
    return suffix


def _read_text(path: Path, display: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(
            display, None, None, f"cannot read the file ({exc.strerror or exc})"
        ) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportFileError(
            display,
            None,
            None,
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8",
        ) from exc


def _csv_records(text: str, display: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (line where the record starts, fields), skipping blank records."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    consumed = 0
    while True:
        start = consumed + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(display, start, None, f"malformed CSV ({exc})") from exc
        consumed = reader.line_num
        if any(cell.strip() for cell in row):
            yield start, row


class _CsvTable:
    """A CSV file's header and its records as {column: value} with their lines."""

    def __init__(self, text: str, display: str) -> None:
        self.display = display
        self._records = _csv_records(text, display)
        first = next(self._records, None)
        if first is None:
            raise ImportFileError(display, None, None, "the file is empty")
        self.header_line, cells = first
        self.columns = [cell.strip().lower() for cell in cells]
        seen: set[str] = set()
        for name in self.columns:
            if name and name in seen:
                raise ImportFileError(
                    display, self.header_line, name, "the column appears twice in the header"
                )
            seen.add(name)

    def has(self, *names: str) -> bool:
        return all(name in self.columns for name in names)

    def require(self, *names: str) -> None:
        for name in names:
            if name not in self.columns:
                raise ImportFileError(
                    self.display,
                    self.header_line,
                    name,
                    f"required column is missing; the header is: {', '.join(self.columns)}",
                )

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        width = len(self.columns)
        for line, cells in self._records:
            if len(cells) != width:
                raise ImportFileError(
                    self.display,
                    line,
                    None,
                    f"the row has {len(cells)} fields but the header has {width}",
                )
            record: dict[str, str] = {}
            for name, value in zip(self.columns, cells, strict=True):
                if name:
                    record[name] = value
                elif value.strip():
                    raise ImportFileError(
                        self.display,
                        line,
                        None,
                        f"value {value.strip()!r} under a column with no name",
                    )
            yield line, record


# --- products ------------------------------------------------------------------------


def _clean_sku(value: str, display: str, line: int, column: str = "sku") -> str:
    sku = value.strip()
    if not sku:
        raise ImportFileError(display, line, column, "SKU is empty")
    if len(sku) > SKU_MAX:
        raise ImportFileError(display, line, column, f"SKU is longer than {SKU_MAX} characters")
    return sku


def _clean_name(value: str, display: str, line: int) -> str:
    # Magento stores some names HTML-escaped ("Lumaflex&trade; Band").
    name = " ".join(_decode_entities(value).split())
    if not name:
        raise ImportFileError(display, line, "name", "name is empty")
    if len(name) > NAME_MAX:
        raise ImportFileError(display, line, "name", f"name is longer than {NAME_MAX} characters")
    return name


def _clean_description(value: str, display: str, line: int) -> str:
    text = html_to_text(value)
    if not text:
        what = "empty after removing the HTML" if value.strip() else "empty"
        raise ImportFileError(display, line, "description", f"description is {what}")
    return text


def _check_category(value: str, display: str, line: int, column: str) -> str:
    if len(value) > CATEGORY_MAX:
        raise ImportFileError(
            display, line, column, f"{value!r} is longer than {CATEGORY_MAX} characters"
        )
    return value


def _pick_category(paths: list[list[str]]) -> tuple[str, str]:
    """The deepest path outside Collections/Promotions as (levels above leaf, leaf).

    ``paths`` hold the levels below the root; the first of equally deep paths wins.
    """
    usable = [
        levels
        for levels in paths
        if levels and levels[0].casefold() not in NON_PRODUCT_CATEGORY_ROOTS
    ]
    if not usable:
        return "", ""
    best = max(usable, key=len)  # max() keeps the first of equals
    if len(best) == 1:
        return best[0], ""
    return " / ".join(best[:-1]), best[-1]


def _magento_category_paths(raw: str) -> list[list[str]]:
    """ "Default Category/Men/Tops,Default Category" -> [["Men", "Tops"], []]."""
    paths = []
    for path in raw.split(","):
        levels = [level.strip() for level in path.split("/")]
        paths.append([level for level in levels[1:] if level])
    return paths


def _fixture_category_paths(raw: str) -> list[list[str]]:
    """ "Gear\nBags\nCollections\nErin Recommends" -> [["Gear", "Bags"], ["Collections", ...]].

    The sample-data fixtures list category names one per line, each path walking down
    from a root, with nothing marking where a path ends. Without the category tree we
    start a new path at a merchandising root (Collections, Promotions), after the one
    level below such a root (as deep as they go in the sample data), and at a repeat of
    the first path's root.
    """
    paths: list[list[str]] = []
    for name in (line.strip() for line in raw.splitlines()):
        if not name:
            continue
        current = paths[-1] if paths else []
        starts_path = (
            not current
            or name.casefold() in NON_PRODUCT_CATEGORY_ROOTS
            or name == paths[0][0]
            or (current[0].casefold() in NON_PRODUCT_CATEGORY_ROOTS and len(current) == 2)
        )
        if starts_path:
            paths.append([])
        paths[-1].append(name)
    return paths


def _size_order(value: str) -> tuple[int, float, str]:
    """Apparel sizes in size order, then numbers by value, then the rest by name."""
    upper = value.upper()
    if upper in APPAREL_SIZES:
        return (0, APPAREL_SIZES.index(upper), "")
    try:
        return (1, float(value), "")
    except ValueError:
        return (2, 0, value.casefold())


def _split_multi(value: str, separator: str) -> str | list[str]:
    """A multi-valued cell as a list; a single value (even "Gym\n") stays a string."""
    items = [item.strip() for item in _decode_entities(value).split(separator) if item.strip()]
    return items if len(items) > 1 else "".join(items)


def read_products(
    path: Path | str, *, store_views: dict[str, str] | None = None
) -> list[ProductRow]:
    """Read a product CSV in any supported layout (see the module docstring).
    `store_views` maps Magento store view codes to language tags ({"german": "de"})."""
    display = str(path)
    path = Path(path)
    _check_extension(path, display, PRODUCT_EXTENSIONS)
    table = _CsvTable(_read_text(path, display), display)
    if table.has("product_type") and (
        table.has("categories")
        or table.has("additional_attributes")
        or table.has("attribute_set_code")
    ):
        table.require("sku", "name", "description")
        return _read_magento_export(table, store_views or {})
    if table.has("category", "attribute_set") and not table.has("subcategory"):
        table.require("sku", "name", "description")
        return _read_sample_fixture(table)
    table.require("sku", "name", "description")
    return _read_own_layout(table)


def _remember_sku(seen: dict[str, int], sku: str, display: str, line: int) -> None:
    if sku in seen:
        raise ImportFileError(
            display, line, "sku", f"SKU {sku!r} already appears on line {seen[sku]}"
        )
    seen[sku] = line


_TRANSLATED_COLUMN = re.compile(r"^(name|description):(.+)$")


def _translated_columns(table: _CsvTable) -> dict[str, tuple[str, str]]:
    """{column: (field, tag)} for our layout's name:de / description:de columns; a tag
    that is not BCP 47 stops the import, naming the header's column."""
    found = {}
    for column in table.columns:
        match = _TRANSLATED_COLUMN.match(column)
        if not match:
            continue
        try:
            tag = language_tag(match.group(2))
        except LanguageTagError as exc:
            raise ImportFileError(table.display, table.header_line, column, str(exc)) from None
        found[column] = (match.group(1), tag)
    return found


def _translations(
    record: dict[str, str], columns: dict[str, tuple[str, str]], display: str, line: int
) -> dict[str, dict[str, str]]:
    """A record's translated base copy: a language with a description, and its name."""
    found: dict[str, dict[str, str]] = {}
    for column, (name, tag) in columns.items():
        value = record.get(column, "").strip()
        if not value:
            continue
        if name == "name":
            found.setdefault(tag, {})["name"] = _clean_name(value, display, line)
        else:
            found.setdefault(tag, {})["description"] = _clean_description(value, display, line)
    for tag, copy in found.items():
        if "description" not in copy:
            raise ImportFileError(
                display, line, f"description:{tag}", f"a {tag} name needs a {tag} description"
            )
    return found


def _read_own_layout(table: _CsvTable) -> list[ProductRow]:
    display = table.display
    translated = _translated_columns(table)
    fixed = {"sku", "name", "description", "category", "subcategory", *translated}
    seen: dict[str, int] = {}
    products = []
    for line, record in table:
        sku = _clean_sku(record["sku"], display, line)
        _remember_sku(seen, sku, display, line)
        name = _clean_name(record["name"], display, line)
        description = _clean_description(record["description"], display, line)
        category = _check_category(record.get("category", "").strip(), display, line, "category")
        subcategory = _check_category(
            record.get("subcategory", "").strip(), display, line, "subcategory"
        )
        attributes: Attributes = {
            key: value.strip()
            for key, value in record.items()
            if key not in fixed and value.strip()
        }
        translations = _translations(record, translated, display, line)
        products.append(
            ProductRow(
                sku, name, category, subcategory, description, attributes, line, translations
            )
        )
    return _non_empty(products, display)


def _read_sample_fixture(table: _CsvTable) -> list[ProductRow]:
    display = table.display
    fixed = {"sku", "name", "description", "category"} | SAMPLE_FIXTURE_NOISE_COLUMNS
    seen: dict[str, int] = {}
    products = []
    for line, record in table:
        sku = _clean_sku(record["sku"], display, line)
        _remember_sku(seen, sku, display, line)
        name = _clean_name(record["name"], display, line)
        description = _clean_description(record["description"], display, line)
        category, subcategory = _pick_category(_fixture_category_paths(record["category"]))
        _check_category(category, display, line, "category")
        _check_category(subcategory, display, line, "category")
        attributes: Attributes = {
            key: _split_multi(value, "\n")
            for key, value in record.items()
            if key not in fixed and value.strip()
        }
        products.append(ProductRow(sku, name, category, subcategory, description, attributes, line))
    return _non_empty(products, display)


@dataclass
class _MagentoRow:
    line: int
    sku: str
    name: str
    record: dict[str, str]
    additional: dict[str, str]
    variations: list[dict[str, str]]
    parent: str | None = None


def _parse_key_values(raw: str, display: str, line: int, column: str) -> dict[str, str]:
    """Parse Magento's "key=value,key=value".

    A piece without "key=" continues the previous value (a value holding a comma);
    values quoted as key="..." are unquoted.
    """
    result: dict[str, str] = {}
    key: str | None = None
    for piece in raw.split(","):
        name, sep, value = piece.partition("=")
        if sep and re.fullmatch(r"[A-Za-z0-9_]+", name.strip()):
            key = name.strip()
            result[key] = value
        elif key is not None:
            result[key] += "," + piece
        elif piece.strip():
            raise ImportFileError(
                display, line, column, f"expected key=value, found {piece.strip()!r}"
            )
    for key, value in result.items():
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('""', '"')
        result[key] = value
    return result


def _parse_variations(raw: str, display: str, line: int) -> list[dict[str, str]]:
    variations = []
    for number, piece in enumerate(raw.split("|"), start=1):
        if not piece.strip():
            continue
        variation = _parse_key_values(piece, display, line, "configurable_variations")
        if not variation.get("sku"):
            raise ImportFileError(
                display,
                line,
                "configurable_variations",
                f"variation {number} ({piece.strip()!r}) has no sku=",
            )
        variations.append(variation)
    return variations


def _store_view_language(code: str, store_views: dict[str, str], display: str, line: int) -> str:
    mapped = store_views.get(code) or store_views.get(code.lower())
    try:
        return language_tag(mapped or code)
    except LanguageTagError:
        raise ImportFileError(
            display,
            line,
            "store_view_code",
            f"store view {code!r} names no language: name store views by language "
            "(de, fr_ch) or map the code to one (--store-view CODE=TAG)",
        ) from None


def _read_magento_export(table: _CsvTable, store_views: dict[str, str]) -> list[ProductRow]:
    """Collapse a Magento export into one product per sellable item.

    1. Read every default-scope row, validating SKU, name, additional_attributes and
       variations. A store view's row carries that view's language's name and
       description (empty: the default's); it becomes a translation of its SKU.
    2. Attach each configurable product's variations to it; a variation must be a
       simple row of the file that belongs to no other parent.
    3. Every row that is not a variation and is visible in the shop becomes a product;
       a parent gathers its variations' sizes, colours etc. and falls back to its
       first variation's description and categories when its own are empty.
    """
    display = table.display
    rows: dict[str, _MagentoRow] = {}
    seen: dict[str, int] = {}
    # sku → {tag: (line, name, description)}
    views: dict[str, dict[str, tuple[int, str, str]]] = {}
    for line, record in table:
        code = record.get("store_view_code", "").strip()
        if code:
            tag = _store_view_language(code, store_views, display, line)
            sku = _clean_sku(record["sku"], display, line)
            if tag in views.get(sku, {}):
                raise ImportFileError(
                    display,
                    line,
                    "store_view_code",
                    f"SKU {sku!r} already has a {tag} row on line {views[sku][tag][0]}",
                )
            name = record["name"].strip()
            views.setdefault(sku, {})[tag] = (
                line,
                _clean_name(name, display, line) if name else "",
                html_to_text(record["description"]),
            )
            continue
        sku = _clean_sku(record["sku"], display, line)
        _remember_sku(seen, sku, display, line)
        name = _clean_name(record["name"], display, line)
        additional = _parse_key_values(
            record.get("additional_attributes", ""), display, line, "additional_attributes"
        )
        variations = []
        if record["product_type"].strip() == "configurable":
            variations = _parse_variations(record.get("configurable_variations", ""), display, line)
        rows[sku] = _MagentoRow(line, sku, name, record, additional, variations)

    for parent in rows.values():
        for variation in parent.variations:
            child = rows.get(variation["sku"])
            problem = None
            if child is None:
                problem = f"variation {variation['sku']!r} is not in the file"
            elif child is parent or child.variations:
                problem = f"variation {variation['sku']!r} is itself a configurable product"
            elif child.parent is not None:
                problem = (
                    f"variation {variation['sku']!r} already belongs to {child.parent!r} "
                    f"(line {rows[child.parent].line})"
                )
            if problem:
                raise ImportFileError(display, parent.line, "configurable_variations", problem)
            assert child is not None  # a missing one is a problem, raised above
            child.parent = parent.sku

    products = []
    for row in rows.values():
        visibility = row.record.get("visibility", "").strip().casefold()
        if row.parent is not None or visibility == MAGENTO_NOT_VISIBLE:
            continue
        products.append(_magento_product(row, rows, display))
    for sku in views:
        if sku not in rows:
            line = min(found[0] for found in views[sku].values())
            raise ImportFileError(
                display, line, "sku", f"store view row for SKU {sku!r}, which has no default row"
            )
    for product in products:
        for tag, (line, name, description) in views.get(product.sku, {}).items():
            if description:
                product.translations[tag] = {
                    "name": name or product.name,
                    "description": _clean_description(description, display, line),
                }
    return _non_empty(products, display)


def _magento_product(row: _MagentoRow, rows: dict[str, _MagentoRow], display: str) -> ProductRow:
    # In file order: "the first child" is the first one a person sees in the file.
    children = sorted((rows[v["sku"]] for v in row.variations), key=lambda child: child.line)
    record = row.record

    description_html = record["description"]
    if not html_to_text(description_html) and children:
        description_html = children[0].record["description"]
    description = _clean_description(description_html, display, row.line)

    categories = record.get("categories", "")
    if not categories.strip() and children:
        categories = children[0].record.get("categories", "")
    category, subcategory = _pick_category(_magento_category_paths(categories))
    _check_category(category, display, row.line, "categories")
    _check_category(subcategory, display, row.line, "categories")

    attributes: Attributes = {
        key: _split_multi(value, "|")
        for key, value in row.additional.items()
        if key not in MAGENTO_NOISE_KEYS and value
    }
    options: dict[str, set[str]] = {}
    for variation in row.variations:
        for key, value in variation.items():
            if key != "sku" and value:
                options.setdefault(key, set()).add(_decode_entities(value))
    for key, values in options.items():
        plural = key if key.endswith("s") else key + "s"
        attributes[plural] = sorted(values, key=_size_order)

    price = record.get("price", "").strip() or _lowest_price(children)
    if price:
        attributes["price"] = price
    return ProductRow(row.sku, row.name, category, subcategory, description, attributes, row.line)


def _lowest_price(children: list[_MagentoRow]) -> str:
    prices = []
    for child in children:
        raw = child.record.get("price", "").strip()
        try:
            prices.append((Decimal(raw), raw))
        except InvalidOperation:
            continue
    return min(prices)[1] if prices else ""


def _non_empty(products: list[ProductRow], display: str) -> list[ProductRow]:
    if not products:
        raise ImportFileError(display, None, None, "the file has no products")
    return products
