"""Provider profiles: the shapes real models give their answers.

Profiles (setting `profile`) change the shape of the content, never the copy's words.
Which shape an answer gets comes from a hash of the request's messages, not the RNG, so
a retried request is answered the same way. Only `json` reads response_format; the
others ignore it, as an endpoint without structured output does.
- plain (the default): the copy, a blank line, "Rationale: ...".
- markdown: the product name bolded (**Name**), some copies under a "## Name" or
  "# Name" heading, and the rationale marked in one of the ways models mark it
  ("**Rationale**: ", "**Rationale:** ", "### Rationale" on its own line, "Rationale - ",
  "Rationale — ", "*Rationale*: ", "RATIONALE: "; data/answers.json).
- json: with response_format json_schema or json_object, {"copy": ..., "rationale": ...},
  one answer in four in a ```json code fence; without it, as plain.
- terse: one answer in three without a rationale, the rest with a short one.
- chatty: a preamble line ("Here is the copy:", "Sure! Here's ..."; data/answers.json),
  some copies in double quotes, then "Rationale: ...".
- truncating: one answer in four cut off mid-copy with finish_reason "length"; the rest
  as plain.
- rambling: the rationale restated forty times, so answers run far past an estimate
  (and past max_tokens when it is set).
An answer longer than max_tokens is cut as before, whatever the profile.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .tables import PREAMBLES, RATIONALE_MARKS
from .text import estimate_tokens, extract_data, inline, mapping, message_text, pick_index

# How answers are shaped, like the range of hosted models (see shape_answer).
PROFILES: tuple[str, ...] = (
    "plain", "markdown", "json", "terse", "chatty", "truncating", "rambling",
)  # fmt: skip
# What a model that refuses says, in message.refusal (the refusal fault).
REFUSAL = "I'm sorry, but I can't help with that request."


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
            wrong: dict[str, object] = (
                {"text": copy} if pick_index(pick, 1, 2) else {"copy": len(copy)}
            )
            return json.dumps(wrong, ensure_ascii=False), "stop", "bad_json"
        answer = json.dumps({"copy": copy, "rationale": rationale}, ensure_ascii=False)
        if pick_index(pick, 2, 4) == 0:
            return f"```json\n{answer}\n```", "stop", "json_fenced"
        return answer, "stop", "json"
    if profile == "markdown":
        mark = RATIONALE_MARKS[pick_index(pick, 3, len(RATIONALE_MARKS))].format(r=rationale)
        if not name or name not in copy:
            return f"{copy}\n\n{mark}", "stop", "marked"
        copy = copy.replace(name, f"**{name}**", 1)
        if pick_index(pick, 4, 3) == 0:
            copy = f"{'#' * (1 + pick_index(pick, 5, 2))} {name}\n\n{copy}"
        return f"{copy}\n\n{mark}", "stop", "bold_name"
    if profile == "terse":
        if pick_index(pick, 6, 3) == 0:
            return copy, "stop", "no_rationale"
        short = rationale.split(":")[0].rstrip(".")
        return f"{copy}\n\nRationale: {short}.", "stop", "short_rationale"
    if profile == "chatty":
        preamble = PREAMBLES[pick_index(pick, 7, len(PREAMBLES))]
        quoted = pick_index(pick, 8, 2) == 0 and '"' not in copy
        body = f'"{copy}"' if quoted else copy
        return f"{preamble}\n\n{body}\n\nRationale: {rationale}", "stop", "preamble"
    if profile == "rambling":
        # Writes on and on, as a model with no length sense does: the rationale restated
        # forty times. Cut at max_tokens like any answer (finish_reason "length").
        return f"{copy}\n\nRationale: {' '.join([rationale] * 40)}", "stop", "rambling"
    if profile == "truncating" and pick_index(pick, 9, 4) == 0:
        # Cut mid-copy, as a model stopped by its token limit is: no rationale follows.
        return copy[: max(1, len(copy) // 2)], "length", "truncated"
    return content, "stop", "plain"


def request_pick(body: Any) -> int:
    """A number from a hash of the request's messages: the same request, the same pick."""
    messages = body.get("messages") if isinstance(body, dict) else None
    encoded = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str).encode()
    return int.from_bytes(hashlib.sha256(encoded).digest()[:8], "big")


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
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        messages = []  # the handler answers 400 first; this keeps the function total
    users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
    data = extract_data(message_text(users[-1].get("content"))) if users else None
    name = inline(mapping((data or {}).get("product")).get("name"), limit=300)
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
    recount_usage(payload)
    return shapes[0] if shapes else "plain"


def recount_usage(payload: dict[str, Any]) -> None:
    """completion_tokens (and total_tokens) for the content or refusal now in the choices."""
    usage = payload["usage"]
    usage["completion_tokens"] = sum(
        estimate_tokens(choice["message"]["content"] or choice["message"]["refusal"] or "")
        for choice in payload["choices"]
    )
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
