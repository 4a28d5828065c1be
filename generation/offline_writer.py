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

Endpoints:
- POST /v1/chat/completions (non-streaming; `n` and `max_tokens` are honoured)
- GET /v1/models and GET /v1/models/<id>
- GET /_offline/requests: what the server has received, for tests; DELETE clears it.
When the server has an api_key, all of them need `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import math
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
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
# HTTP


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


class OfflineWriterServer(ThreadingHTTPServer):
    """The offline writer's HTTP server. Run it with serve_forever() or serve_in_thread().

    latency_ms is a fixed delay added to every chat completion; api_key=None accepts any
    key (or none); models lists the model ids it answers for.
    """

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int] = ("127.0.0.1", 0),
        *,
        latency_ms: int = 0,
        api_key: str | None = None,
        models: Sequence[str] | None = None,
        verbose: bool = False,
    ) -> None:
        self.latency_ms = max(0, latency_ms)
        self.api_key = api_key or None
        self.models: list[str] = list(models) if models else list(DEFAULT_MODELS)
        self.verbose = verbose
        self.started = int(time.time())
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        super().__init__(address, _Handler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of the requests received so far, oldest first."""
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

    def stop(self) -> None:
        """Stop serve_forever() (run in another thread) and close the socket."""
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response is not our error; anything else is a bug.
        if isinstance(sys.exc_info()[1], ConnectionError) and not self.verbose:
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: OfflineWriterServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection holds a thread at most this long

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
        request_id = f"req_offline_{uuid.uuid4().hex}"
        try:
            raw = self._read_body()
        except ValueError:
            # The body's framing is broken, so the connection cannot be reused.
            self.close_connection = True
            error = _APIError(400, "The request body's length is not readable.")
            self._send(400, error.body(), request_id)
            return
        path = unquote(urlsplit(self.path).path).rstrip("/") or "/"
        body: Any = None
        malformed = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                malformed = True
        if path != "/_offline/requests":
            headers = {
                k.lower(): v
                for k, v in self.headers.items()
                if k.lower() not in {"authorization", "api-key"}
            }
            self.server.record(
                {"method": self.command, "path": self.path, "body": body, "headers": headers}
            )
        try:
            status, payload = self._route(path, body, malformed)
        except _APIError as exc:
            status, payload = exc.status, exc.body()
        except Exception:
            logger.exception("The offline writer failed on %s %s", self.command, self.path)
            status, payload = (
                500,
                _APIError(
                    500, "The offline writer hit an internal error.", type_="server_error"
                ).body(),
            )
        self._send(status, payload, request_id)

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

    def _route(self, path: str, body: Any, malformed: bool) -> tuple[int, Any]:
        known = {"/v1/chat/completions": {"POST"}, "/v1/models": {"GET"}}
        known["/_offline/requests"] = {"GET", "DELETE"}
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
        if is_model:
            model_id = path[len("/v1/models/") :]
            self._require_model(model_id)
            return 200, self._model(model_id)
        if path == "/v1/models":
            return 200, {"object": "list", "data": [self._model(m) for m in self.server.models]}
        if path == "/_offline/requests":
            if self.command == "DELETE":
                return 200, {"deleted": self.server.clear_requests()}
            return 200, {"object": "list", "data": self.server.requests}
        if malformed:
            raise _APIError(
                400,
                "We could not parse the JSON body of your request. The offline writer "
                "expects a JSON object.",
                code="invalid_json",
            )
        return 200, self._completion(body)

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

    def _completion(self, body: Any) -> dict[str, Any]:
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

        if self.server.latency_ms:
            time.sleep(self.server.latency_ms / 1000)
        content = compose_reply(messages)
        finish_reason = "stop"
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(max_tokens, int) and 0 < max_tokens < estimate_tokens(content):
            content, finish_reason = content[: max_tokens * 4], "length"
        prompt_tokens = estimate_tokens("".join(message_text(m.get("content")) for m in messages))
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
                "prompt_tokens_details": {"cached_tokens": 0},
            },
            "hyperpers_offline_writer": dict(METADATA),
        }

    def _send(self, status: int, payload: Any, request_id: str) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", request_id)
        self.send_header("x-ratelimit-limit-requests", "10000")
        self.send_header("x-ratelimit-remaining-requests", "9999")
        self.send_header("x-ratelimit-limit-tokens", "10000000")
        self.send_header("x-ratelimit-remaining-tokens", "9999999")
        self.send_header("x-hyperpers-offline-writer", "rules; not a language model")
        self.end_headers()
        self.wfile.write(data)


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
