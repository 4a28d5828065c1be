"""The offline writer: an OpenAI-compatible HTTP server that writes copy by fixed rules.

It is NOT a language model, and every answer says so in its metadata
(`hyperpers_offline_writer.is_language_model` is false). It is bundled so that the demo
and the tests take the same path as production - the official `openai` client over
HTTP - with no network and no model. Only the standard library is used, so it starts
anywhere the project's Python does.

The copy is composed from the JSON in the last user message's <data>...</data> block
(see generation.prompting.render): a hook sentence chosen by the audience's value tier,
a line naming the preferred subcategory, one or two sentences of the product
description, a value-for-money line for discount-sensitive audiences and a closing
line. Framing sentences come from a small phrasebook per language (en, de, fr, es, it,
nl; others fall back to English); the product name and description are kept as given.
Phrasings are varied by a hash of the SKU and the audience, never at random, so the
same request always gets the same answer (temperature is ignored). The rationale is
written in English for the reviewer.

It is also a test server for the generation engine, standing in for the range of real
providers under load: a latency (fixed, uniform jitter or log-normal), a concurrency
limit and sliding-minute rpm/tpm limits answered with 429 and Retry-After, OpenAI's
x-ratelimit-* headers, a prefix cache, the answer shapes of hosted models, and injected
faults drawn from a seedable RNG. WriterSettings lists them; they can be changed while
it serves.

Profiles (setting `profile`) change the shape of the content, never the copy's words.
Which shape an answer gets comes from a hash of the request's messages, not the RNG, so
a retried request is answered the same way. Only `json` reads response_format; the
others ignore it, as an endpoint without structured output does.
- plain (the default): the copy, a blank line, "Rationale: ...".
- markdown: the product name bolded (**Name**), some copies under a "## Name" or
  "# Name" heading, and the rationale marked in one of the ways models mark it
  ("**Rationale**: ", "**Rationale:** ", "### Rationale" on its own line, "Rationale - ",
  "Rationale — ", "*Rationale*: ", "RATIONALE: ").
- json: with response_format json_schema or json_object, {"copy": ..., "rationale": ...},
  one answer in four in a ```json code fence; without it, as plain.
- terse: one answer in three without a rationale, the rest with a short one.
- chatty: a preamble line ("Here is the copy:", "Sure! Here's ..."), some copies in
  double quotes, then "Rationale: ...".
- truncating: one answer in four cut off mid-copy with finish_reason "length"; the rest
  as plain.
- rambling: the rationale restated forty times, so answers run far past an estimate
  (and past max_tokens when it is set).
An answer longer than max_tokens is cut as before, whatever the profile.

Faults (setting `<fault>_rate`; a request draws at most one, the rates add up to 1 at
most): error_5xx (500/502/503), timeout (hold, then 504 or close), malformed (cut-off
JSON), empty (no choices), no_rationale, the copy faults (overreach: names a value only
a minority of the segment has; banned_phrase: uses the brand's first banned phrase;
drop_protected: rewords the product name; echo_input: repeats the audience's longest
text value, as a model following injected text does), reset (TCP reset), rate_limit (a 429 at once,
with Retry-After and x-ratelimit-remaining-* showing plenty left: a busy server, not a
spent budget), refusal (content null, message.refusal set), content_filter (content
null, finish_reason "content_filter") and bad_json (JSON off the schema, for a json
answer only; any other answer goes out whole). fail_first_n fails the next N with 503.

The prefix cache (settings `prefix_cache`, `prefix_cache_block_tokens`) works like
OpenAI's automatic prompt caching: the prompt - the messages' roles and contents in
order - is hashed cumulatively in blocks of that many tokens (four characters a token),
the last PREFIX_CACHE_ENTRIES block hashes are remembered, and
usage.prompt_tokens_details.cached_tokens reports the tokens of the longest run of
leading blocks seen before (never more than prompt_tokens).

Endpoints:
- POST /v1/chat/completions (non-streaming; `n`, `max_tokens` and, in the json profile,
  `response_format` are honoured). The only endpoint that is limited, fault-injected
  and shaped.
- GET /v1/models and GET /v1/models/<id>
- GET /_offline/requests: what the server has received, for tests; DELETE clears it.
- GET /_offline/config: the settings; POST it a JSON object of settings to change
  (an unknown setting or a bad value gets 400 naming it).
- GET /_offline/stats: counters of completions (requests, completed, rejected_429 and
  rejected_by {concurrency, requests, tokens, random}, errors_injected per fault,
  shapes: the completed answers per shape - plain, bold_name, marked, json,
  json_fenced, bad_json, no_rationale, short_rationale, preamble, truncated) and
  in_flight/max_in_flight.
- POST /_offline/reset: clear the records, counters, shapes, rate windows and prefix
  cache.
When the server has an api_key, all of them need `Authorization: Bearer <key>`.
Every response carries the x-ratelimit-* headers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import html
import json
import logging
import math
import random
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

DEFAULT_MODELS: tuple[str, ...] = ("offline-writer-1",)
SYSTEM_FINGERPRINT = "offline-writer-rules-1"
NOTE = (
    "Rule-based offline writer bundled with Hyperpers for demos and tests; it composes "
    "copy from the prompt's inputs by fixed rules. It is not a language model."
)
METADATA: dict[str, Any] = {"is_language_model": False, "note": NOTE}
DEFAULT_MAX_LENGTH = 600
# A summary value describes a segment only when most of its members share it.
DOMINANT_SHARE = 0.5
# Customer attributes that identify a person; never read, so never echoed. Mirrors
# generation.prompting.PERSONAL_ATTRIBUTES, which this stdlib-only module cannot import.
PERSONAL_ATTRIBUTES = frozenset(
    {"email", "e_mail", "phone", "mobile", "name", "first_name", "last_name", "address",
     "street", "postcode", "zip", "birthdate", "date_of_birth", "ip", "external_id"}
)  # fmt: skip

# --------------------------------------------------------------------------------------
# The phrasebook. {name}, {subcategory}, {brand} and {terms} are filled in as given.

PHRASEBOOK: dict[str, dict[str, Any]] = {
    "en": {
        "language": "English",
        "hook_quality": [
            "{name}: made for people who notice quality.",
            "{name}, crafted with care down to the last detail.",
            "With {name}, quality comes first.",
        ],
        "hook_value": [
            "{name}: the smart choice for every day.",
            "{name} gives you more for your money.",
        ],
        "hook_balanced": [
            "{name}: quality and price in balance.",
            "{name} brings good quality at a fair price.",
        ],
        "hook_neutral": ["Meet {name}.", "Discover {name}.", "Say hello to {name}."],
        "subcategory": [
            "A natural pick for {subcategory} fans.",
            "Made with {subcategory} lovers in mind.",
        ],
        "value_line": ["Great value for money.", "A fair price for what you get."],
        "featuring": "Featuring {terms}.",
        "and": "and",
        "closing": ["Discover it at {brand}.", "Find it at {brand}."],
        "closing_nobrand": ["Discover it today.", "Take a closer look today."],
        "nothing": "Take a closer look.",
    },
    "de": {
        "language": "German",
        "hook_quality": [
            "{name}: für alle, die Qualität zu schätzen wissen.",
            "{name} – mit Sorgfalt gefertigt, bis ins letzte Detail.",
            "Bei {name} steht Qualität an erster Stelle.",
        ],
        "hook_value": [
            "{name}: die clevere Wahl für jeden Tag.",
            "Mit {name} bekommen Sie mehr für Ihr Geld.",
        ],
        "hook_balanced": [
            "{name}: Qualität und Preis im Gleichgewicht.",
            "{name} verbindet gute Qualität mit einem fairen Preis.",
        ],
        "hook_neutral": ["Entdecken Sie {name}.", "Das ist {name}.", "Neu für Sie: {name}."],
        "subcategory": [
            "Wie gemacht für alle, die {subcategory} lieben.",
            "Für Fans von {subcategory} eine naheliegende Wahl.",
        ],
        "value_line": [
            "Ein starkes Preis-Leistungs-Verhältnis.",
            "Viel Leistung für einen fairen Preis.",
        ],
        "featuring": "Mit {terms}.",
        "and": "und",
        "closing": ["Jetzt bei {brand} entdecken.", "Erhältlich bei {brand}."],
        "closing_nobrand": ["Jetzt entdecken.", "Schauen Sie es sich an."],
        "nothing": "Jetzt entdecken.",
    },
    "fr": {
        "language": "French",
        "hook_quality": [
            "{name} : pour celles et ceux qui exigent la qualité.",
            "{name}, pensé avec soin jusque dans les moindres détails.",
            "Avec {name}, la qualité passe avant tout.",
        ],
        "hook_value": [
            "{name} : le choix malin au quotidien.",
            "Avec {name}, vous en avez plus pour votre argent.",
        ],
        "hook_balanced": [
            "{name} : l'équilibre entre qualité et prix.",
            "{name} allie bonne qualité et prix juste.",
        ],
        "hook_neutral": ["Découvrez {name}.", "Voici {name}.", "Faites connaissance avec {name}."],
        "subcategory": [
            "Un choix naturel pour les amateurs de {subcategory}.",
            "Pensé pour les passionnés de {subcategory}.",
        ],
        "value_line": [
            "Un excellent rapport qualité-prix.",
            "Un prix juste pour ce que vous obtenez.",
        ],
        "featuring": "Avec {terms}.",
        "and": "et",
        "closing": ["À découvrir chez {brand}.", "Disponible chez {brand}."],
        "closing_nobrand": ["À découvrir dès maintenant.", "À découvrir sans attendre."],
        "nothing": "À découvrir.",
    },
    "es": {
        "language": "Spanish",
        "hook_quality": [
            "{name}: para quienes valoran la calidad.",
            "{name}, hecho con esmero hasta el último detalle.",
            "Con {name}, la calidad es lo primero.",
        ],
        "hook_value": [
            "{name}: la opción inteligente para cada día.",
            "Con {name} obtienes más por tu dinero.",
        ],
        "hook_balanced": [
            "{name}: el equilibrio entre calidad y precio.",
            "{name} combina buena calidad y un precio justo.",
        ],
        "hook_neutral": ["Descubre {name}.", "Te presentamos {name}.", "Así es {name}."],
        "subcategory": [
            "Una elección natural para los amantes de {subcategory}.",
            "Pensado para los fans de {subcategory}.",
        ],
        "value_line": [
            "Una excelente relación calidad-precio.",
            "Un precio justo por lo que obtienes.",
        ],
        "featuring": "Con {terms}.",
        "and": "y",
        "closing": ["Descúbrelo en {brand}.", "Disponible en {brand}."],
        "closing_nobrand": ["Descúbrelo hoy.", "Échale un vistazo hoy."],
        "nothing": "Descúbrelo.",
    },
    "it": {
        "language": "Italian",
        "hook_quality": [
            "{name}: per chi apprezza la qualità.",
            "{name}, curato in ogni dettaglio.",
            "Con {name}, la qualità viene prima di tutto.",
        ],
        "hook_value": [
            "{name}: la scelta furba per ogni giorno.",
            "Con {name} ottieni di più per il tuo denaro.",
        ],
        "hook_balanced": [
            "{name}: il giusto equilibrio tra qualità e prezzo.",
            "{name} unisce buona qualità e prezzo onesto.",
        ],
        "hook_neutral": ["Scopri {name}.", "Ecco {name}.", "Ti presentiamo {name}."],
        "subcategory": [
            "Una scelta naturale per chi ama {subcategory}.",
            "Pensato per gli appassionati di {subcategory}.",
        ],
        "value_line": [
            "Un ottimo rapporto qualità-prezzo.",
            "Un prezzo onesto per ciò che ottieni.",
        ],
        "featuring": "Con {terms}.",
        "and": "e",
        "closing": ["Scoprilo da {brand}.", "Disponibile da {brand}."],
        "closing_nobrand": ["Scoprilo oggi.", "Dai un'occhiata oggi."],
        "nothing": "Scoprilo.",
    },
    "nl": {
        "language": "Dutch",
        "hook_quality": [
            "{name}: voor wie kwaliteit weet te waarderen.",
            "{name}, met zorg gemaakt tot in het kleinste detail.",
            "Bij {name} staat kwaliteit voorop.",
        ],
        "hook_value": [
            "{name}: de slimme keuze voor elke dag.",
            "Met {name} krijg je meer voor je geld.",
        ],
        "hook_balanced": [
            "{name}: kwaliteit en prijs in balans.",
            "{name} combineert goede kwaliteit met een eerlijke prijs.",
        ],
        "hook_neutral": ["Ontdek {name}.", "Maak kennis met {name}.", "Dit is {name}."],
        "subcategory": [
            "Een logische keuze voor liefhebbers van {subcategory}.",
            "Bedacht voor fans van {subcategory}.",
        ],
        "value_line": [
            "Een uitstekende prijs-kwaliteitverhouding.",
            "Een eerlijke prijs voor wat je krijgt.",
        ],
        "featuring": "Met {terms}.",
        "and": "en",
        "closing": ["Ontdek het bij {brand}.", "Verkrijgbaar bij {brand}."],
        "closing_nobrand": ["Ontdek het vandaag.", "Bekijk het vandaag."],
        "nothing": "Ontdek het.",
    },
}

_TIER_ANGLES: dict[str, str] = {
    **dict.fromkeys(("high", "premium", "vip", "gold", "platinum", "top"), "quality"),
    **dict.fromkeys(("mid", "medium", "middle", "silver", "standard", "regular"), "balanced"),
    **dict.fromkeys(("low", "budget", "bronze", "entry", "basic"), "value"),
}
_ANGLE_WORDS: dict[str, tuple[str, ...]] = {
    "quality": ("quality", "craft", "premium", "durable", "material", "detail", "leather",
                "merino", "cotton", "engineered", "design", "comfort"),
    "value": ("price", "value", "everyday", "every day", "versatile", "easy", "practical",
              "afford", "save", "lasting"),
}  # fmt: skip
_TRAITS: dict[str, tuple[str, ...]] = {
    "value_tier": ("value_tier", "tier"),
    "discount_sensitivity": ("discount_sensitivity", "price_sensitivity"),
    "preferred_subcategory": ("preferred_subcategory", "favorite_subcategory"),
}

# Reviewer notes a rule can follow. Matched case-insensitively as substrings.
_SHORTER = ("shorter", "shorten", "too long", "concise", "brief", "kürzer", "plus court",
            "más corto", "mas corto", "più breve", "korter")  # fmt: skip
_LONGER = ("longer", "more detail", "too short", "expand", "länger", "plus long",
           "más largo", "più lungo", "langer")  # fmt: skip
_PRICE_TALK = re.compile(r"\b(?:pric\w*|discount\w*|cheap\w*|money|deals?|sales?|bargains?)\b")
_NEGATION = re.compile(r"\b(?:no|not|don't|dont|without|avoid|less|stop|drop|never)\b")
_QUOTED_BAN = re.compile(
    r"(?:avoid|don't use|do not use|don't say|do not say|without|remove|drop|no more|never)"
    r"\s+(?:the\s+)?(?:words?|phrases?|terms?)?\s*[\"“'‘«]([^\"”'’»]{2,60})[\"”'’»]",
    re.I,
)

_TAG = re.compile(r"<[^>]*>")
_BLOCK_TAG = re.compile(r"<(?:br|/?p|/?div|/h[1-6]|/?ul|/?ol|/li|tr)\b[^>]*>", re.I)
_LIST_ITEM = re.compile(r"<(?:li|h[1-6])\b[^>]*>", re.I)
_BULLET = re.compile(r"^\s*(?:#{1,6}|[-*•]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[^\sa-zà-ÿ])")


# --------------------------------------------------------------------------------------
# Composition


@dataclass
class _Piece:
    text: str
    order: int  # position in the copy
    priority: int  # lower is kept first when max_length is tight
    kind: str
    cut: bool = False  # cut at a word boundary to fit


@dataclass
class _Plan:
    """Everything compose() decided, for the copy and for the rationale."""

    # (kind of the sentence it shaped, or "" for none; the reason)
    reasons: list[tuple[str, str]] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    followed: list[str] = field(default_factory=list)


def extract_data(text: str) -> dict[str, Any] | None:
    """The JSON object in the text's <data>...</data> block, or None.

    The block runs to the last </data> (prompting escapes the tag inside values); an
    earlier <data> in the instruction text is skipped when what follows is not JSON.
    """
    end = text.rfind("</data>")
    start = text.find("<data>")
    while 0 <= start < end:
        try:
            value = json.loads(text[start + len("<data>") : end])
        except ValueError:
            start = text.find("<data>", start + 1)
            continue
        return value if isinstance(value, dict) else None
    return None


def message_text(content: Any) -> str:
    """A message's text, whether a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def compose_reply(messages: Sequence[Mapping[str, Any]]) -> str:
    """The assistant's answer to a chat: compose() on the last user message's data."""
    users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
    last = users[-1] if users else (messages[-1] if messages else {})
    text = message_text(last.get("content")) if isinstance(last, Mapping) else ""
    data = extract_data(text)
    if data is None:
        return compose(None, fallback_text=text.replace("<data>", " ").replace("</data>", " "))
    return compose(data)


def compose(data: Mapping[str, Any] | None, *, fallback_text: str = "") -> str:
    """Return the copy, a blank line, then one line starting with 'Rationale:'.

    1. Read the product, the audience's traits, the language, the limits and the
       reviewer's note (data=None: the fallback text is the description).
    2. Build candidate sentences, skipping phrasings that contain a banned phrase.
    3. Keep sentences by priority while the copy fits in max_length.
    4. Make room for protected terms the kept sentences do not carry.
    5. Explain the choices in the rationale.
    """
    has_data = isinstance(data, Mapping)
    data = data if isinstance(data, Mapping) else {}
    plan = _Plan()
    product = _mapping(data.get("product"))
    audience = _mapping(data.get("audience"))
    name = _inline(product.get("name"), limit=300)
    brand = _inline(data.get("brand"), limit=100)
    description = _clean_text(product.get("description") if has_data else fallback_text)
    sentences = _sentences(description)
    limit = _positive_int(data.get("max_length"), DEFAULT_MAX_LENGTH)
    banned = [p for p in (_inline(b) for b in _list(data.get("banned_phrases"))) if p]
    protected = [t for t in (_inline(p) for p in _list(data.get("protected_terms"))) if t]
    required = [t for t in protected if t in name or t in description]
    exempt = [name, *required]
    seed_source = json.dumps(
        [product.get("sku") or name, audience], sort_keys=True, ensure_ascii=False, default=str
    )
    seed = int.from_bytes(hashlib.sha256(seed_source.encode()).digest()[:8], "big")

    # 1. Language and audience.
    language = _language_code(data.get("language") or _trait_value(audience, "language"))
    book = PHRASEBOOK.get(language)
    if book is None:
        book = PHRASEBOOK["en"]
        plan.notes.append(f"no phrasebook for '{language}', so the framing is in English")
    angle, value_line, subcategory = _tailoring(audience, plan)

    note = _inline(data.get("course_correction"), limit=1000)
    shorter = longer = False
    if note:
        lowered = note.lower()
        shorter = any(word in lowered for word in _SHORTER)
        longer = not shorter and any(word in lowered for word in _LONGER)
        price_talk = _PRICE_TALK.search(lowered) is not None
        if shorter:
            limit = max(40, min(limit, round(limit * 0.6)))
            plan.followed.append(
                f"made it shorter (one description sentence, no closing, at most {limit} "
                "characters)"
            )
        elif longer:
            plan.followed.append("made it longer (two description sentences and a closing)")
        if price_talk and _NEGATION.search(lowered):
            value_line = False
            if angle in ("value", "balanced"):
                plan.followed.append(
                    f"left out price talk (neutral framing, not the {angle} angle)"
                )
                angle = "neutral"
            else:
                plan.followed.append("left out price talk")
        elif price_talk and not value_line:
            value_line = True
            plan.followed.append("added a value-for-money line")
        extra = [m.strip() for m in _QUOTED_BAN.findall(note) if m.strip()]
        if extra:
            banned.extend(extra)
            plan.followed.append(f"avoided {len(extra)} more phrase(s) it named")

    # 2. Candidate sentences.
    skipped: list[str] = []

    def phrases(key: str, slot: int, **values: str) -> list[str]:
        """The key's phrasings without a banned phrase, starting at a hashed one."""
        variants: list[str] = book[key]
        start = _pick(seed, slot, len(variants))
        texts = [
            variants[(start + i) % len(variants)].format(**values) for i in range(len(variants))
        ]
        allowed = [t for t in texts if not _banned_in(t, banned, exempt)]
        if len(allowed) < len(texts):
            skipped.append(key)
        return allowed

    def phrase(key: str, slot: int, **values: str) -> str | None:
        return next(iter(phrases(key, slot, **values)), None)

    pieces: list[_Piece] = []
    hook: _Piece | None = None
    # Hook candidates, best first: the angle's phrasings, the neutral ones, the bare name.
    hooks = [(t, "hook") for t in phrases(f"hook_{angle}", 1, name=name)] if name else []
    if name and angle != "neutral":
        hooks += [(t, "hook_neutral") for t in phrases("hook_neutral", 2, name=name)]
    if name:
        bare = name if name[-1] in ".!?…" else f"{name}."
        hooks += [(bare, "hook_bare"), (name, "hook_bare")]
        hook = _Piece(hooks[0][0], 0, 0, hooks[0][1])
        pieces.append(hook)
        if _banned_in(name, banned, []):
            plan.notes.append("the product name itself contains a banned phrase; kept verbatim")
    if subcategory and (text := phrase("subcategory", 3, subcategory=subcategory)):
        pieces.append(_Piece(text, 1, 20, "subcategory"))
    clean = [s for s in sentences if not _banned_in(s, banned, exempt)]
    if len(clean) < len(sentences):
        skipped.append("description")
    first = _Piece(clean[0], 2, 10, "description") if clean else None
    if first:
        pieces.append(first)
        if not shorter and (second := _best_sentence(clean[1:], angle)):
            pieces.append(_Piece(second, 3, 40 if not longer else 15, "description"))
    if value_line and (text := phrase("value_line", 4)):
        pieces.append(_Piece(text, 5, 30, "value"))
    if not shorter:
        closings = phrases("closing", 5, brand=brand) if brand else phrases("closing_nobrand", 5)
        # Prefer a closing that does not open like the hook ("Discover X. … Discover it").
        opening = hook.text.split()[0].lower() if hook else ""
        closings.sort(key=lambda t: t.split()[0].lower() == opening)
        if closing := next(iter(closings), None):
            pieces.append(_Piece(closing, 6, 50 if not longer else 16, "closing"))
    if skipped:
        plan.notes.append("skipped phrasings that contained a banned phrase")

    # 3. Fit by priority; a hook too long gives way to a shorter one, down to the name.
    chosen = _fit(pieces, limit, cut=first)
    if hook is not None and hook not in chosen:
        hook.text, hook.kind = next(((t, k) for t, k in hooks if len(t) <= limit), hooks[-1])
        rest = _fit([p for p in pieces if p is not hook], limit - len(hook.text) - 1, cut=first)
        chosen = [hook, *rest]
        if len(name) > limit:
            plan.notes.append(f"the product name alone is longer than {limit} characters")

    # 4. Protected terms, evicting the least important sentences to make room.
    while missing := [t for t in required if t not in _join(chosen)]:
        featuring = _Piece(
            book["featuring"].format(terms=_join_terms(missing, book["and"])), 4, 15, "terms"
        )
        if _length([*chosen, featuring]) <= limit:
            chosen.append(featuring)
            break
        evictable = [p for p in chosen if p.priority > featuring.priority]
        if not evictable:
            plan.notes.append(f"protected term(s) {', '.join(missing)} did not fit")
            break
        chosen.remove(max(evictable, key=lambda p: p.priority))

    # A description that fits nowhere whole is cut at a word boundary into the room left.
    room = limit - _length(chosen) - (1 if chosen else 0)
    if first and not any(p.kind == "description" for p in chosen) and room >= 25:
        first.text, first.cut = _cut_at_word(first.text, room), len(first.text) > room
        chosen.append(first)

    # A banned phrase can also span two sentences.
    while _banned_in(_join(chosen), banned, exempt) and len(chosen) > 1:
        chosen.remove(max((p for p in chosen if p is not hook), key=lambda p: p.priority))

    chosen.sort(key=lambda p: p.order)
    if first is not None and first.cut and first in chosen:
        plan.notes.append("cut the description at a word boundary to fit")
    dropped = sum(1 for p in pieces if p not in chosen)
    plan.kept = {p.kind for p in chosen}
    if dropped:
        plan.notes.append(f"left out {dropped} sentence(s) to fit {limit} characters")
    copy = _join(chosen) or book["nothing"]

    # 5. The rationale.
    rationale = _rationale(audience, plan, note) if has_data else _NO_DATA_RATIONALE
    return f"{copy}\n\nRationale: {rationale}"


def _tailoring(audience: Mapping[str, Any], plan: _Plan) -> tuple[str, bool, str]:
    """(hook angle, whether to add a value-for-money line, subcategory to name)."""
    angle, value_line, subcategory = "neutral", False, ""
    tier = _trait(audience, "value_tier")
    if tier is not None:
        mapped = _TIER_ANGLES.get(_normal(tier[0]))
        if mapped:
            angle = mapped
            plan.reasons.append(("hook", f"value tier {tier[0]} ({tier[1]}) set a {mapped} angle"))
    discount = _trait(audience, "discount_sensitivity")
    if discount is not None:
        value_line = _is_high(discount[0])
        effect = "added a value-for-money line" if value_line else "left out price talk"
        kind = "value" if value_line else ""
        plan.reasons.append((kind, f"discount sensitivity {discount[0]} ({discount[1]}) {effect}"))
    preferred = _trait(audience, "preferred_subcategory")
    if preferred is not None and "@" not in preferred[0]:
        subcategory = preferred[0]
        reason = f"the preferred subcategory {subcategory} ({preferred[1]}) is named"
        plan.reasons.append(("subcategory", reason))
    return angle, value_line, subcategory


def _trait(audience: Mapping[str, Any], trait: str) -> tuple[str, str] | None:
    """(value, where it came from) for a tailoring trait of a segment or a customer."""
    names = _TRAITS.get(trait, (trait,))
    if audience.get("kind") == "customer" or "attributes" in audience:
        attributes = _mapping(audience.get("attributes"))
        for key in names:
            if key.lower() not in PERSONAL_ATTRIBUTES and _scalar(attributes.get(key)):
                return _inline(attributes[key], limit=60), "customer attribute"
        return None
    rules = _mapping(audience.get("rules"))
    for key in names:
        if _scalar(rules.get(key)):
            return _inline(rules[key], limit=60), "segment rule"
    summary = _mapping(audience.get("summary"))
    for key in names:
        shares = {
            _inline(v, limit=60): float(s)
            for v, s in _mapping(summary.get(key)).items()
            if isinstance(s, int | float) and not isinstance(s, bool)
        }
        if shares:
            value, share = max(shares.items(), key=lambda kv: (kv[1], kv[0]))
            if share >= DOMINANT_SHARE:
                return value, f"{share:.0%} of members"
    return None


def _trait_value(audience: Mapping[str, Any], trait: str) -> str:
    found = _trait(audience, trait)
    return found[0] if found else ""


_NO_DATA_RATIONALE = (
    "Composed by fixed rules, not a language model: the request had no <data> block, "
    "so the copy reuses the request text with neutral framing."
)


def _rationale(audience: Mapping[str, Any], plan: _Plan, note: str) -> str:
    if audience.get("kind") == "customer" or "attributes" in audience:
        who = "one customer"
    else:
        who = _inline(audience.get("name"), limit=80) or "the audience"
    facts = "; ".join(
        reason if not kind or kind in plan.kept else f"{reason} (that sentence was left out)"
        for kind, reason in plan.reasons
    ) or (
        "no value tier, discount sensitivity or preferred subcategory was given, "
        "so the framing is neutral"
    )
    first = f"Composed by fixed rules, not a language model, for {who}: {facts}."
    second = list(plan.notes)
    purpose = _inline(audience.get("purpose"), limit=80)
    if purpose:
        second.append(f"written for the purpose '{purpose}'")
    earlier = audience.get("previous_messages")
    if isinstance(earlier, list) and earlier:
        second.append(f"{len(earlier)} earlier message(s) to this customer were read")
    if note:
        second.insert(
            0,
            "reviewer note acknowledged: " + ", ".join(plan.followed)
            if plan.followed
            else "reviewer note acknowledged, but no fixed rule could act on it",
        )
    if not second:
        return first
    text = "; ".join(second)
    return f"{first} {text[0].upper()}{text[1:]}."


def _fit(pieces: Iterable[_Piece], limit: int, *, cut: _Piece | None = None) -> list[_Piece]:
    """The pieces that fit, most important first; `cut` may be cut at a word to fit."""
    chosen: list[_Piece] = []
    for piece in sorted(pieces, key=lambda p: p.priority):
        if _length([*chosen, piece]) <= limit:
            chosen.append(piece)
        elif piece is cut and (room := limit - _length(chosen) - bool(chosen)) >= 40:
            piece.text, piece.cut = _cut_at_word(piece.text, room), True
            chosen.append(piece)
    return chosen


def _length(pieces: Sequence[_Piece]) -> int:
    return sum(len(p.text) for p in pieces) + max(len(pieces) - 1, 0)


def _join(pieces: Iterable[_Piece]) -> str:
    return " ".join(p.text for p in sorted(pieces, key=lambda p: p.order))


def _join_terms(terms: Sequence[str], conjunction: str) -> str:
    if len(terms) == 1:
        return terms[0]
    return f"{', '.join(terms[:-1])} {conjunction} {terms[-1]}"


def _banned_in(text: str, banned: Sequence[str], exempt: Sequence[str]) -> bool:
    """Whether a banned phrase occurs in text outside the exempt strings (name, terms)."""
    for keep in sorted((e for e in exempt if e), key=len, reverse=True):
        text = text.replace(keep, "\0")
    lowered = text.lower()
    return any(phrase.lower() in lowered for phrase in banned)


def _best_sentence(sentences: Sequence[str], angle: str) -> str | None:
    """The sentence with the most words that suit the angle; the earliest on a tie."""
    if not sentences:
        return None
    words = _ANGLE_WORDS.get(angle, ())
    return max(sentences, key=lambda s: sum(w in s.lower() for w in words))


def _cut_at_word(text: str, room: int) -> str:
    """Text in at most `room` characters: whole, or cut at a word and ended with '…'."""
    if len(text) <= room:
        return text
    cut = text[: room - 1].rsplit(" ", 1)[0].rstrip(" ,;:-–—")
    return f"{cut}…"


def _pick(seed: int, slot: int, count: int) -> int:
    digest = hashlib.sha256(f"{seed}:{slot}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % count


def _clean_text(value: Any) -> str:
    """Plain text from a description: no tags, entities or markdown emphasis."""
    if not isinstance(value, str):
        return ""
    text = _LIST_ITEM.sub("\n- ", _BLOCK_TAG.sub("\n", value))
    # Emphasis marks go; a single * or _ may be meant.
    text = re.sub(r"\*\*|__|`", "", html.unescape(_TAG.sub(" ", text)))
    # Headings and list items become sentences of their own; a wrapped line does not.
    lines = []
    for line in text.splitlines():
        item = _BULLET.sub("", line).strip()
        if item and item != line.strip():
            item = item[0].upper() + item[1:]
            item = f"{item}." if item[-1].isalnum() else item
        lines.append(item)
    return re.sub(r"\s+", " ", "\n".join(lines)).strip()


def _sentences(text: str) -> list[str]:
    """The text's sentences, each ending in punctuation so that they join cleanly."""
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) > 1]
    return [s if not s[-1].isalnum() else f"{s}." for s in sentences]


def _inline(value: Any, *, limit: int = 200) -> str:
    """A value as one clean line of at most `limit` characters."""
    if value is None or isinstance(value, Mapping | list):
        return ""
    return re.sub(r"\s+", " ", str(value)).strip()[:limit]


def _normal(value: str) -> str:
    return re.sub(r"[\s-]+", "_", value.strip().lower())


def _is_high(value: str) -> bool:
    try:
        return float(value) >= 0.6
    except ValueError:
        return _normal(value) in {"high", "very_high", "yes", "true"}


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and str(value).strip() != ""


def _language_code(value: Any) -> str:
    code = re.split(r"[-_]", _inline(value, limit=20).lower() or "en")[0]
    return code or "en"


def _positive_int(value: Any, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def estimate_tokens(text: str) -> int:
    """A deterministic token estimate: one token per four characters, at least one."""
    return max(1, math.ceil(len(text) / 4))


# --------------------------------------------------------------------------------------
# Provider profiles: the shapes real models give their answers

REFUSAL = "I'm sorry, but I can't help with that request."
# How hosted models mark the rationale when they do not keep to "Rationale: ".
_RATIONALE_MARKS = (
    "**Rationale**: {r}", "**Rationale:** {r}", "### Rationale\n{r}", "Rationale - {r}",
    "Rationale — {r}", "*Rationale*: {r}", "RATIONALE: {r}",
)  # fmt: skip
_PREAMBLES = (
    "Here is the copy:", "Sure! Here's a version for this audience:",
    "Certainly! Here's the product description:", "Of course! Here is your copy:",
    "Here you go:",
)  # fmt: skip


def _wants_json(body: Any) -> bool:
    fmt = body.get("response_format") if isinstance(body, dict) else None
    return isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object")


def shape_answer(
    content: str, *, profile: str, pick: int, name: str, wants_json: bool, bad_json: bool = False
) -> tuple[str, str, str]:
    """(content, finish_reason, shape) of one answer in a profile's shape (see PROFILES).

    `content` is compose()'s "copy, blank line, Rationale: ..."; `pick` (a hash of the
    request's messages) chooses among a profile's shapes, each choice from its own slot
    of the hash, so the same request is always answered the same way, as a model that
    marks its rationale one way keeps doing so. Only the json profile reads
    response_format; the others answer as an endpoint without structured output does.
    """
    copy, _, rationale = content.partition("\n\nRationale: ")
    if profile == "json" and wants_json:
        if bad_json:
            wrong = {"text": copy} if _pick(pick, 1, 2) else {"copy": len(copy)}
            return json.dumps(wrong, ensure_ascii=False), "stop", "bad_json"
        answer = json.dumps({"copy": copy, "rationale": rationale}, ensure_ascii=False)
        if _pick(pick, 2, 4) == 0:
            return f"```json\n{answer}\n```", "stop", "json_fenced"
        return answer, "stop", "json"
    if profile == "markdown":
        mark = _RATIONALE_MARKS[_pick(pick, 3, len(_RATIONALE_MARKS))].format(r=rationale)
        if not name or name not in copy:
            return f"{copy}\n\n{mark}", "stop", "marked"
        copy = copy.replace(name, f"**{name}**", 1)
        if _pick(pick, 4, 3) == 0:
            copy = f"{'#' * (1 + _pick(pick, 5, 2))} {name}\n\n{copy}"
        return f"{copy}\n\n{mark}", "stop", "bold_name"
    if profile == "terse":
        if _pick(pick, 6, 3) == 0:
            return copy, "stop", "no_rationale"
        short = rationale.split(":")[0].rstrip(".")
        return f"{copy}\n\nRationale: {short}.", "stop", "short_rationale"
    if profile == "chatty":
        preamble = _PREAMBLES[_pick(pick, 7, len(_PREAMBLES))]
        quoted = _pick(pick, 8, 2) == 0 and '"' not in copy
        body = f'"{copy}"' if quoted else copy
        return f"{preamble}\n\n{body}\n\nRationale: {rationale}", "stop", "preamble"
    if profile == "rambling":
        # Writes on and on, as a model with no length sense does: the rationale restated
        # forty times. Cut at max_tokens like any answer (finish_reason "length").
        return f"{copy}\n\nRationale: {' '.join([rationale] * 40)}", "stop", "rambling"
    if profile == "truncating" and _pick(pick, 9, 4) == 0:
        # Cut mid-copy, as a model stopped by its token limit is: no rationale follows.
        return copy[: max(1, len(copy) // 2)], "length", "truncated"
    return content, "stop", "plain"


def request_pick(body: Any) -> int:
    """A number from a hash of the request's messages: the same request, the same pick."""
    messages = body.get("messages") if isinstance(body, dict) else None
    encoded = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str).encode()
    return int.from_bytes(hashlib.sha256(encoded).digest()[:8], "big")


def spoil_copy(copy: str, data: Mapping[str, Any] | None, fault: str) -> str:
    """The copy as a careless model writes it, for one of COPY_FAULTS; unchanged when
    the data gives the fault nothing to work with."""
    data = _mapping(data)
    audience = _mapping(data.get("audience"))
    if fault == "overreach":
        shares = [
            (float(share), str(value))
            for values in _mapping(audience.get("summary")).values()
            for value, share in _mapping(values).items()
            if isinstance(share, int | float) and len(str(value)) >= 4
            and any(c.isalpha() for c in str(value))
        ]  # fmt: skip
        if shares:
            return f"{copy} Made for {min(shares)[1]} fans."
    elif fault == "banned_phrase":
        phrases = [p for p in data.get("banned_phrases") or [] if isinstance(p, str) and p]
        if phrases:
            return f"{copy} {phrases[0]}!"
    elif fault == "drop_protected":
        name = _inline(_mapping(data.get("product")).get("name"), limit=300)
        if name and name in copy:
            return copy.replace(name, "this product")
    elif fault == "echo_input":
        # A customer's attribute values, and the values a segment's summary counts.
        texts = [v for v in _mapping(audience.get("attributes")).values() if isinstance(v, str)]
        texts += [
            str(value)
            for shares in _mapping(audience.get("summary")).values()
            for value in _mapping(shares)
        ]
        if texts:
            return f"{copy} {max(texts, key=len)}"
    return copy


def shape_answers(payload: dict[str, Any], body: Any, profile: str, *, bad_json: bool) -> str:
    """Shape every choice of a composed completion; return the first one's shape.

    A choice already cut off at max_tokens keeps its cut (shape "truncated"); a shape
    that made an answer longer than max_tokens is cut there too (finish_reason
    "length"), as an endpoint stops a model. The usage is counted again for what is sent.
    """
    limit = (
        body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(body, dict)
        else None
    )
    messages = body.get("messages") if isinstance(body, dict) else []
    users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
    data = extract_data(message_text(users[-1].get("content"))) if users else None
    name = _inline(_mapping((data or {}).get("product")).get("name"), limit=300)
    pick = request_pick(body)
    shapes = []
    for choice in payload["choices"]:
        if choice["finish_reason"] == "length":
            shapes.append("truncated")
            continue
        content, finish, shape = shape_answer(
            choice["message"]["content"],
            profile=profile,
            pick=pick,
            name=name,
            wants_json=_wants_json(body),
            bad_json=bad_json,
        )
        if isinstance(limit, int) and 0 < limit < estimate_tokens(content):
            content, finish = content[: limit * 4], "length"
        choice["message"]["content"], choice["finish_reason"] = content, finish
        shapes.append(shape)
    _recount_usage(payload)
    return shapes[0] if shapes else "plain"


def _recount_usage(payload: dict[str, Any]) -> None:
    """completion_tokens (and total_tokens) for the content or refusal now in the choices."""
    usage = payload["usage"]
    usage["completion_tokens"] = sum(
        estimate_tokens(choice["message"]["content"] or choice["message"]["refusal"] or "")
        for choice in payload["choices"]
    )
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]


# --------------------------------------------------------------------------------------
# HTTP: settings for latency, limits and faults


FAULTS: tuple[str, ...] = (
    "reset", "timeout", "error_5xx", "malformed", "empty", "no_rationale",
    "rate_limit", "refusal", "content_filter", "bad_json",
    "overreach", "banned_phrase", "drop_protected", "echo_input",
)  # fmt: skip
# Faults in the copy itself, for seeing the checks fail on variants a worker wrote: the
# answer is well formed, the copy is what a careless model writes (spoil_copy).
COPY_FAULTS: tuple[str, ...] = ("overreach", "banned_phrase", "drop_protected", "echo_input")
# How answers are shaped, like the range of hosted models (see shape_answer).
PROFILES: tuple[str, ...] = (
    "plain", "markdown", "json", "terse", "chatty", "truncating", "rambling",
)  # fmt: skip
PREFIX_CACHE_ENTRIES = 20_000
LATENCY_DISTRIBUTIONS: tuple[str, ...] = ("uniform", "lognormal")
TIMEOUT_ACTIONS: tuple[str, ...] = ("504", "close")
WINDOW_S = 60.0  # the sliding window of rpm_limit and tpm_limit
# What the rate-limit headers report when no limit is set.
UNLIMITED_REQUESTS = 10_000
UNLIMITED_TOKENS = 10_000_000


@dataclass(frozen=True)
class WriterSettings:
    """How the server behaves besides writing. Replaced whole, never changed in place, so a
    request reads one consistent snapshot while POST /_offline/config swaps it."""

    latency_ms: float = 0.0  # the delay of a completion (the median, for lognormal)
    latency_jitter_ms: float = 0.0  # uniform: latency_ms ± this much
    latency_distribution: str = "uniform"  # or "lognormal": median latency_ms, latency_sigma
    latency_sigma: float = 0.5
    seed: int | None = None  # seeds faults and latencies; None draws them unseeded
    max_concurrency: int | None = None  # completions in flight at once, then 429
    retry_after_s: float = 1.0  # Retry-After of a 429 for max_concurrency
    rpm_limit: int | None = None  # requests per sliding minute, then 429
    tpm_limit: int | None = None  # tokens (prompt + completion) per sliding minute
    error_5xx_rate: float = 0.0  # 500, 502 or 503 with an OpenAI error body
    timeout_rate: float = 0.0  # hold timeout_hold_s, then timeout_action
    timeout_hold_s: float = 30.0
    timeout_action: str = "504"  # or "close": close the connection without answering
    malformed_rate: float = 0.0  # 200 whose body is cut-off JSON
    empty_rate: float = 0.0  # 200 with choices: []
    no_rationale_rate: float = 0.0  # 200 whose content has no "Rationale:" line
    rate_limit_rate: float = 0.0  # an immediate 429 (Retry-After retry_after_s), budget left
    refusal_rate: float = 0.0  # 200 with content null and message.refusal set
    content_filter_rate: float = 0.0  # 200 with content null, finish_reason content_filter
    bad_json_rate: float = 0.0  # a JSON answer off the schema (json profile, response_format)
    overreach_rate: float = 0.0  # copy naming a value only a minority of the segment has
    banned_phrase_rate: float = 0.0  # copy using the first banned phrase of the data
    drop_protected_rate: float = 0.0  # copy with the product name reworded
    echo_input_rate: float = 0.0  # copy repeating the audience's longest text value
    reset_rate: float = 0.0  # the connection is reset (RST) without an answer
    profile: str = "plain"  # the shape of answers: one of PROFILES
    prefix_cache: bool = True  # report cached_tokens for prompt prefixes seen before
    prefix_cache_block_tokens: int = 64  # the cache's granularity (OpenAI's is 128)
    fail_first_n: int = 0  # the next N completions get 503 (from start, reset or setting)
    record: bool = True  # keep requests for server.requests and /_offline/requests
    record_limit: int = 10_000  # only the last this many

    def fault_rates(self) -> list[tuple[str, float]]:
        return [(fault, getattr(self, f"{fault}_rate")) for fault in FAULTS]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def non_defaults(self) -> dict[str, Any]:
        default = WriterSettings()
        return {k: v for k, v in self.as_dict().items() if getattr(default, k) != v}


class SettingError(ValueError):
    """An unknown setting or a bad value; `name` says which setting."""

    def __init__(self, name: str, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.name = name
        self.unknown = unknown


def _number(minimum: float, maximum: float | None = None) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("is not a number")
        if not minimum <= value <= (math.inf if maximum is None else maximum):
            bounds = (
                f"from {minimum:g} to {maximum:g}" if maximum is not None else f">= {minimum:g}"
            )
            raise ValueError(f"is not a number {bounds}")
        return float(value)

    return check


def _integer(minimum: int | None, *, optional: bool = False) -> Callable[[Any], int | None]:
    def check(value: Any) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("is not an integer" + (" or null" if optional else ""))
        if minimum is not None and value < minimum:
            raise ValueError(f"is below {minimum}")
        return value

    return check


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if str(value) not in options:
            raise ValueError(f"is not one of {', '.join(options)}")
        return str(value)

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("is not true or false")
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "latency_ms": _number(0),
    "latency_jitter_ms": _number(0),
    "latency_distribution": _choice(*LATENCY_DISTRIBUTIONS),
    "latency_sigma": _number(0),
    "seed": _integer(None, optional=True),
    "max_concurrency": _integer(1, optional=True),
    "retry_after_s": _number(0),
    "rpm_limit": _integer(1, optional=True),
    "tpm_limit": _integer(1, optional=True),
    **{f"{fault}_rate": _number(0, 1) for fault in FAULTS},
    "timeout_hold_s": _number(0),
    "timeout_action": _choice(*TIMEOUT_ACTIONS),
    "fail_first_n": _integer(0),
    "profile": _choice(*PROFILES),
    "prefix_cache": _boolean,
    "prefix_cache_block_tokens": _integer(1),
    "record": _boolean,
    "record_limit": _integer(1),
}
SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(WriterSettings))
assert set(SETTING_NAMES) == set(_CHECKS), "every setting needs a check"


def updated_settings(base: WriterSettings, changes: Mapping[str, Any]) -> WriterSettings:
    """base with the changes, all checked first; SettingError names the first bad one."""
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        check = _CHECKS.get(name)
        if check is None:
            raise SettingError(
                name,
                f"Unknown setting '{name}'. Known settings: {', '.join(SETTING_NAMES)}.",
                unknown=True,
            )
        try:
            checked[name] = check(value)
        except ValueError as exc:
            raise SettingError(name, f"Invalid value for '{name}': {value!r} {exc}.") from None
    settings = dataclasses.replace(base, **checked)
    rates = {f"{fault}_rate": rate for fault, rate in settings.fault_rates() if rate}
    if sum(rates.values()) > 1 + 1e-9:
        name = next((n for n in checked if n in rates), next(iter(rates)))
        listed = ", ".join(f"{n}={rate:g}" for n, rate in rates.items())
        raise SettingError(
            name,
            f"The fault rates add up to more than 1 ({listed}); a request gets at most one "
            "fault, so they may add up to 1 at most.",
        )
    return settings


def draw_latency_ms(settings: WriterSettings, rng: random.Random) -> float:
    """One completion's delay: latency_ms ± a uniform jitter, or log-normal around it."""
    if settings.latency_distribution == "lognormal":
        if settings.latency_ms <= 0:
            return 0.0
        return settings.latency_ms * math.exp(rng.gauss(0.0, settings.latency_sigma))
    if settings.latency_jitter_ms:
        jitter = settings.latency_jitter_ms
        return max(0.0, settings.latency_ms + rng.uniform(-jitter, jitter))
    return settings.latency_ms


def draw_fault(settings: WriterSettings, rng: random.Random) -> str | None:
    """The fault for one completion, or None. One draw, so the faults exclude each other."""
    roll = rng.random()
    for fault, rate in settings.fault_rates():
        if roll < rate:
            return fault
        roll -= rate
    return None


def format_duration(seconds: float) -> str:
    """A duration the way OpenAI's x-ratelimit-reset-* headers write it: 120ms, 8.64s, 1m0s."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.3g}s"


# --------------------------------------------------------------------------------------
# HTTP: the server


class _APIError(Exception):
    """An error answered in OpenAI's shape: {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class _RateLimited(_APIError):
    """A 429; retry_after_s (None: retrying will not help) goes into Retry-After."""

    def __init__(self, message: str, *, type_: str, retry_after_s: float | None) -> None:
        super().__init__(429, message, type_=type_, code="rate_limit_exceeded")
        self.retry_after_s = retry_after_s

    def headers(self) -> list[tuple[str, str]]:
        if self.retry_after_s is None:
            return []
        wait = max(0.0, self.retry_after_s)
        return [
            ("Retry-After", str(math.ceil(wait))),
            ("retry-after-ms", str(math.ceil(wait * 1000))),
        ]


_INJECTED = " (fault injected by the offline writer)"
_SERVER_ERRORS: dict[int, _APIError] = {
    500: _APIError(
        500, "The server had an error while processing your request. Sorry about that!" + _INJECTED,
        type_="server_error",
    ),
    502: _APIError(502, "Bad gateway." + _INJECTED, type_="server_error", code="bad_gateway"),
    503: _APIError(
        503, "The server is overloaded or not ready yet." + _INJECTED, type_="server_error",
        code="service_unavailable",
    ),
    504: _APIError(
        504, "Gateway timeout: the upstream did not answer in time." + _INJECTED,
        type_="server_error", code="gateway_timeout",
    ),
}  # fmt: skip
_WARMING_UP = _APIError(
    503, "The server is not ready yet (fail_first_n of the offline writer); please retry.",
    type_="server_error", code="service_unavailable",
)  # fmt: skip


@dataclass
class _Ticket:
    """An admitted completion: what was drawn for it and its entry in the token window."""

    fault: str | None
    latency_s: float
    error_status: int
    tokens: list[float]  # [monotonic time, tokens]


class OfflineWriterServer(ThreadingHTTPServer):
    """The offline writer's HTTP server. Run it with serve_forever() or serve_in_thread().

    api_key=None accepts any key (or none); models lists the model ids it answers for;
    verbose logs every request. The other keyword arguments are WriterSettings fields
    (latency, limits, faults, recording); configure() and POST /_offline/config change
    them while it serves. Only POST /v1/chat/completions is limited and fault-injected.
    """

    daemon_threads = True
    # server_close() closes the connections instead of waiting for held or idle ones.
    block_on_close = False
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int] = ("127.0.0.1", 0),
        *,
        api_key: str | None = None,
        models: Sequence[str] | None = None,
        verbose: bool = False,
        **settings: Any,
    ) -> None:
        if unknown := [name for name in settings if name not in SETTING_NAMES]:
            raise TypeError(
                f"OfflineWriterServer() got an unexpected keyword argument {unknown[0]!r}"
            )
        self.settings = updated_settings(WriterSettings(), settings)
        self.api_key = api_key or None
        self.models: list[str] = list(models) if models else list(DEFAULT_MODELS)
        self.verbose = verbose
        self.started = int(time.time())
        # One lock for the counters, the windows, the records and the RNG; each hold is short.
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._requests: deque[dict[str, Any]] = deque(maxlen=self.settings.record_limit)
        self._rng = random.Random(self.settings.seed)
        self._in_flight = 0
        self._clear_counters()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up, which can stall on a bad resolver.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"

    # ----------------------------------------------------------------------------------
    # Records, settings and counters

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of the requests received (the last record_limit), oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> int:
        with self._lock:
            count = len(self._requests)
            self._requests.clear()
            return count

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(entry)

    def config(self) -> dict[str, Any]:
        return self.settings.as_dict()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings while serving and return them all; SettingError names a bad one.

        Setting seed reseeds the RNG; setting fail_first_n fails the next N completions.
        """
        with self._lock:
            settings = updated_settings(self.settings, changes)
            if "seed" in changes:
                self._rng.seed(settings.seed)
            if "fail_first_n" in changes:
                self._fail_remaining = settings.fail_first_n
            if settings.record_limit != self._requests.maxlen:
                self._requests = deque(self._requests, maxlen=settings.record_limit)
            self.settings = settings
        return settings.as_dict()

    def stats(self) -> dict[str, Any]:
        """Counters of chat completions since start or reset(), and the current load."""
        with self._lock:
            self._expire(time.monotonic())
            return {
                "requests": self._counts["requests"],
                "completed": self._counts["completed"],
                "rejected_429": sum(self._rejected.values()),
                "rejected_by": dict(self._rejected),
                "errors_injected": dict(self._injected),
                "invalid": self._counts["invalid"],
                "internal_errors": self._counts["internal_errors"],
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "fail_first_n_remaining": self._fail_remaining,
                "window": {"requests": len(self._request_window), "tokens": self._tokens_used},
                "connections": {"opened": self._opened, "open": len(self._connections)},
                "recorded": len(self._requests),
                "shapes": dict(self._shapes),
            }

    def reset(self) -> int:
        """Clear the records, counters and rate windows; reseed. Returns the records cleared."""
        with self._lock:
            cleared = len(self._requests)
            self._requests.clear()
            self._clear_counters()
            self._rng.seed(self.settings.seed)
            return cleared

    def _clear_counters(self) -> None:
        self._counts = dict.fromkeys(("requests", "completed", "invalid", "internal_errors"), 0)
        self._rejected = dict.fromkeys(("concurrency", "requests", "tokens", "random"), 0)
        self._shapes: dict[str, int] = {}
        self._prefixes: OrderedDict[bytes, None] = OrderedDict()
        self._injected = dict.fromkeys(("fail_first_n", *FAULTS), 0)
        # Requests still in flight stay counted; their release() decrements.
        self._max_in_flight = self._in_flight
        self._fail_remaining = self.settings.fail_first_n
        self._request_window: deque[float] = deque()
        self._token_window: deque[list[float]] = deque()
        self._tokens_used = 0.0
        self._opened = 0

    # ----------------------------------------------------------------------------------
    # Admission: concurrency, rate windows, and what to draw for the request

    def admit(self, settings: WriterSettings, *, prompt_tokens: int, model: str) -> _Ticket:
        """Admit one completion or raise _RateLimited.

        1. Refuse it when max_concurrency completions are in flight.
        2. Refuse it when the last minute holds rpm_limit requests, or too many tokens
           for its prompt to fit under tpm_limit; refusals do not count in the windows.
        3. Count it in flight and in the windows; draw its fault and latency.
        """
        now = time.monotonic()
        with self._lock:
            self._counts["requests"] += 1
            self._expire(now)
            limit = settings.max_concurrency
            if limit is not None and self._in_flight >= limit:
                self._rejected["concurrency"] += 1
                raise _RateLimited(
                    f"Rate limit reached for {model} on concurrent requests: Limit {limit}, "
                    f"In flight {self._in_flight}. Please try again in "
                    f"{format_duration(settings.retry_after_s)}.",
                    type_="requests", retry_after_s=settings.retry_after_s,
                )  # fmt: skip
            rpm, used = settings.rpm_limit, len(self._request_window)
            if rpm is not None and used >= rpm:
                # A slot frees when the request `rpm` places from the newest leaves.
                wait = self._request_window[used - rpm] + WINDOW_S - now
                self._rejected["requests"] += 1
                raise _RateLimited(
                    f"Rate limit reached for {model} on requests per min (RPM): Limit {rpm}, "
                    f"Used {used}, Requested 1. Please try again in {format_duration(wait)}.",
                    type_="requests", retry_after_s=wait,
                )  # fmt: skip
            tpm = settings.tpm_limit
            if tpm is not None and self._tokens_used + prompt_tokens > tpm:
                self._rejected["tokens"] += 1
                if prompt_tokens > tpm:
                    raise _RateLimited(
                        f"Request too large for {model} on tokens per min (TPM): Limit {tpm}, "
                        f"Requested {prompt_tokens}. The input must be shorter.",
                        type_="tokens", retry_after_s=None,
                    )  # fmt: skip
                wait = self._tokens_free_in(now, tpm - prompt_tokens)
                raise _RateLimited(
                    f"Rate limit reached for {model} on tokens per min (TPM): Limit {tpm}, "
                    f"Used {round(self._tokens_used)}, Requested {prompt_tokens}. Please try "
                    f"again in {format_duration(wait)}.",
                    type_="tokens", retry_after_s=wait,
                )  # fmt: skip
            previous_max = self._max_in_flight
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._request_window.append(now)
            entry = [now, float(prompt_tokens)]
            self._token_window.append(entry)
            self._tokens_used += prompt_tokens
            # Drawn in arrival order, so a seed repeats a sequential run exactly.
            fault = draw_fault(settings, self._rng)
            if fault == "rate_limit":
                # A busy shard's 429: not a spent budget, so it leaves the windows and
                # the in-flight count as they were.
                self._in_flight -= 1
                self._max_in_flight = previous_max
                self._request_window.pop()
                self._token_window.pop()
                self._tokens_used -= prompt_tokens
                self._rejected["random"] += 1
                self._injected["rate_limit"] += 1
                raise _RateLimited(
                    f"Rate limit reached for {model}: the server is busy. Please try again "
                    f"in {format_duration(settings.retry_after_s)}." + _INJECTED,
                    type_="requests", retry_after_s=settings.retry_after_s,
                )  # fmt: skip
            latency_s = draw_latency_ms(settings, self._rng) / 1000
            status = self._rng.choice((500, 502, 503)) if fault == "error_5xx" else 0
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                fault = "fail_first_n"
            return _Ticket(fault, latency_s, status, entry)

    def count_shape(self, shape: str) -> None:
        with self._lock:
            self._shapes[shape] = self._shapes.get(shape, 0) + 1

    def cached_tokens(self, settings: WriterSettings, messages: Any, prompt_tokens: int) -> int:
        """Like a provider's automatic prefix cache: the tokens of the longest run of
        leading blocks of this prompt seen before (then all its blocks are remembered)."""
        if not settings.prefix_cache or not isinstance(messages, list):
            return 0
        text = prompt_text(messages)
        size = settings.prefix_cache_block_tokens * 4
        digest = hashlib.sha256()
        keys = []
        for start in range(0, len(text) - size + 1, size):
            digest.update(text[start : start + size].encode())
            keys.append(digest.copy().digest())
        hits = 0
        with self._lock:
            for key in keys:
                if key not in self._prefixes:
                    break
                hits += 1
            for key in keys:
                self._prefixes[key] = None
                self._prefixes.move_to_end(key)
            while len(self._prefixes) > PREFIX_CACHE_ENTRIES:
                self._prefixes.popitem(last=False)
        return min(prompt_tokens, hits * settings.prefix_cache_block_tokens)

    def charge(self, ticket: _Ticket, completion_tokens: int) -> None:
        """Add a completion's tokens to its entry in the token window, if still there."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            if ticket.tokens[0] > now - WINDOW_S:
                ticket.tokens[1] += completion_tokens
                self._tokens_used += completion_tokens

    def release(self, outcome: str) -> None:
        """An admitted completion is answered (or dropped); count how."""
        with self._lock:
            self._in_flight -= 1
            self._count(outcome)

    def count_refused(self, outcome: str) -> None:
        """A completion refused before admission (a bad key)."""
        with self._lock:
            self._counts["requests"] += 1
            self._count(outcome)

    def _count(self, outcome: str) -> None:
        if outcome in self._injected:
            self._injected[outcome] += 1
        elif outcome in self._counts:
            self._counts[outcome] += 1

    def _expire(self, now: float) -> None:
        cutoff = now - WINDOW_S
        requests, tokens = self._request_window, self._token_window
        while requests and requests[0] <= cutoff:
            requests.popleft()
        while tokens and tokens[0][0] <= cutoff:
            self._tokens_used -= tokens.popleft()[1]

    def _tokens_free_in(self, now: float, allowed: float) -> float:
        """Seconds until the token window holds at most `allowed` tokens."""
        used = self._tokens_used
        for at, tokens in self._token_window:
            used -= tokens
            if used <= allowed:
                return at + WINDOW_S - now
        return WINDOW_S

    def rate_limit_headers(self, settings: WriterSettings) -> list[tuple[str, str]]:
        """OpenAI's x-ratelimit-* headers; reset-* is when the oldest entry leaves the window."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            if settings.rpm_limit is None:
                requests = (UNLIMITED_REQUESTS, UNLIMITED_REQUESTS - 1, "0s")
            else:
                window = self._request_window
                reset = format_duration(window[0] + WINDOW_S - now) if window else "0s"
                requests = (settings.rpm_limit, max(0, settings.rpm_limit - len(window)), reset)
            if settings.tpm_limit is None:
                tokens = (UNLIMITED_TOKENS, UNLIMITED_TOKENS - 1, "0s")
            else:
                window = self._token_window
                reset = format_duration(window[0][0] + WINDOW_S - now) if window else "0s"
                remaining = max(0, settings.tpm_limit - math.ceil(self._tokens_used))
                tokens = (settings.tpm_limit, remaining, reset)
        return [
            ("x-ratelimit-limit-requests", str(requests[0])),
            ("x-ratelimit-remaining-requests", str(requests[1])),
            ("x-ratelimit-reset-requests", requests[2]),
            ("x-ratelimit-limit-tokens", str(tokens[0])),
            ("x-ratelimit-remaining-tokens", str(tokens[1])),
            ("x-ratelimit-reset-tokens", tokens[2]),
        ]

    # ----------------------------------------------------------------------------------
    # Connections and shutdown

    def wait(self, seconds: float) -> bool:
        """Sleep, unless the server closes first; whether the whole time passed."""
        if seconds <= 0:
            return not self._closing.is_set()
        return not self._closing.wait(seconds)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._connections.add(request)
            self._opened += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        # Wake held requests and end idle keep-alive connections, so no thread outlives
        # the server by more than a moment.
        self._closing.set()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        super().server_close()

    def stop(self) -> None:
        """Stop serve_forever() (run in another thread) and close the socket."""
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response is not our error; anything else is a bug.
        if isinstance(sys.exc_info()[1], ConnectionError) and not self.verbose:
            return
        super().handle_error(request, client_address)


def prompt_text(messages: Any) -> str:
    """The prompt as counted and cached: each message's role and content, in order.

    One text for both, so the prefix cache's whole blocks never add up to more tokens
    than prompt_tokens reports."""
    if not isinstance(messages, list):
        return ""
    return "".join(
        f"{m.get('role')}:{message_text(m.get('content'))}\n"
        for m in messages
        if isinstance(m, Mapping)
    )


def _prompt_tokens(body: Any) -> int:
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return 0
    return estimate_tokens(prompt_text(messages))


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


class _Handler(BaseHTTPRequestHandler):
    server: OfflineWriterServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection holds a thread at most this long
    # Each response goes out in one write; with Nagle off it does not wait for an ACK.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return "HyperpersOfflineWriter/1"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _handle(self) -> None:
        started = time.perf_counter()
        self._admitted = False  # set while an admitted completion holds its place
        request_id = f"req_offline_{uuid.uuid4().hex}"
        try:
            raw = self._read_body()
        except ValueError:
            # The body's framing is broken, so the connection cannot be reused.
            self.close_connection = True
            error = _APIError(400, "The request body's length is not readable.")
            self._send_json(400, error.body(), request_id, started)
            return
        path = unquote(urlsplit(self.path).path).rstrip("/") or "/"
        body: Any = None
        malformed = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                malformed = True
        if not path.startswith("/_offline/") and self.server.settings.record:
            headers = {
                k.lower(): v
                for k, v in self.headers.items()
                if k.lower() not in {"authorization", "api-key"}
            }
            self.server.record(
                {
                    "method": self.command,
                    "path": self.path,
                    "body": body,
                    "headers": headers,
                    "at": time.monotonic(),  # when it came in, for tests of waits
                }
            )
        if path == "/v1/chat/completions" and self.command == "POST":
            self._chat_completion(body, malformed, request_id, started)
            return
        try:
            status, payload = self._route(path, body, malformed)
        except _APIError as exc:
            status, payload = exc.status, exc.body()
        except Exception:
            logger.exception("The offline writer failed on %s %s", self.command, self.path)
            status, payload = 500, self._internal_error().body()
        self._send_json(status, payload, request_id, started)

    def _read_body(self) -> bytes:
        # Read the whole body even when the answer is an error, so that a kept-alive
        # connection stays in step with the client.
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # ----------------------------------------------------------------------------------
    # Chat completions: admission, faults, latency

    def _chat_completion(self, body: Any, malformed: bool, request_id: str, started: float) -> None:
        server = self.server
        settings = server.settings  # one snapshot for the whole request
        model = body.get("model") if isinstance(body, dict) else None
        try:
            self._authorize()
        except _APIError as exc:
            server.count_refused("invalid")
            self._send_json(exc.status, exc.body(), request_id, started)
            return
        try:
            ticket = server.admit(
                settings,
                prompt_tokens=_prompt_tokens(body),
                model=model if isinstance(model, str) and model else "the model",
            )
        except _RateLimited as exc:
            self._send_json(429, exc.body(), request_id, started, exc.headers())
            return
        self._outcome, self._admitted = "internal_errors", True
        try:
            self._answer_admitted(settings, ticket, body, malformed, request_id, started)
        except Exception:
            logger.exception("The offline writer failed on %s %s", self.command, self.path)
            self._outcome = "internal_errors"
            self._send_json(500, self._internal_error().body(), request_id, started)
        finally:
            self._release()

    def _release(self) -> None:
        """Leave in-flight and count the outcome, once, before the client hears anything.

        Before, not after: a client that sends its next request the moment it has the
        answer must not find this one still in flight (a false 429), and stats read then
        must already count it.
        """
        if self._admitted:
            self._admitted = False
            self.server.release(self._outcome)

    def _answer_admitted(
        self,
        settings: WriterSettings,
        ticket: _Ticket,
        body: Any,
        malformed: bool,
        request_id: str,
        started: float,
    ) -> None:
        """Answer an admitted completion; self._outcome says how, for the counters.

        1. fail_first_n: 503 at once. timeout: hold, then 504 or close.
        2. A bad request: 4xx at once.
        3. Compose, then wait out the drawn latency (counted from arrival).
        4. reset and error_5xx replace the answer; refusal, content_filter, empty,
           no_rationale and malformed spoil it; otherwise it is sent in the profile's
           shape (bad_json spoils it only when that shape is JSON), and its shape counted.
        5. Charge the tokens sent to the token window.

        A rate_limit fault never gets here: admit() refuses it at once.
        """
        server = self.server
        fault = ticket.fault
        if fault == "fail_first_n":
            self._outcome = fault
            self._send_json(503, _WARMING_UP.body(), request_id, started)
            return
        if fault == "timeout":
            self._outcome = fault
            held = server.wait(settings.timeout_hold_s)
            if held and settings.timeout_action == "504":
                self._send_json(504, _SERVER_ERRORS[504].body(), request_id, started)
            else:
                self._drop_connection(reset=False)
            return
        try:
            if malformed:
                raise self._invalid_json()
            payload = self._completion(body, settings)
        except _APIError as exc:
            self._outcome = "invalid"
            self._send_json(exc.status, exc.body(), request_id, started)
            return
        if not server.wait(ticket.latency_s - (time.perf_counter() - started)):
            self._outcome = "closing"
            self._drop_connection(reset=False)
            return
        if fault == "reset":
            self._outcome = fault
            self._drop_connection(reset=True)
            return
        if fault == "error_5xx":
            self._outcome = fault
            error = _SERVER_ERRORS[ticket.error_status]
            self._send_json(error.status, error.body(), request_id, started)
            return
        if fault in COPY_FAULTS:
            users = [m for m in body["messages"] if isinstance(m, Mapping)]
            data = extract_data(message_text(users[-1].get("content"))) if users else None
            for choice in payload["choices"]:
                message = choice["message"]
                copy, sep, rest = message["content"].partition("\n\nRationale:")
                message["content"] = spoil_copy(copy, data, fault) + sep + rest
            _recount_usage(payload)
        if fault in (None, "bad_json", *COPY_FAULTS):
            shape = shape_answers(payload, body, settings.profile, bad_json=fault == "bad_json")
            if fault == "bad_json" and shape != "bad_json":
                fault = None  # bad_json spoils only a JSON answer; this one went out whole
            server.count_shape(shape)
        elif fault == "refusal":
            for choice in payload["choices"]:
                choice["message"]["content"] = None
                choice["message"]["refusal"] = REFUSAL
            _recount_usage(payload)
        elif fault == "content_filter":
            for choice in payload["choices"]:
                choice["message"]["content"] = None
                choice["finish_reason"] = "content_filter"
        elif fault == "empty":
            payload["choices"] = []
        elif fault == "no_rationale":
            for choice in payload["choices"]:
                message = choice["message"]
                message["content"] = message["content"].split("\n\nRationale:")[0]
        server.charge(ticket, payload["usage"]["completion_tokens"])
        data = _dumps(payload)
        if fault == "malformed":
            data = data[: len(data) // 2]  # cut off mid-object, as a dropped proxy would
        self._outcome = fault or "completed"
        self._send(200, data, request_id, started)

    def _drop_connection(self, *, reset: bool) -> None:
        """Close the connection without an answer: a TCP reset, or an orderly close."""
        self._release()
        self.close_connection = True
        connection = self.connection
        with contextlib.suppress(OSError):
            if reset:
                # A zero linger time makes close() send RST instead of FIN.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                connection.shutdown(socket.SHUT_RDWR)
        # The socket closes for real once rfile, which holds a reference, is closed too.
        self.rfile.close()
        connection.close()

    # ----------------------------------------------------------------------------------
    # Everything else: models and the control endpoints

    def _route(self, path: str, body: Any, malformed: bool) -> tuple[int, Any]:
        known = {
            "/v1/chat/completions": {"POST"},
            "/v1/models": {"GET"},
            "/_offline/requests": {"GET", "DELETE"},
            "/_offline/config": {"GET", "POST"},
            "/_offline/stats": {"GET"},
            "/_offline/reset": {"POST"},
        }
        is_model = path.startswith("/v1/models/")
        if path not in known and not is_model:
            raise _APIError(404, f"Invalid URL ({self.command} {self.path})", code="unknown_url")
        self._authorize()
        allowed = {"GET"} if is_model else known[path]
        if self.command not in allowed:
            raise _APIError(
                405, f"Method {self.command} is not allowed on {path}; use {', '.join(allowed)}",
                code="method_not_allowed",
            )  # fmt: skip
        server = self.server
        if is_model:
            model_id = path[len("/v1/models/") :]
            self._require_model(model_id)
            return 200, self._model(model_id)
        if path == "/v1/models":
            return 200, {"object": "list", "data": [self._model(m) for m in server.models]}
        if path == "/_offline/requests":
            if self.command == "DELETE":
                return 200, {"deleted": server.clear_requests()}
            return 200, {"object": "list", "data": server.requests}
        if path == "/_offline/stats":
            return 200, server.stats()
        if path == "/_offline/reset":
            return 200, {"reset": True, "cleared_requests": server.reset()}
        if self.command == "GET":  # /_offline/config
            return 200, server.config()
        if malformed or not isinstance(body, dict):
            raise self._invalid_json()
        try:
            return 200, server.configure(**body)
        except SettingError as exc:
            raise _APIError(
                400, str(exc), param=exc.name,
                code="unknown_setting" if exc.unknown else "invalid_value",
            ) from None  # fmt: skip

    def _invalid_json(self) -> _APIError:
        return _APIError(
            400,
            "We could not parse the JSON body of your request. The offline writer "
            "expects a JSON object.",
            code="invalid_json",
        )

    def _internal_error(self) -> _APIError:
        return _APIError(500, "The offline writer hit an internal error.", type_="server_error")

    def _authorize(self) -> None:
        expected = self.server.api_key
        if expected is None:
            return
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            raise _APIError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            )
        if not hmac.compare_digest(header[7:].strip().encode(), expected.encode()):
            raise _APIError(401, "Incorrect API key provided.", code="invalid_api_key")

    def _require_model(self, model: str) -> None:
        if model not in self.server.models:
            raise _APIError(
                404,
                f"The model `{model}` does not exist or you do not have access to it. "
                f"This offline writer serves: {', '.join(self.server.models)}.",
                code="model_not_found",
            )

    def _model(self, model_id: str) -> dict[str, Any]:
        return {
            "id": model_id,
            "object": "model",
            "created": self.server.started,
            "owned_by": "hyperpers",
        }

    def _completion(self, body: Any, settings: WriterSettings) -> dict[str, Any]:
        """The composed completion in the plain shape; shape_answers() reshapes it."""
        if not isinstance(body, dict):
            raise _APIError(400, "The request body must be a JSON object.", code="invalid_json")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _APIError(
                400, "you must provide a model parameter", param="model",
                code="missing_required_parameter",
            )  # fmt: skip
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _APIError(
                400, "'messages' must be a non-empty array of messages", param="messages",
                code="missing_required_parameter",
            )  # fmt: skip
        if not all(isinstance(m, dict) and "role" in m for m in messages):
            raise _APIError(
                400, "Each message must be an object with a 'role'.", param="messages",
                code="invalid_value",
            )  # fmt: skip
        if body.get("stream"):
            raise _APIError(
                400, "The offline writer does not stream; send stream=false.",
                param="stream", code="unsupported_value",
            )  # fmt: skip
        n = body.get("n") or 1
        if not isinstance(n, int) or not 1 <= n <= 16:
            raise _APIError(400, "'n' must be an integer from 1 to 16.", param="n")
        self._require_model(model)

        content = compose_reply(messages)
        finish_reason = "stop"
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(max_tokens, int) and 0 < max_tokens < estimate_tokens(content):
            content, finish_reason = content[: max_tokens * 4], "length"
        prompt_tokens = _prompt_tokens(body)
        cached = self.server.cached_tokens(settings, messages, prompt_tokens)
        completion_tokens = estimate_tokens(content) * n
        return {
            "id": f"chatcmpl-offline-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
                for i in range(n)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached},
            },
            "hyperpers_offline_writer": dict(METADATA),
        }

    # ----------------------------------------------------------------------------------
    # Writing responses

    def _send_json(
        self,
        status: int,
        payload: Any,
        request_id: str,
        started: float,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._send(status, _dumps(payload), request_id, started, extra)

    def _send(
        self,
        status: int,
        data: bytes,
        request_id: str,
        started: float,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Write the status line, headers and body in one write."""
        headers = [
            f"{self.protocol_version} {status} {HTTPStatus(status).phrase}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
            f"x-request-id: {request_id}",
            f"openai-processing-ms: {round((time.perf_counter() - started) * 1000)}",
            *(f"{k}: {v}" for k, v in self.server.rate_limit_headers(self.server.settings)),
            *(f"{k}: {v}" for k, v in extra),
            "x-hyperpers-offline-writer: rules; not a language model",
        ]
        if self.close_connection:
            headers.append("Connection: close")
        head = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1")
        self._release()
        try:
            self.wfile.write(head + data)
        except OSError:
            # The client gave up (its own timeout, say); this connection is done.
            self.close_connection = True
            return
        if self.server.verbose:
            self.log_request(status, len(data))


def serve_in_thread(
    *, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> tuple[OfflineWriterServer, str]:
    """Start a server in a daemon thread; return it and its base URL (…/v1).

    port=0 takes a free port. Stop it with server.shutdown() then server.server_close()
    (or server.stop()). Options are OfflineWriterServer's keyword arguments.
    """
    server = OfflineWriterServer((host, port), **options)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"offline-writer-{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return server, server.base_url
