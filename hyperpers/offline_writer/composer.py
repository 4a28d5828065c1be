"""The composer: the copy and its rationale, written by fixed rules from a request's data.

The copy is composed from the JSON in the last user message's <data>...</data> block
(see generation.prompting.render): a hook sentence chosen by the audience's value tier,
a line naming the preferred subcategory, one or two sentences of the product
description, a value-for-money line for discount-sensitive audiences and a closing
line. Framing sentences come from a small phrasebook per language (en, de, fr, es, it,
nl; others fall back to English; tables.py reads it from data/phrasebook.json); the
product name and description are kept as given. Phrasings are varied by a hash of the
SKU and the audience, never at random, so the same request always gets the same answer
(temperature is ignored). The rationale is written in English for the reviewer.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .tables import ANGLE_WORDS, LONGER_NOTES, PHRASEBOOK, SHORTER_NOTES, TIER_ANGLES
from .text import extract_data, inline, mapping, message_text, pick_index

DEFAULT_MAX_LENGTH = 600
# A summary value describes a segment only when most of its members share it.
DOMINANT_SHARE = 0.5
# Customer attributes that identify a person; never read, so never echoed. Mirrors
# generation.prompting.PERSONAL_ATTRIBUTES, which this stdlib-only package cannot import.
PERSONAL_ATTRIBUTES = frozenset(
    {"email", "e_mail", "phone", "mobile", "name", "first_name", "last_name", "address",
     "street", "postcode", "zip", "birthdate", "date_of_birth", "ip", "external_id"}
)  # fmt: skip

_TRAITS: dict[str, tuple[str, ...]] = {
    "value_tier": ("value_tier", "tier"),
    "discount_sensitivity": ("discount_sensitivity", "price_sensitivity"),
    "preferred_subcategory": ("preferred_subcategory", "favorite_subcategory"),
}

# Reviewer notes a rule can follow, besides asking for shorter or longer copy
# (SHORTER_NOTES, LONGER_NOTES: substrings of the lower-cased note).
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
    product = mapping(data.get("product"))
    audience = mapping(data.get("audience"))
    name = inline(product.get("name"), limit=300)
    brand = inline(data.get("brand"), limit=100)
    description = _clean_text(product.get("description") if has_data else fallback_text)
    sentences = _sentences(description)
    limit = _positive_int(data.get("max_length"), DEFAULT_MAX_LENGTH)
    banned = [p for p in (inline(b) for b in _list(data.get("banned_phrases"))) if p]
    protected = [t for t in (inline(p) for p in _list(data.get("protected_terms"))) if t]
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

    note = inline(data.get("course_correction"), limit=1000)
    shorter = longer = False
    if note:
        lowered = note.lower()
        shorter = any(word in lowered for word in SHORTER_NOTES)
        longer = not shorter and any(word in lowered for word in LONGER_NOTES)
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
        variants: Sequence[str] = book[key]
        start = pick_index(seed, slot, len(variants))
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
        mapped = TIER_ANGLES.get(_normal(tier[0]))
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
        attributes = mapping(audience.get("attributes"))
        for key in names:
            if key.lower() not in PERSONAL_ATTRIBUTES and _scalar(attributes.get(key)):
                return inline(attributes[key], limit=60), "customer attribute"
        return None
    rules = mapping(audience.get("rules"))
    for key in names:
        if _scalar(rules.get(key)):
            return inline(rules[key], limit=60), "segment rule"
    summary = mapping(audience.get("summary"))
    for key in names:
        shares = {
            inline(v, limit=60): float(s)
            for v, s in mapping(summary.get(key)).items()
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
        who = inline(audience.get("name"), limit=80) or "the audience"
    facts = "; ".join(
        reason if not kind or kind in plan.kept else f"{reason} (that sentence was left out)"
        for kind, reason in plan.reasons
    ) or (
        "no value tier, discount sensitivity or preferred subcategory was given, "
        "so the framing is neutral"
    )
    first = f"Composed by fixed rules, not a language model, for {who}: {facts}."
    second = list(plan.notes)
    purpose = inline(audience.get("purpose"), limit=80)
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
    words = ANGLE_WORDS.get(angle, ())
    return max(sentences, key=lambda s: sum(w in s.lower() for w in words))


def _cut_at_word(text: str, room: int) -> str:
    """Text in at most `room` characters: whole, or cut at a word and ended with '…'."""
    if len(text) <= room:
        return text
    cut = text[: room - 1].rsplit(" ", 1)[0].rstrip(" ,;:-–—")
    return f"{cut}…"


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
    code = re.split(r"[-_]", inline(value, limit=20).lower() or "en")[0]
    return code or "en"


def _positive_int(value: Any, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []
