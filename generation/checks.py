"""Automatic checks on generated copy. Each returns one result; none blocks review.

A result is stored on the variant as {"name", "passed", "message"} so reviewers see
exactly what failed and why.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from generation.models import Brand, Product, Prompt


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    message: str


def check_length(text: str, *, max_length: int) -> CheckResult:
    n = len(text)
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


def check_banned_phrases(text: str, *, phrases: list[str]) -> CheckResult:
    # Whole words only: "cure" is banned, "secure" is not.
    found = [p for p in phrases if p and re.search(rf"(?<!\w){re.escape(p)}(?!\w)", text, re.I)]
    if found:
        return CheckResult(
            "banned_phrases", False, "Contains: " + ", ".join(f"'{p}'" for p in found)
        )
    return CheckResult("banned_phrases", True, "No banned phrase")


_PLACEHOLDER = re.compile(r"\{[a-z_][a-z0-9_]*\}", re.I)


def check_placeholders(text: str) -> CheckResult:
    found = sorted(set(_PLACEHOLDER.findall(text)))
    if found:
        return CheckResult("placeholders", False, "Unrendered: " + ", ".join(found))
    return CheckResult("placeholders", True, "No unrendered placeholder")


def run_checks(*, text: str, prompt: Prompt, brand: Brand, product: Product) -> list[dict]:
    # Brand terms are protected only where the product's own name or base copy uses
    # them: copy for a bag need not name every product line of the brand.
    source = f"{product.name}\n{product.description}"
    terms = [product.name] + [t for t in brand.protected_terms if t in source]
    results = [
        check_length(text, max_length=prompt.max_length),
        check_protected_terms(text, terms=list(dict.fromkeys(terms))),
        check_banned_phrases(text, phrases=brand.banned_phrases),
        check_placeholders(text),
    ]
    return [asdict(r) for r in results]
