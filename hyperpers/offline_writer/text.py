"""Reading a chat request: the <data> block, the messages' text, token estimates.

The composer, the profiles, the faults and the server all read requests the same way,
so these helpers live here, below all of them. So do the small value helpers they
share: a value as one clean line, a value as a mapping, and a choice by hash.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any


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


def estimate_tokens(text: str) -> int:
    """A deterministic token estimate: one token per four characters, at least one."""
    return max(1, math.ceil(len(text) / 4))


def pick_index(seed: int, slot: int, count: int) -> int:
    """An index below count from a hash of seed and slot: the same inputs, the same index."""
    digest = hashlib.sha256(f"{seed}:{slot}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % count


def inline(value: Any, *, limit: int = 200) -> str:
    """A value as one clean line of at most `limit` characters."""
    if value is None or isinstance(value, Mapping | list):
        return ""
    return re.sub(r"\s+", " ", str(value)).strip()[:limit]


def mapping(value: Any) -> Mapping[str, Any]:
    """The value if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}
