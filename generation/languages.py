"""Language tags (BCP 47): parsing, base languages, shares and negotiation.

Tags are parsed with `langcodes` (the IANA subtag registry, with its deprecated and
overlong forms replaced: "iw" is "he", "en-UK" is "en-gb") and kept as language,
script and region only; extensions and private-use parts are dropped. They are stored
in lower case ("de-ch"): BCP 47 tags are case-insensitive, and one spelling keeps
equality and database constraints simple.

A tag's *base* is its language subtag ("de" for "de-ch"). A regional tag counts
toward its base everywhere a share is asked for (segment languages, summaries); it is
a slot of its own only where a prompt names it.

Accept-Language headers (RFC 9110 §12.5.4, q-values included) are parsed by Django's
own parser, which the locale middleware uses, and each range is then checked here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import langcodes
from django.utils.translation.trans_real import parse_accept_lang_header

from generation.errors import ServiceError

DEFAULT_LANGUAGE = "en"
TAG_MAX = 35


class LanguageTagError(ServiceError):
    """A language tag that cannot be used, naming it."""

    default_field = "language"


def language_tag(value: object) -> str:
    """`value` as a stored tag ("de_CH" → "de-ch"), or LanguageTagError naming it."""
    if not isinstance(value, str) or not value.strip():
        raise LanguageTagError(f"{value!r} is not a language tag such as 'en' or 'de-CH'")
    text = value.strip().replace("_", "-")
    if len(text) > TAG_MAX:
        raise LanguageTagError(f"'{text[:TAG_MAX]}…' is longer than a language tag can be")
    try:
        parsed = langcodes.Language.get(text)
    except (langcodes.tag_parser.LanguageTagError, ValueError):
        parsed = None
    if parsed is None or not parsed.language or parsed.language == "und" or not parsed.is_valid():
        raise LanguageTagError(
            f"'{text}' is not a language tag (BCP 47) such as 'en', 'de-CH' or 'pt-BR'"
        )
    kept = langcodes.Language.make(
        language=parsed.language, script=parsed.script, territory=parsed.territory
    )
    return kept.to_tag().lower()


def base_language(tag: str) -> str:
    """The language subtag of a stored tag: "de" for "de-ch"."""
    return tag.split("-", 1)[0]


@dataclass(frozen=True)
class BaseShare:
    """A base language's share of a segment's members, and its tags' shares."""

    base: str
    share: float
    tags: tuple[tuple[str, float], ...]

    @property
    def detail(self) -> str:
        """'de-de 18%, de-ch 15%'; empty when the base is its only tag."""
        if [tag for tag, _share in self.tags] == [self.base]:
            return ""
        return ", ".join(f"{tag} {share:.0%}" for tag, share in self.tags)

    def __str__(self) -> str:
        """'de 33% (de-de 18%, de-ch 15%)'; 'it 5%' for a base spoken under no region."""
        detail = self.detail
        return f"{self.base} {self.share:.0%}" + (f" ({detail})" if detail else "")


def base_shares(shares: Mapping[str, float]) -> list[BaseShare]:
    """Tag shares ({"de-de": .18, "de-ch": .15, ...}) summed by base language, largest
    first; each base lists its tags, largest first."""
    by_base: dict[str, list[tuple[str, float]]] = {}
    for tag, share in shares.items():
        by_base.setdefault(base_language(str(tag)), []).append((str(tag), float(share)))
    found = [
        BaseShare(base, sum(s for _t, s in tags), tuple(sorted(tags, key=lambda t: (-t[1], t[0]))))
        for base, tags in by_base.items()
    ]
    return sorted(found, key=lambda b: (-b.share, b.base))


def shares_text(shares: Mapping[str, float]) -> str:
    """'en 38% (en-us 30%, en-gb 8%), de 33% (de-de 18%, de-ch 15%), fr 18%'."""
    return ", ".join(str(b) for b in base_shares(shares))


def languages_for(
    shares: Mapping[str, float],
    *,
    explicit: Iterable[str] = (),
    min_share: float = 0.10,
    fallback: str = DEFAULT_LANGUAGE,
) -> list[str]:
    """The languages a prompt writes in for an audience whose members' tags have
    `shares`: the `explicit` list when given (regional tags kept as asked), else every
    base language at least `min_share` of the members speak, largest first; with none
    that reaches it, the largest one, or `fallback` for an audience with no members."""
    explicit = list(dict.fromkeys(explicit))
    if explicit:
        return explicit
    bases = base_shares(shares)
    chosen = [b.base for b in bases if b.share >= min_share - 1e-9]
    if chosen:
        return chosen
    return [bases[0].base] if bases else [base_language(fallback)]


def accept_language(header: str) -> list[str]:
    """The tags an Accept-Language header asks for, most wanted first (q=0 ranges are
    left out; "*" is kept). LanguageTagError names a malformed header or range."""
    header = header.strip()
    if not header:
        return []
    ranges = parse_accept_lang_header(header)
    if not ranges:
        raise LanguageTagError(f"Accept-Language '{header[:100]}' is not a list of language tags")
    wanted = []
    for tag, q in ranges:
        if q <= 0:
            continue
        wanted.append("*" if tag == "*" else language_tag(tag))
    return list(dict.fromkeys(wanted))


@dataclass(frozen=True)
class Choice:
    """Which of the available languages serves a request, and why."""

    language: str | None
    # exact | base_language | default | no_variant_in_language
    reason: str


def negotiate(wanted: Iterable[str], available: Iterable[str], *, default: str) -> Choice:
    """Pick a language from `available` for a reader who wants `wanted` (most wanted
    first), as RFC 4647's lookup does: each wanted tag in turn, exactly, then its base
    language (a "de" variant for "de-ch", or a "de-ch" one for "de"), before the next
    wanted tag; then `default` if available; else None.

    The reason says how the pick was made: "exact", "base_language", "default" (nothing
    or only "*" was asked for), or "no_variant_in_language" when the reader's
    languages had none and `default` (or nothing) serves.
    """
    available = list(dict.fromkeys(available))
    wanted = [w for w in wanted if w]
    for tag in wanted:
        if tag == "*":
            break
        if tag in available:
            return Choice(tag, "exact")
        base = base_language(tag)
        if base in available:
            return Choice(base, "base_language")
        regional = [a for a in available if base_language(a) == base]
        if regional:
            return Choice(regional[0], "base_language")
    asked = [w for w in wanted if w != "*"]
    if not asked:
        return Choice(default if default in available else None, "default")
    return Choice(default if default in available else None, "no_variant_in_language")
