"""Automatic checks on generated copy. Each returns one result; none blocks review.

A result is stored on the variant as {"name", "passed", "message"} so reviewers see
exactly what failed and why. The module also holds the scan for instruction-like text
in the input data (`scan_for_injection`), which prompt rendering runs and whose
findings come back here as the `input_injection` check.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from anyascii import anyascii
from django.conf import settings
from django.conf.locale import LANG_INFO

from generation.models import Brand, Customer, Product, Prompt, Segment


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    message: str
    # Passed, yet never auto-published: a person must read it (weak signs of injection).
    hold: bool = False


def check_length(text: str, *, max_length: int) -> CheckResult:
    # Characters as written: composed (NFC), so "é" typed as e + a combining accent
    # counts once, as a reader and a channel's limit count it.
    n = len(unicodedata.normalize("NFC", text))
    if n > max_length:
        return CheckResult("length", False, f"{n} characters, over the limit of {max_length}")
    return CheckResult("length", True, f"{n} of {max_length} characters")


def check_protected_terms(text: str, *, terms: list[str]) -> CheckResult:
    missing = [t for t in terms if t and t not in text]
    if missing:
        return CheckResult(
            "protected_terms", False, "Missing verbatim: " + ", ".join(f"'{t}'" for t in missing)
        )
    return CheckResult("protected_terms", True, "All protected terms present verbatim")


def _word_pattern(phrase: str) -> str:
    # Whole words, and any run of whitespace where the phrase has a space.
    return r"(?<!\w)" + r"\s+".join(map(re.escape, phrase.split())) + r"(?!\w)"


def check_banned_phrases(text: str, *, phrases: list[str]) -> CheckResult:
    # Whole words only: "cure" is banned, "secure" is not.
    found = [p for p in phrases if p and re.search(rf"(?<!\w){re.escape(p)}(?!\w)", text, re.I)]
    if found:
        return CheckResult(
            "banned_phrases", False, "Contains: " + ", ".join(f"'{p}'" for p in found)
        )
    return CheckResult("banned_phrases", True, "No banned phrase")


# --- language ---------------------------------------------------------------------

# Fewer letters than this (after removing product and brand names) say too little.
LANGUAGE_MIN_LETTERS = 20
# Close languages (pt/gl, nl/af, da/nb) split the probability on short copy. If the
# expected language is not the top guess but still has this much, the copy passes:
# on 1,870 short UI and marketing strings in 12 languages this cut false failures
# from 75 to 43, while a wrong language reached it in 10 of 19,745 pairs.
LANGUAGE_AMBIGUOUS_MIN = 0.2
# Codes we accept whose detector label differs.
_LANGUAGE_ALIASES = {"nb": "no", "iw": "he", "in": "id", "fil": "tl"}

_detector: Any = None
_detector_lock = threading.Lock()


def _language_detector():
    """The py3langid identifier, loaded once per process (about 0.5 s, from its wheel)."""
    global _detector
    if _detector is None:
        with _detector_lock:
            if _detector is None:
                # Imported here so processes that never check copy skip numpy.
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                # norm_probs turns scores into probabilities for the message and the
                # ambiguity rule. classify/rank keep no state between calls, so one
                # identifier serves all threads (we never call set_languages).
                _detector = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _detector


def warm_up() -> None:
    """Load the language model now (worker start) rather than on the first variant."""
    _language_detector()


def _language_name(code: str, share: float | None = None, suffix: str = "") -> str:
    """'German (de)', or with a share 'German (de, 97% confident)'."""
    name = (LANG_INFO.get(code) or {}).get("name")
    detail = code if share is None else f"{code}, {share:.0%}{suffix}"
    return f"{name} ({detail})" if name else detail


def _primary_subtag(language: str) -> str:
    code = re.split(r"[-_]", language.strip().lower(), maxsplit=1)[0]
    return _LANGUAGE_ALIASES.get(code, code)


def check_language(text: str, *, language: str, ignore: Iterable[str] = ()) -> CheckResult:
    """Is the copy in `language`? Names in `ignore` (product, brand) are removed first."""
    expected = _primary_subtag(language)
    if not expected:
        return CheckResult("language", True, "No language to check against")
    for term in sorted({t for t in ignore if t}, key=len, reverse=True):
        text = re.sub(re.escape(term), " ", text, flags=re.I)
    if len(re.findall(r"[^\W\d_]", text)) < LANGUAGE_MIN_LETTERS:
        return CheckResult("language", True, "too short to tell")

    detector = _language_detector()
    if expected not in detector.labels:
        return CheckResult("language", True, f"Cannot check {_language_name(expected)}")
    ranked = detector.rank(text)
    top, top_share = ranked[0]
    if top == "zxx":  # the model's label for "no linguistic content"
        return CheckResult("language", True, "too short to tell")
    expected_share = dict(ranked).get(expected, 0.0)
    if top == expected:
        return CheckResult(
            "language", True, f"Written in {_language_name(top, top_share, ' confident')}"
        )
    if expected_share >= LANGUAGE_AMBIGUOUS_MIN:
        return CheckResult(
            "language",
            True,
            f"Probably {_language_name(expected, expected_share)}, "
            f"could be {_language_name(top, top_share)}",
        )
    return CheckResult(
        "language",
        False,
        f"Written in {_language_name(top, top_share, ' confident')}, "
        f"expected {_language_name(expected)}",
    )


# --- personal data ----------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[^\W_](?:[\w-]*\.)+[^\W\d_]{2,}(?!\w)")
# A run of digits with the separators phone numbers use, possibly after + or (.
# It may not continue a word or number ("NP-RUN-001", "1.5"), and stops at a line end.
_DIGIT_RUN = re.compile(r"(?<![\w+./,-])(?:\+|\(\+?)?\d(?:[ \t().\/-]{0,3}\d)+\)?")
# Formats without a trunk prefix (0) or country code: US/CA 555-123-4567,
# ES 612 34 56 78 and 91 123 45 67, IT 333 123 4567.
_GROUPED_LOCAL = re.compile(
    r"\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}|\d{3} \d{2} \d{2} \d{2}|\d{2} \d{3} \d{2} \d{2}"
)


def _is_phone_number(candidate: str) -> bool:
    """Decide on a digit run by its shape.

    1. With a country code (+ or 00): 8 to 15 digits, as E.164 allows.
    2. With a trunk prefix (0...): 9 to 12 digits, so dates like 01.05.2024 (8) are not.
    3. Otherwise only the grouped local formats above; sizes, prices, years and
       thousands ("10.000", "1 299") never have them.
    """
    digits = re.sub(r"\D", "", candidate)
    bare = candidate.lstrip("(")
    if bare.startswith("+") or digits.startswith("00"):
        return 8 <= len(digits) <= 15
    if digits.startswith("0"):
        # The trunk prefix belongs to an area code: "030 ...", not a list "0 2 4 6 8 10".
        area = re.match(r"\D*(\d+)", candidate)  # always matches: there are digits
        return 9 <= len(digits) <= 12 and area is not None and len(area[1]) >= 2
    return _GROUPED_LOCAL.fullmatch(candidate) is not None


def _mask(value: str) -> str:
    """Enough to find it in the copy, not enough to leak it: a***@example.com, +49 3***."""
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"{value[:4].rstrip()}***" if len(value) > 5 else "***"


def find_phone_numbers(text: str) -> list[str]:
    return [m.group().strip() for m in _DIGIT_RUN.finditer(text) if _is_phone_number(m.group())]


def personal_value_kind(value: object) -> str | None:
    """What a whole attribute value is, when it is personal data by its shape:
    "e-mail addresses" or "phone numbers" (as the personal_data check reads them)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _EMAIL.fullmatch(text):
        return "e-mail addresses"
    if _DIGIT_RUN.fullmatch(text) and _is_phone_number(text):
        return "phone numbers"
    return None


class PersonalValues:
    """Watches an import's values: an attribute whose sampled values are mostly e-mail
    addresses or phone numbers is personal, whatever its name ("contact", "c7")."""

    SAMPLE = 200  # values looked at per attribute
    SHARE = 0.5  # of those, personal-looking

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.kinds: dict[str, Counter] = {}
        # Attributes sampled SAMPLE times: a row naming only these is skipped whole (a
        # million-row import would otherwise look at every value to skip it).
        self.sampled: set[str] = set()

    def add(self, attributes: dict) -> None:
        if attributes.keys() <= self.sampled:
            return
        for name, value in attributes.items():
            if value is None or value == "" or self.seen.get(name, 0) >= self.SAMPLE:
                continue
            self.seen[name] = self.seen.get(name, 0) + 1
            if self.seen[name] >= self.SAMPLE:
                self.sampled.add(name)
            kind = personal_value_kind(value)
            if kind is not None:
                self.kinds.setdefault(name, Counter())[kind] += 1

    def found(self) -> dict[str, str]:
        """attribute → why it is personal ("values look like e-mail addresses")."""
        out = {}
        for name, kinds in sorted(self.kinds.items()):
            kind, count = kinds.most_common(1)[0]
            if count >= self.SHARE * self.seen[name]:
                out[name] = f"values look like {kind}"
        return out


def check_personal_data(text: str, *, identifiers: Iterable[str] = ()) -> CheckResult:
    """No e-mail address, phone number or customer identifier in the copy."""
    found = [f"an e-mail address ({_mask(e)})" for e in dict.fromkeys(_EMAIL.findall(text))]
    found += [f"a phone number ({_mask(p)})" for p in dict.fromkeys(find_phone_numbers(text))]
    for identifier in dict.fromkeys(str(i).strip() for i in identifiers):
        # Very short identifiers ("7", "ab") would match ordinary words and sizes.
        if len(identifier) >= 4 and re.search(_word_pattern(identifier), text, re.I):
            found.append(f"a customer identifier ({_mask(identifier)})")
    if found:
        return CheckResult("personal_data", False, "Contains " + "; ".join(found))
    return CheckResult("personal_data", True, "No e-mail address, phone number or identifier")


_PLACEHOLDER = re.compile(r"\{[a-z_][a-z0-9_]*\}", re.I)


def check_placeholders(text: str) -> CheckResult:
    found = sorted(set(_PLACEHOLDER.findall(text)))
    if found:
        return CheckResult("placeholders", False, "Unrendered: " + ", ".join(found))
    return CheckResult("placeholders", True, "No unrendered placeholder")


# --- overreach --------------------------------------------------------------------

# Copy naming a value fewer than this share of the segment has speaks to a minority.
# Overridden by settings.CHECK_OVERREACH_MIN_SHARE.
OVERREACH_MIN_SHARE = 0.5

# Level and placeholder words: copy uses them in their ordinary sense ("high-wear
# zones", "no seams"), so they do not name an attribute value.
_GENERIC_VALUES = frozenset(
    {"low", "medium", "mid", "high", "very", "none", "yes", "no", "true", "false", "other",
     "others", "unknown", "n/a", "na", "null", "any", "all", "mixed", "not set",
     "unspecified", "average", "moderate"}
)  # fmt: skip
# Attributes that identify a person are never summarised into a segment, and copy
# must never name them anyway (the personal_data check covers that).
PERSONAL_ATTRIBUTES = frozenset(
    {"email", "e_mail", "phone", "mobile", "name", "first_name", "last_name", "address",
     "street", "postcode", "zip", "birthdate", "date_of_birth", "ip", "external_id", "id",
     "customer_id"}
)  # fmt: skip


# Name tokens that make an attribute personal wherever they appear in its name
# (email_address, phone_number, surname, dob, ip_address, street_address, loyalty_id...).
# A false alarm costs an attribute the model does not see; a miss sends a person's
# data to an endpoint, so the list errs wide: "email_opt_in" is personal too.
_PERSONAL_TOKENS = frozenset(
    {"email", "mail", "phone", "mobile", "tel", "telephone", "cell", "cellphone", "fax",
     "surname", "firstname", "lastname", "fullname", "forename", "givenname",
     "familyname", "maidenname", "username", "nickname", "name", "address", "street",
     "postcode", "postal", "zip", "zipcode", "birthdate", "birthday", "dateofbirth", "dob",
     "ssn", "passport", "iban", "ip", "ipv4", "ipv6", "password", "id", "uuid", "gps",
     "latitude", "longitude", "lat", "lon", "lng"}
)  # fmt: skip
# "name" and "id" after these are not a person's: product_name, segment_id.
_NAMES_OF_THINGS = frozenset(
    {"product", "brand", "category", "subcategory", "segment", "campaign", "store", "plan",
     "tier", "team", "company", "city", "country", "region", "device", "browser", "channel"}
)  # fmt: skip


def attribute_tokens(name: str) -> list[str]:
    """The words of an attribute name, lower case: "emailAddress", "e-mail address"
    and "EMAIL_ADDRESS" all give ["email", "address"] (a lone letter joins the next)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", str(name))
    words = [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]
    tokens: list[str] = []
    for word in words:
        if tokens and len(tokens[-1]) == 1:  # e_mail, e-mail
            tokens[-1] += word
        else:
            tokens.append(word)
    return tokens


def is_personal_attribute(name: str) -> bool:
    """Whether an attribute identifies or locates a person, by its name's words and
    their joins (first_name, date_of_birth), not its exact spelling."""
    tokens = attribute_tokens(name)
    if not tokens:
        return False
    joined = "".join(tokens)
    if joined in PERSONAL_ATTRIBUTES or joined in _PERSONAL_TOKENS:
        return True
    for i, token in enumerate(tokens):
        if i + 1 < len(tokens) and token + tokens[i + 1] in _PERSONAL_TOKENS:
            return True  # first_name, birth_date
        if token in ("name", "id"):
            if i == 0 or tokens[i - 1] not in _NAMES_OF_THINGS:
                return True
        elif token in _PERSONAL_TOKENS:
            return True
    return "dateofbirth" in joined


class PersonalNames(frozenset):
    """Attribute names known personal (lower case), plus every name that
    is_personal_attribute recognises: `"email_address" in names` is True."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (
            frozenset.__contains__(self, name.lower()) or is_personal_attribute(name)
        )


def _can_be_named(value: str) -> bool:
    """False for values copy cannot 'name': levels, numbers, ranges (25-34, 55+), stubs."""
    value = value.strip()
    if len(value) < 3 or not re.search(r"[^\W\d_]", value):
        return False
    if re.match(r"[<>≤≥~]?\s*\d", value):
        return False
    return not set(re.split(r"[\s/_-]+", value.lower())) <= _GENERIC_VALUES


def overreach_min_share() -> float:
    return float(getattr(settings, "CHECK_OVERREACH_MIN_SHARE", OVERREACH_MIN_SHARE))


def check_overreach(
    text: str,
    *,
    segment: Segment | None,
    customer: Customer | None = None,
    product: Product | None = None,
    min_share: float | None = None,
) -> CheckResult:
    """Does the copy name an attribute value only a minority of the segment has?

    1. One-to-one copy (a customer) cannot overreach.
    2. Skip the rules' attributes and values (every member has them), personal
       attributes, values that are not names, and values the product's own name,
       category or description use (a running shoe may say "running shoes").
    3. Flag each remaining value under `min_share` that the copy names as a whole
       word, case-insensitive.
    """
    if customer is not None:
        return CheckResult("overreach", True, "one-to-one copy")
    if segment is None:
        return CheckResult("overreach", True, "No segment to compare against")
    threshold = overreach_min_share() if min_share is None else min_share
    rule_values = {str(v).strip().lower() for v in segment.rules.values()}
    product_text = (
        " ".join([product.name, product.category, product.subcategory, product.description])
        if product is not None
        else ""
    )
    found = []
    for attribute, shares in (segment.summary or {}).items():
        if (
            not isinstance(shares, dict)
            or attribute in segment.rules
            or is_personal_attribute(attribute)
        ):
            continue
        for value, share in shares.items():
            value = str(value)
            try:
                share = float(share)
            except (TypeError, ValueError):
                continue
            if (
                share >= threshold
                or value.strip().lower() in rule_values
                or not _can_be_named(value)
            ):
                continue
            pattern = _word_pattern(value)
            if re.search(pattern, product_text, re.I) or not re.search(pattern, text, re.I):
                continue
            found.append(f"names '{value}' ({attribute}) which only {share:.0%} of the segment has")
    if found:
        message = "; ".join(found)
        return CheckResult("overreach", False, message[0].upper() + message[1:])
    return CheckResult(
        "overreach", True, f"Names no value that fewer than {threshold:.0%} of the segment have"
    )


# --- instructions hidden in the input data ----------------------------------------

_DET = r"(?:(?:all|any|the|your|my|these|those|every|of)\s+)*"
_EARLIER = r"(?:previous|prior|above|earlier|preceding|foregoing|original|initial|system|former)"
# Each pattern names an instruction explicitly, so product copy ("ignore the rain",
# "acts as a windbreak", "reveals the trail") does not match.
_INJECTION_PATTERNS = [
    # ignore / disregard / forget / override ... previous instructions
    rf"\b(?:ignore|disregard|forget|override|bypass)\s+{_DET}(?:{_EARLIER}\s+)+"
    r"(?:instructions?|prompts?|rules|directions|guidelines|messages|context|text)\b",
    rf"\b(?:ignore|disregard|forget|override|bypass)\s+(?:all|any|your|every)\s+{_DET}"
    r"(?:instructions|prompts?|rules|guidelines)\b",
    r"\bforget\s+(?:everything|all)\s+(?:above|before|previous|prior|earlier|"
    r"(?:that\s+)?you(?:'ve|\s+have|\s+were|\s+was)?\s+(?:been\s+)?(?:told|said|instructed))",
    # Not "you are now ready" nor "you are now a role model".
    r"\byou\s+are\s+now\s+(?:(?:a|an|the|my)\s+(?:\w+\s+){0,3}?(?:assistant|ai|chatbot|bot|"
    r"language\s+model|gpt|llm|administrator|admin|developer|hacker)\b|in\s+\w+\s+mode\b|"
    r"(?:free|unrestricted|unfiltered|jailbroken|dan|no\s+longer)\b)",
    r"\b(?:new|updated|revised|real)\s+(?:system\s+)?instructions\b",
    r"\bsystem[\s-]?prompt\b",
    r"\bact\s+as\s+(?:an?|the|my|your)\s+(?:\w+\s+){0,2}?(?:assistant|ai|chatbot|bot|"
    r"language\s+model|llm|gpt|dan|system|administrator|admin|developer|hacker)\b",
    r"(?m)^\s*(?:system|assistant|user|developer)\s*:",
    r"<\|(?:im_start|im_end|system|user|assistant|endoftext)\|>|\[/?INST\]|<</?SYS>>",
    r"<\s*/?\s*data\s*>",
    r"(?:^|\s)#{3,}\s*(?:instructions?|system|new|task|prompt|rules?|important|assistant|"
    r"user|response)\b",
    r"\b(?:do\s+not|don't|never)\s+follow\s+(?:(?:the|your|any|these|those|previous|prior|"
    r"above|brand|system)\s+)*(?:instructions|rules|guidelines|prompt|voice)\b",
    r"\breveal\s+(?:(?:your|the|my|its|hidden)\s+)*(?:system\s+)?(?:prompt|instructions|"
    r"api\s+keys?|password|credentials|configuration|guidelines)\b",
    r"\bjailbr(?:eak|oken)\w*|\b(?:dan|developer|god)\s+mode\b",
    # Paraphrases aimed at a copywriting model: "Disregard the brand voice; instead
    # announce...", "drop your tone guide and say...".
    r"\b(?:ignore|disregard|forget|override|bypass|drop|abandon)\s+(?:(?:the|your|our|all|"
    r"any|this|that|its)\s+)*(?:brand\s+)?(?:voice|tone|style(?:\s+guide)?|guidelines|"
    r"persona|character)\b",
    r"[;:.,!]\s*instead\s*,?\s+(?:announce|say|write|tell|output|print|respond|reply|"
    r"state|claim|declare|promote)\b",
    # German, French, Spanish, Italian, Dutch
    r"\bignorier(?:e|en|t)?\s+(?:(?:alle|die|deine|ihre|sämtliche|jegliche|bisherigen|"
    r"vorherigen|vorigen|obigen|früheren|vorangegangenen)\s+)*(?:anweisungen|instruktionen)\b",
    # "Vergiss alles, was du über Laufschuhe weißt" is a slogan; only what came before.
    r"\bvergiss\s+(?:alles\s+(?:bisherige|vorherige|obige|davor|zuvor|was\s+(?:dir|du)\s+"
    r"(?:gesagt|befohlen|aufgetragen))|(?:alle|deine)\s+(?:\w+\s+)?anweisungen)\b",
    r"\bneue\s+anweisungen\b",
    r"\bignore[rsz]?\s+(?:(?:toutes|tous|les|des|vos|tes|ces)\s+)*(?:instructions|consignes|"
    r"directives)\b",
    r"\boublie[rz]?\s+(?:toutes\s+)?(?:les|tes|vos)\s+(?:\w+\s+)?(?:instructions|consignes)\b|"
    r"\boublie[rz]?\s+tout\s+ce\s+qui\s+(?:précède|a\s+été\s+dit)",
    r"\bignor(?:a|e|en|ad|ar)\s+(?:(?:todas|todos|las|los|tus|sus|estas|esas|le|tutte|"
    r"precedenti)\s+)*(?:instrucciones|indicaciones|órdenes|istruzioni)\b",
    r"\bnegeer\s+(?:(?:alle|de|je|vorige|eerdere)\s+)*instructies\b",
]
_INJECTION = [re.compile(p, re.I) for p in _INJECTION_PATTERNS]
# Zero-width characters could split a keyword ("ig\u200bnore") past the patterns.
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")


def _readings(text: str) -> list[str]:
    """The text as the patterns read it: NFKC with invisible characters removed, and,
    when it is not plain ASCII, its Latin skeleton (anyascii), so "Ignоre" spelled with a
    Cyrillic о, or Greek and full-width look-alikes, reads as "Ignore"."""
    normal = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    return [normal] if normal.isascii() else [normal, anyascii(normal)]


def find_injection(text: str) -> str | None:
    """The first instruction-like passage in a piece of input data, quoted, or None."""
    if not text:
        return None
    for reading in _readings(text):
        matches = [m for p in _INJECTION if (m := p.search(reading))]
        if matches:
            first = min(matches, key=lambda m: m.start())
            snippet = " ".join(first.group().split())[:60]
            return f"'{snippet}'"
    return None


# Weak signs: words an instruction uses, and words mixing scripts (a homoglyph inside a
# word). Too common to fail a check on, enough to keep a variant from auto-publishing.
_HINT_WORDS = re.compile(
    r"\b(?:ignore|disregard|instead|announce|pretend|obey|override|instructions?|"
    r"system\s+prompt|you\s+must|from\s+now\s+on|respond\s+with|role-?play)\b",
    re.I,
)
_MIXED_SCRIPT_WORD = re.compile(r"\b(?=\w*[A-Za-z])(?=\w*[\u0370-\u03ff\u0400-\u04ff])\w+\b")
WEAK = "weak sign"


def find_instruction_hint(text: str) -> str | None:
    """A weak sign of instructions in a piece of input data, quoted, or None."""
    if not text:
        return None
    normal = unicodedata.normalize("NFKC", text)
    if match := _MIXED_SCRIPT_WORD.search(normal):
        return f"a word mixing alphabets, '{match.group()[:30]}'"
    for reading in _readings(text):
        if match := _HINT_WORDS.search(reading):
            return f"'{match.group()}'"
    return None


def scan_for_injection(data: Any, path: str = "") -> list[str]:
    """Findings like "audience.summary.city: 'ignore previous instructions'".

    Walks dicts (keys too: segment summaries key values by name), lists and strings.
    """
    findings: list[str] = []
    if isinstance(data, str):
        if found := find_injection(data):
            findings.append(f"{path or 'input'}: {found}")
        elif hint := find_instruction_hint(data):
            findings.append(f"{WEAK}: {path or 'input'}: {hint}")
    elif isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and (found := find_injection(key)):
                findings.append(f"{path or 'input'}: {found}")
            findings += scan_for_injection(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list | tuple):
        for i, item in enumerate(data):
            findings += scan_for_injection(item, f"{path}[{i}]")
    return findings


def _listed(items: list[str], shown: int) -> str:
    more = f" (and {len(items) - shown} more)" if len(items) > shown else ""
    return "; ".join(items[:shown]) + more


def check_input_injection(findings: Iterable[str], *, shown: int = 3) -> CheckResult:
    """Fails on instruction-like text in the input; passes, but holds the variant for a
    person (never auto-published), on weak signs only."""
    findings = list(findings)
    weak = [f.removeprefix(f"{WEAK}: ") for f in findings if f.startswith(f"{WEAK}: ")]
    findings = [f for f in findings if not f.startswith(f"{WEAK}: ")]
    if findings:
        return CheckResult(
            "input_injection",
            False,
            "The input data contains text that tries to instruct the model: "
            + _listed(findings, shown),
        )
    if weak:
        return CheckResult(
            "input_injection",
            True,
            "Weak signs of instructions in the input data, so a person reviews it: "
            + _listed(weak, shown),
            hold=True,
        )
    return CheckResult("input_injection", True, "No instruction-like text in the input data")


# --- the answer itself ------------------------------------------------------------


def check_rationale(rationale: str) -> CheckResult:
    if not rationale.strip():
        return CheckResult(
            "rationale",
            False,
            "The rationale is missing: the answer said nothing on why the copy is written this way",
        )
    return CheckResult("rationale", True, "The model explained its choices")


def check_truncated(finish_reason: str) -> CheckResult:
    if finish_reason == "length":
        return CheckResult(
            "truncated",
            False,
            "The answer was cut off at the endpoint's length limit (finish_reason: length); "
            "the copy may end mid-sentence",
        )
    return CheckResult("truncated", True, "The answer ended by itself")


_FORMAT_NAMES = {"plain": "plain text", "markdown": "the e-mail markdown subset"}


def check_format(*, fmt: str, removed: Iterable[str], problems: Iterable[str]) -> CheckResult:
    """Could the copy be put into the channel's format? What was removed is listed for
    the reviewer; what could not be, fails."""
    name = _FORMAT_NAMES.get(fmt, fmt)
    problems, removed = list(problems), list(removed)
    if problems:
        return CheckResult("format", False, f"Cannot be shown as {name}: " + "; ".join(problems))
    if removed:
        return CheckResult("format", True, f"Made into {name}: removed " + "; ".join(removed))
    return CheckResult("format", True, f"Written as {name}")


def answer_checks(
    *,
    rationale: str,
    finish_reason: str,
    fmt: str,
    removed: Iterable[str] = (),
    problems: Iterable[str] = (),
) -> list[dict]:
    """The checks on how the model answered, beside run_checks' checks on the copy."""
    results = [
        check_rationale(rationale),
        check_truncated(finish_reason),
        check_format(fmt=fmt, removed=removed, problems=problems),
    ]
    # "hold" is stored only where it is set.
    return [{k: v for k, v in asdict(r).items() if k != "hold" or v} for r in results]


# --- all checks -------------------------------------------------------------------


def run_checks(
    *,
    text: str,
    prompt: Prompt,
    brand: Brand,
    product: Product,
    language: str,
    segment: Segment | None = None,
    customer: Customer | None = None,
    identifiers: Iterable[str] = (),
    input_findings: Iterable[str] = (),
) -> list[dict]:
    # Brand terms are protected only where the product's own name or base copy uses
    # them: copy for a bag need not name every product line of the brand.
    source = f"{product.name}\n{product.description}"
    terms = [product.name] + [t for t in brand.protected_terms if t in source]
    names = [product.name, brand.name, *brand.protected_terms]
    results = [
        check_length(text, max_length=prompt.max_length),
        check_protected_terms(text, terms=list(dict.fromkeys(terms))),
        check_banned_phrases(text, phrases=brand.banned_for(language)),
        check_language(text, language=language, ignore=names),
        check_personal_data(text, identifiers=identifiers),
        check_placeholders(text),
        check_overreach(text, segment=segment, customer=customer, product=product),
        check_input_injection(input_findings),
    ]
    # "hold" is stored only where it is set.
    return [{k: v for k, v in asdict(r).items() if k != "hold" or v} for r in results]
