"""What a model answered, taken apart: the copy, the reviewer's rationale, the copy's text.

Any OpenAI-compatible endpoint may sit behind LLM_BASE_URL, and real models answer in
many shapes: JSON when they honour `response_format`, JSON in a code fence when they
half honour it, and marker text ("**Rationale:** ...") when they ignore it. This module
turns each of those into (copy, rationale), and normalises the copy into the format its
channel shows (plain text, or the e-mail markdown subset), telling the reviewer what it
took out and the caller what it could not fix.

It is pure: no Django models, no network, so every shape is tested as a table.
"""

from __future__ import annotations

import copy as _copy
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

COPY_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "copy": {"type": "string", "description": "The marketing copy, exactly as shown."},
        "rationale": {
            "type": "string",
            "description": "Why this copy suits the customer, for the human reviewer.",
        },
    },
    "required": ["copy", "rationale"],
    "additionalProperties": False,
}


def response_format() -> dict:
    """The `response_format` that asks the endpoint for COPY_SCHEMA.

    A fresh copy each call: the client library may mutate what it is given, and the
    schema is shared by every request.
    """
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "marketing_copy",
            "strict": True,
            "schema": _copy.deepcopy(COPY_SCHEMA),
        },
    }


class AnswerError(ValueError):
    """The answer is JSON but not the JSON we asked for; the message names what is wrong."""

    def __init__(self, message: str, *, reason: str = "schema") -> None:
        super().__init__(message)
        self.reason = reason


class _AnyScheme(MarkdownIt):
    """Parses every link whatever its scheme, so that a `javascript:` link is reported,
    not hidden as literal text."""

    def validateLink(self, url: str) -> bool:
        return True


def _parser() -> MarkdownIt:
    """CommonMark plus the GFM table and strikethrough models emit.

    `text_join` is off so escapes and entities stay separate tokens (plain text wants
    their literal character, markdown wants their source back); links of any scheme
    are parsed (_AnyScheme).
    """
    return _AnyScheme("commonmark").enable(["table", "strikethrough"]).disable("text_join")


_MD = _parser()


# ---------------------------------------------------------------------------- JSON

# A line before or after a fenced JSON answer ("Here is the JSON:") is chatter, as long
# as it is one short line; anything longer is marker text that happens to hold a fence.
_CHATTER_MAX = 200
# How a JSON object starts; copy never does ("{first_name}, ..." is a template bug).
_JSON_START = re.compile(r'^\{\s*"')


def _json_kind(value: object) -> str:
    """How a JSON value is named in messages: 'a list', 'a number', 'null'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _fenced_json(content: str) -> tuple[str, str] | None:
    """(body, info) of the one code fence the answer consists of, or None.

    The fence may be bare or tagged json, with at most one short line of chatter
    before and after it.
    """
    tokens = _MD.parse(content)
    fences = [t for t in tokens if t.type == "fence"]
    info = fences[0].info.strip().lower() if len(fences) == 1 else None
    if info not in ("", "json", "jsonc"):
        return None
    fence = fences[0]
    lines = re.split(r"\r\n|\r|\n", content)
    start, end = fence.map or (0, 0)
    before = [line for line in lines[:start] if line.strip()]
    after = [line for line in lines[end:] if line.strip()]
    for chatter in (before, after):
        if len(chatter) > 1 or (chatter and len(chatter[0]) > _CHATTER_MAX):
            return None
    return fence.content, info


def parse_json(content: str) -> tuple[str, str] | None:
    """(copy, rationale) from a JSON answer, or None when the answer is not JSON.

    None means the endpoint ignored `response_format` and the caller should read the
    marker format instead. Steps:

    1. Take the answer, or the body of the code fence it consists of.
    2. Decode it. Only an object or a list counts as JSON: a bare string or number is
       more likely copy in quotes than a broken JSON answer. Text that starts like
       an object ('{"'), or a ```json fence, that does not decode is a broken JSON answer
       (truncated, say), not copy, and raises.
    3. Check it against COPY_SCHEMA, except that a missing "rationale" is allowed
       (some endpoints drop empty keys) and extra keys are ignored. An empty "copy"
       also raises: it matches the schema but there is nothing to review.
    """
    text = content.strip().lstrip("\ufeff").strip()
    fenced = _fenced_json(text)
    candidate = (fenced[0] if fenced else text).strip()
    try:
        data = json.loads(candidate)
    except ValueError as exc:
        if _JSON_START.match(candidate) or (fenced and fenced[1].startswith("json")):
            raise AnswerError(
                f"The answer looks like JSON but does not decode: {exc}", reason="malformed"
            ) from exc
        return None
    if not isinstance(data, dict | list):
        return None
    if not isinstance(data, dict):
        raise AnswerError(f"The JSON answer is {_json_kind(data)}, not an object")
    if "copy" not in data:
        raise AnswerError("The JSON answer has no 'copy' string")
    for key in ("copy", "rationale"):
        if key in data and not isinstance(data[key], str):
            raise AnswerError(f"The JSON answer's '{key}' is {_json_kind(data[key])}, not a string")
    copy_text = data["copy"].strip()
    if not copy_text:
        raise AnswerError("The JSON answer's 'copy' is empty", reason="empty_copy")
    return copy_text, data.get("rationale", "").strip()


_TRUNCATED_COPY = re.compile(r'^\s*(?:```(?:json)?\s*)?\{\s*"copy"\s*:\s*"((?:[^"\\]|\\.)*)', re.S)


def salvage_json_copy(content: str) -> str:
    """The copy of a JSON answer cut off at the length limit ('{"copy": "Soft cot'):
    what the string holds up to the cut, unescaped; "" when there is none. The copy
    is kept for the reviewer and fails the `truncated` check."""
    found = _TRUNCATED_COPY.match(content)
    if not found:
        return ""
    text = found[1]
    # A cut can fall inside an escape sequence ('\u00', '\'): drop the partial one.
    text = re.sub(r"\\(?:u[0-9a-fA-F]{0,3})?$", "", text)
    try:
        return json.loads(f'"{text}"').strip()
    except ValueError:
        return text.strip()


# -------------------------------------------------------------------------- markers

# A section label: a line that is, apart from markup, a label word and a separator.
# The pieces are checked in _label() because which combinations count depends on more
# than a regex can say clearly (a bare "Rationale" must stand alone on its line).
_LABEL = r"""
    ^[ \t]*(?P<quote>(?:>[ \t]?)+)?
    [ \t]*(?P<heading>\#{1,6}[ \t]+)?
    (?P<open>[*_]{1,3})?
    (?P<label>%s)(?![^\W_])
    (?P<aside>[ \t]*\([^)\n]*\))?
    [ \t]*(?P<sep1>:|-(?=\s|$|[*_])|–|—)?
    (?P<close>[*_]{1,3})?
    [ \t]*(?P<sep2>:|-(?=\s|$)|–|—)?
    [ \t]*(?P<rest>.*?)[ \t]*$
"""
_RATIONALE_LABEL = re.compile(_LABEL % r"rationale|reasoning", re.I | re.X)
_COPY_LABEL = re.compile(_LABEL % r"(?:marketing[ \t]+|product[ \t]+)?copy", re.I | re.X)
_RULE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$")


@dataclass(frozen=True)
class _Label:
    line: int
    rest: str  # text after the label on the same line
    quoted: bool


def _label(pattern: re.Pattern[str], line: str, index: int) -> _Label | None:
    """The label on `line`, or None if the line is ordinary text."""
    m = pattern.match(line)
    if not m:
        return None
    opener, closer, rest = m["open"], m["close"], m["rest"]
    separated = bool(m["sep1"] or m["sep2"])
    if m["sep1"] and m["sep2"]:
        return None
    if opener and not closer:
        # "*Rationale: the whole line in italics*"
        if not (separated and rest.endswith(opener)):
            return None
        rest = rest[: -len(opener)].rstrip()
    elif closer != opener:  # "Rationale**:" or "**Rationale_:"
        return None
    if m["heading"]:
        rest = rest.rstrip("#").rstrip()  # "### Rationale ###"
    if not separated and not opener and rest:
        return None  # "Rationale behind the design..." is a sentence, not a label
    return _Label(index, rest, bool(m["quote"]))


def _first(pattern: re.Pattern[str], lines: list[str], start: int, stop: int) -> _Label | None:
    for index in range(start, stop):
        found = _label(pattern, lines[index], index)
        if found:
            return found
    return None


def _section(label: _Label, lines: list[str], stop: int) -> str:
    """The text of a labelled section: the rest of its line, then the lines up to `stop`.

    A quoted label ("> **Rationale:** ...") usually quotes its whole section, so the
    quote markers come off the section's later lines too.
    """
    body = lines[label.line + 1 : stop]
    if label.quoted:
        body = [re.sub(r"^[ \t]*>[ \t]?", "", line) for line in body]
    return _clean([label.rest, *body] if label.rest else body)


def _clean(lines: list[str]) -> str:
    """Strip a section, and the horizontal rules models put between sections."""
    lines = list(lines)
    while lines and (not lines[0].strip() or _RULE.match(lines[0])):
        lines.pop(0)
    while lines and (not lines[-1].strip() or _RULE.match(lines[-1])):
        lines.pop()
    return "\n".join(lines).strip()


def split_marked(content: str) -> tuple[str, str]:
    """(copy, rationale) from the marker format; rationale "" when there is no marker.

    Never raises: an answer without a rationale is still copy, and whether that is
    acceptable is the caller's decision. Steps:

    1. Normalise line endings to '\\n'.
    2. Find the FIRST rationale label line. The first, not the last: a rationale that
       discusses "the rationale" on a later line must stay whole, and a label is only
       ever at the start of a line, so copy that says "our rationale: ..." mid-sentence
       has none.
    3. A Copy label before it starts the copy (anything before that label is not copy,
       and is dropped). Without one, the copy is everything before the rationale.
    4. When nothing but a rationale comes first, the answer is rationale-first: a Copy
       label after the rationale ends the rationale and starts the copy.
    """
    lines = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    rationale = _first(_RATIONALE_LABEL, lines, 0, len(lines))
    if rationale is None:
        copy_label = _first(_COPY_LABEL, lines, 0, len(lines))
        if copy_label is None:
            return _clean(lines), ""
        return _section(copy_label, lines, len(lines)), ""

    copy_label = _first(_COPY_LABEL, lines, 0, rationale.line)
    if copy_label is not None:
        return _section(copy_label, lines, rationale.line), _section(rationale, lines, len(lines))
    before = _clean(lines[: rationale.line])
    if before:
        return before, _section(rationale, lines, len(lines))
    copy_label = _first(_COPY_LABEL, lines, rationale.line + 1, len(lines))
    if copy_label is None:
        return "", _section(rationale, lines, len(lines))
    return _section(copy_label, lines, len(lines)), _section(rationale, lines, copy_label.line)


# ---------------------------------------------------------------------- normalising

FORMATS = ("plain", "markdown")


@dataclass(frozen=True)
class Normalised:
    """The copy in its channel's format, and what it took to get there.

    `removed` is for the reviewer (what normalisation took out); `problems` is what it
    could not fix, and the caller fails a `format` check naming them.
    """

    text: str
    removed: list[str]
    problems: list[str]


# A preamble is recognised only by typical introduction phrasing, never by its colon
# alone: "Three reasons to love it:" and "Here's why you'll love it:" open real copy.
# It is "here is / below is" naming the thing written ("the copy", "a version", "your
# product description"), "here it is" or "here you go", optionally after a courtesy
# ("Absolutely! Here's..."); or it opens with "Sure", "Certainly" or "Of course", which
# copy does not.
_COURTESY = r"(?:sure|certainly|of\s+course|absolutely|okay|ok|alright|great)\s*[!.,]\s*"
_WRITTEN = (
    r"copy|version|description|text|draft|message|e-?mail|post|caption|tagline|"
    r"headline|option|variant|rewrite|blurb|content|suggestion|result|sms|notification"
)
_PREAMBLE = re.compile(
    rf"""^(?:
        (?:sure|certainly|of\s+course)\s*[!.,].*
      | (?:{_COURTESY})?
        (?:
            here\s+(?:it\s+is|you\s+go|they\s+are)\b.*
          | (?:here(?:'s|’s|\s+is|\s+are)|below\s+(?:is|are)|the\s+following\s+is)
            \b(?:.*\b)?(?:{_WRITTEN})\b.*
        )
    ):$""",
    re.I | re.X,
)
_PREAMBLE_MAX = 160

# Opening and closing marks that may wrap the whole copy, with the marks that must
# not occur inside it for the pair to be one quotation around everything.
_QUOTES = {'"': ('"', '"'), "“": ("”", "“”"), "„": ("“", "„“”"), "«": ("»", "«»")}
_APOSTROPHE_QUOTES = {"'": "'", "‘": "’"}

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>~&])")
_LINE_START = re.compile(r"^([ \t]*)(\#{1,6}(?=\s|$)|[-+*>](?=\s|$)|\d{1,9}(?=[.)](?:\s|$)))")
_HTML_TAG = re.compile(r"<\s*/?\s*([A-Za-z][A-Za-z0-9-]*)")
_LINK_SCHEMES = ("http", "https", "mailto")
_NOTE_MAX = 60


def _shown(text: str) -> str:
    """Text quoted in a note, cut short so one note stays one line."""
    text = " ".join(text.split())
    return text if len(text) <= _NOTE_MAX else text[: _NOTE_MAX - 1] + "…"


def _strip_preamble(text: str) -> tuple[str, str | None]:
    first, newline, rest = text.partition("\n")
    line = first.strip()
    bare = line.strip("*_#> \t")
    if not newline or not rest.strip() or len(line) > _PREAMBLE_MAX:
        return text, None
    if not _PREAMBLE.match(bare.rstrip("*_ \t")):
        return text, None
    return rest.strip(), f"preamble '{_shown(line)}'"


def _strip_fence(text: str) -> tuple[str, str | None]:
    """The inside of a code fence that wraps the whole copy ("```markdown ... ```")."""
    tokens = _MD.parse(text)
    if len(tokens) == 1 and tokens[0].type == "fence" and tokens[0].content.strip():
        return tokens[0].content.strip(), "code fence"
    return text, None


def _strip_quotes(text: str) -> tuple[str, str | None]:
    """The inside of quotation marks around the whole copy, and only the whole copy.

    '"Soft." "Warm."' is two quotations, so a pair counts only when no mark of its kind
    occurs inside; for single quotes, an apostrophe between letters ("it's") may.
    """
    if len(text) < 3:
        return text, None
    opening, closing, inner = text[0], text[-1], text[1:-1]
    if opening in _QUOTES:
        expected, forbidden = _QUOTES[opening]
        if closing == expected and not any(mark in inner for mark in forbidden + opening):
            return inner.strip(), "wrapping quotes"
    if opening in _APOSTROPHE_QUOTES and closing == _APOSTROPHE_QUOTES[opening]:
        marks = {opening, closing}
        for i, char in enumerate(inner):
            if char in marks and not (
                0 < i < len(inner) - 1 and inner[i - 1].isalnum() and inner[i + 1].isalnum()
            ):
                return text, None
        return inner.strip(), "wrapping quotes"
    return text, None


def _unwrap(text: str) -> tuple[str, list[str]]:
    """Take off preambles, a whole-copy code fence and wrapping quotes, in any nesting."""
    notes: list[str] = []
    while True:
        for strip in (_strip_preamble, _strip_fence, _strip_quotes):
            text, note = strip(text)
            if note:
                notes.append(note)
                break
        else:
            return text, notes


@dataclass
class _Frame:
    """An open inline element while its children are rendered."""

    token: Token | None
    out: str = ""  # in the target format
    plain: str = ""  # as the reader sees it, for notes


@dataclass(frozen=True)
class _Block:
    text: str
    line: int
    is_break: bool = False


class _Renderer:
    """Renders markdown-it tokens in one format, noting what it changed.

    `changed` is set by every change, noted or not (a hard line break's trailing
    spaces are not worth a note), so an untouched text can be returned as written.
    """

    def __init__(self, fmt: str, source: str) -> None:
        self.markdown = fmt == "markdown"
        # markdown-it numbers lines after turning every line ending into "\n".
        self.lines = re.split(r"\r\n|\r|\n", source)
        self.removed: list[str] = []
        self.problems: list[str] = []
        self.changed = False

    def note(self, what: str) -> None:
        self.changed = True
        if what not in self.removed:
            self.removed.append(what)

    def problem(self, what: str) -> None:
        if what not in self.problems:
            self.problems.append(what)

    # -- blocks

    def render(self, tokens: list[Token]) -> str:
        blocks, _ = self.blocks(tokens, 0, None)
        return self.join(blocks)

    def join(self, blocks: list[_Block]) -> str:
        """Blocks as lines, a blank line between those the source kept apart.

        markdown-it's maps say where a block starts but a list item's map also covers
        the blank line after it, so the source line before each block decides.
        """
        parts: list[str] = []
        blank = False
        for block in blocks:
            if block.is_break:
                blank = True
                continue
            if parts:
                before = self.lines[block.line - 1] if block.line > 0 else ""
                blank = blank or not before.strip(" \t>")
                parts.append("\n\n" if blank else "\n")
            parts.append(block.text)
            blank = False
        return "".join(parts)

    def blocks(self, tokens: list[Token], i: int, close: str | None) -> tuple[list[_Block], int]:
        out: list[_Block] = []
        while i < len(tokens):
            token = tokens[i]
            line = token.map[0] if token.map else 0
            kind = token.type
            if kind == close:
                return out, i + 1
            if kind == "paragraph_open":
                out.append(_Block(self.inline(tokens[i + 1].children or []), line))
                i += 3
            elif kind == "heading_open":
                text = self.inline(tokens[i + 1].children or [])
                written = self.lines[line].strip() if token.markup.startswith("#") else text
                self.note(f"heading '{_shown(written)}' (kept as text)")
                out.append(_Block(self.protect(text) if self.markdown else text, line))
                i += 3
            elif kind in ("fence", "code_block"):
                self.note("code fence" if kind == "fence" else "indented code block")
                content = token.content.rstrip("\n")
                out.append(_Block(self.literal(content) if self.markdown else content, line))
                i += 1
            elif kind == "hr":
                self.note("horizontal rule")
                out.append(_Block("", line, is_break=True))
                i += 1
            elif kind == "html_block":
                self.html(token.content)
                out.append(_Block(token.content.rstrip("\n"), line))
                i += 1
            elif kind == "table_open":
                self.problem("a table")
                end = token.map[1] if token.map else line + 1
                out.append(_Block("\n".join(self.lines[line:end]).rstrip(), line))
                while tokens[i].type != "table_close":
                    i += 1
                i += 1
            elif kind == "blockquote_open":
                self.note("blockquote")
                inner, i = self.blocks(tokens, i + 1, "blockquote_close")
                out.extend(inner)
            elif kind in ("bullet_list_open", "ordered_list_open"):
                text, i = self.list_block(tokens, i)
                out.append(_Block(text, line))
            else:  # a token this parser configuration does not produce
                i += 1
        return out, i

    # Not named `list`: the annotations of the methods below would then name it.
    def list_block(self, tokens: list[Token], i: int) -> tuple[str, int]:
        ordered = tokens[i].type == "ordered_list_open"
        close = "ordered_list_close" if ordered else "bullet_list_close"
        if not self.markdown:
            self.note("numbered list markers" if ordered else "bullet list markers")
        items: list[_Block] = []
        i += 1
        while tokens[i].type != close:
            item = tokens[i]
            inner, i = self.blocks(tokens, i + 1, "list_item_close")
            text = self.join(inner)
            if self.markdown:
                marker = f"{item.info}{item.markup}" if ordered else item.markup
                indent = " " * (len(marker) + 1)
                first, *more = text.split("\n")
                text = "\n".join(
                    [f"{marker} {first}" if first else marker]
                    + [indent + m if m else m for m in more]
                )
            items.append(_Block(text, item.map[0] if item.map else 0))
        return self.join(items), i + 1

    # -- inline

    def inline(self, children: list[Token]) -> str:
        stack = [_Frame(None)]
        for token in children:
            top = stack[-1]
            kind = token.type
            if kind == "text":
                top.out += token.content
                top.plain += token.content
            elif kind == "text_special":
                self.special(top, token)
            elif kind == "softbreak":
                top.out += "\n"
                top.plain += "\n"
            elif kind == "hardbreak":
                if self.markdown:
                    top.out += "  \n"
                else:
                    self.changed = True
                    top.out += "\n"
                top.plain += "\n"
            elif kind.endswith("_open"):
                stack.append(_Frame(token))
            elif kind.endswith("_close"):
                frame = stack.pop()
                self.close(stack[-1], frame)
            elif kind == "code_inline":
                self.note(f"inline code '{_shown(token.content)}'")
                top.out += self.literal(token.content) if self.markdown else token.content
                top.plain += token.content
            elif kind == "image":
                self.problem("an image")
                written = f"![{token.content}]({token.attrGet('src') or ''})"
                top.out += written
                top.plain += written
            elif kind == "html_inline":
                self.html(token.content)
                top.out += token.content
                top.plain += token.content
        while len(stack) > 1:  # markdown-it closes what it opens; belt and braces
            frame = stack.pop()
            self.close(stack[-1], frame)
        return stack[0].out

    def special(self, top: _Frame, token: Token) -> None:
        """An escape ("\\*") or an entity ("&amp;"): markdown keeps it, plain decodes it."""
        top.plain += token.content
        if self.markdown:
            top.out += token.markup
            return
        top.out += token.content
        if token.info == "entity":
            self.note(f"HTML entity '{token.markup}'")
        else:
            self.note("backslash escapes")

    def close(self, parent: _Frame, frame: _Frame) -> None:
        token = frame.token
        assert token is not None
        kind = token.type.removesuffix("_open")
        shown = _shown(frame.plain)
        parent.plain += frame.plain
        if kind in ("strong", "em", "s"):
            name = {"strong": "bold", "em": "italic", "s": "strikethrough"}[kind]
            if self.markdown and kind != "s":
                parent.out += f"{token.markup}{frame.out}{token.markup}"
            else:
                self.note(f"{name} around '{shown}'")
                parent.out += frame.out
        elif kind == "link":
            self.link(parent, frame, token)
        else:
            parent.out += frame.out

    def link(self, parent: _Frame, frame: _Frame, token: Token) -> None:
        href = str(token.attrGet("href") or "")
        safe = urlsplit(href).scheme.lower() in _LINK_SCHEMES
        if not safe:
            self.problem(f"a link to '{_shown(href)}' (only http, https and mailto links work)")
        if self.markdown and safe:
            if token.markup == "autolink":
                parent.out += f"<{frame.out}>"
            else:
                title = token.attrGet("title")
                dest = f"<{href}>" if "(" in href or ")" in href else href
                suffix = ' "{}"'.format(str(title).replace('"', '\\"')) if title else ""
                parent.out += f"[{frame.out}]({dest}{suffix})"
            return
        if token.markup == "autolink":
            self.note(f"angle brackets around '{_shown(frame.plain)}'")
        else:
            self.note(f"link '{_shown(frame.plain)}' ({_shown(href)})")
        parent.out += frame.out

    def html(self, content: str) -> None:
        m = _HTML_TAG.match(content.strip())
        self.problem(f"HTML <{m[1].lower()}>" if m else "an HTML comment or declaration")

    # -- markdown output helpers

    def protect(self, text: str) -> str:
        """Escape what would start a list, heading or quote once the text is a paragraph."""
        return "\n".join(_LINE_START.sub(_escape_line_start, line) for line in text.split("\n"))

    def literal(self, text: str) -> str:
        """Code contents as markdown text that renders as the same characters."""
        children = _MD.parseInline(text)[0].children or []
        if any(child.type not in ("text", "softbreak") for child in children):
            text = _MD_SPECIAL.sub(r"\\\1", text)
        return self.protect(text)


def _escape_line_start(m: re.Match[str]) -> str:
    indent, marker = m[1], m[2]
    if marker[0].isdigit():
        return f"{indent}{marker}\\"  # "1\. " keeps the number, loses the list
    return f"{indent}\\{marker}"


def normalise(text: str, *, fmt: str) -> Normalised:
    """The copy in the channel's format: "plain", or "markdown" (the e-mail subset).

    1. Take off what wraps the copy: a preamble ("Here is the copy:"), a code fence
       around all of it, quotation marks around all of it.
    2. Parse the rest with markdown-it and render it in `fmt`: plain text keeps only
       text (paragraphs, and lines for headings and list items); markdown also keeps
       **bold**, *italic*, http(s)/mailto links and lists. Tables, images, raw HTML
       and links to other schemes are problems; their text is left in.
    3. If rendering changed nothing, return the text as written rather than as
       rendered, so copy without markdown comes out byte for byte.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown copy format {fmt!r}: expected one of {', '.join(FORMATS)}")
    source, removed = _unwrap(text.strip())
    renderer = _Renderer(fmt, source)
    rendered = renderer.render(_MD.parse(source))
    return Normalised(
        text=rendered.strip() if renderer.changed else source,
        removed=removed + [note for note in renderer.removed if note not in removed],
        problems=renderer.problems,
    )
