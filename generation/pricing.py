"""What tokens cost: a price table per model, from settings (LLM_PRICES)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

PER_MILLION = Decimal(1_000_000)
# Characters per token for estimates before anything is sent; ~4 for English text.
CHARS_PER_TOKEN = 4
# What a rationale adds to the copy, in tokens, for estimates.
RATIONALE_TOKENS = 60


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: Decimal
    cached_input: Decimal
    output: Decimal


class UnknownPrice(LookupError):
    pass


def price_for(model: str) -> Price:
    table = settings.LLM_PRICES
    if model not in table:
        raise UnknownPrice(
            f"No price for model '{model}' in LLM_PRICES (known: {', '.join(sorted(table))})"
        )
    values = [Decimal(str(v)) for v in table[model]]
    if len(values) == 2:
        values = [values[0], values[0], values[1]]
    return Price(*values)


def cost(*, model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0):
    """The cost of one call in dollars, or None when the model has no price."""
    try:
        price = price_for(model)
    except UnknownPrice:
        return None
    uncached = max(prompt_tokens - cached_tokens, 0)
    total = (
        uncached * price.input
        + cached_tokens * price.cached_input
        + completion_tokens * price.output
    ) / PER_MILLION
    return total.quantize(Decimal("0.000001"))


def estimate_tokens(text: str) -> int:
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def estimate_completion_tokens(max_length: int) -> int:
    return estimate_tokens("x" * max_length) + RATIONALE_TOKENS


# max_tokens of every call: room for copy at the length limit and a rationale three
# times over (a language that tokenises worse, JSON framing), yet a bound, so a model
# that rambles stops there and a run's budget can reserve the worst case. A reasoning
# model counts its hidden reasoning against max_tokens: raise LLM_MAX_TOKENS_FACTOR.
DEFAULT_MAX_TOKENS_FACTOR = 3


def max_completion_tokens(max_length: int) -> int:
    factor = getattr(settings, "LLM_MAX_TOKENS_FACTOR", DEFAULT_MAX_TOKENS_FACTOR)
    return int(factor * estimate_completion_tokens(max_length))
