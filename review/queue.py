"""The review queue's reads: filters, keyset pages, near-duplicate groups, word diffs.

Nothing here writes; decisions go through review/services/. The pages that show
these are review/views/queue.py; the filters' form is review/forms.py's QueueFilters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from difflib import SequenceMatcher
from functools import reduce
from operator import or_
from urllib.parse import urlencode

from django.db import connection
from django.db.models import BooleanField, Count, Q, QuerySet
from django.db.models.expressions import RawSQL

from generation import languages
from generation.models import Variant

PAGE_SIZE = 20

# The checks generation/checks.py runs, in its order, with what a reviewer calls them.
CHECK_NAMES = {
    "length": "Length",
    "protected_terms": "Protected terms",
    "banned_phrases": "Banned phrases",
    "language": "Language",
    "personal_data": "Personal data",
    "placeholders": "Placeholders",
    "overreach": "Overreach (minority of the segment)",
    "input_injection": "Instructions in the input",
}

REJECT_REASONS = (
    "Off brand",
    "Factually wrong",
    "Wrong language",
    "Too long",
    "Targets a minority of the segment",
    "Other",
)

FILTER_FIELDS = (
    "status",
    "prompt",
    "product",
    "segment",
    "language",
    "check",
    "run",
    "underperforming",
)


# Language filter values beside a tag: the reviewer's own languages (their profile), and
# every language (for a reviewer with languages who wants the rest too).
MINE = "mine"
ALL = "all"
# Resolved from the reviewer's profile by reviewer_languages(); never in a URL.
_INTERNAL = ("mine_tags", "mine_default")


def querystring(values: dict, **overrides) -> str:
    """The filters as a query string, for links that keep them; None drops a key."""
    merged = {**values, **overrides}
    return urlencode(
        {k: v for k, v in merged.items() if v not in (None, "") and k not in _INTERNAL}
    )


def reviewer_languages(values: dict, mine: list[str]) -> dict:
    """The filters with the language resolved for a reviewer who reviews `mine`.

    No language asked: their languages, marked as the default (the view shows every
    language once none of theirs is left to review). "mine" asks for them outright,
    "all" for every language (kept, so that links and the form keep it). A reviewer
    without languages sees every language. A reviewer reviews whole languages: fr-CA
    takes fr and every regional fr, as a prompt writes base languages unless told.
    """
    language = values.get("language")
    if language == MINE and not mine:
        return {k: v for k, v in values.items() if k != "language"}
    if language == MINE or (language is None and mine):
        return {**values, "language": MINE, "mine_tags": tuple(mine), "mine_default": not language}
    return values


def every_language(values: dict) -> dict:
    """The filters with the reviewer's languages let go of ("all" in links)."""
    kept = {k: v for k, v in values.items() if k not in _INTERNAL}
    return {**kept, "language": ALL}


def _language_q(tag: str) -> Q:
    # A base language ("de") takes its regional tags too (de-ch); a regional tag only itself.
    if "-" in tag:
        return Q(language=tag)
    return Q(language=tag) | Q(language__startswith=f"{tag}-")


def _failed_check(name: str) -> Q:
    """Variants whose check `name` failed (checks is a list of {name, passed, message})."""
    if connection.features.supports_json_field_contains:
        return Q(checks__contains=[{"name": name, "passed": False}])
    # SQLite has no JSON containment: look through the list with json_each.
    # The table name is ours; the check name goes in as a parameter.
    table = Variant._meta.db_table
    return Q(
        RawSQL(
            f"EXISTS (SELECT 1 FROM json_each({table}.checks) AS c "
            "WHERE json_extract(c.value, '$.name') = %s AND json_extract(c.value, '$.passed') = 0)",
            [name],
            output_field=BooleanField(),
        )
    )


def variants_filtered(values: dict, *, status: bool = True) -> QuerySet[Variant]:
    """The variants the filters select; `status=False` leaves the status filter out."""
    qs = Variant.objects.all()
    if status and values.get("status"):
        qs = qs.filter(status=values["status"])
    if values.get("prompt"):
        qs = qs.filter(prompt__slug=values["prompt"])
    if values.get("product"):
        term = values["product"]
        qs = qs.filter(Q(product__sku__istartswith=term) | Q(product__name__icontains=term))
    if values.get("segment"):
        qs = qs.filter(segment__slug=values["segment"])
    language = values.get("language")
    if language == MINE:
        bases = dict.fromkeys(languages.base_language(t) for t in values.get("mine_tags") or ())
        if bases:
            qs = qs.filter(reduce(or_, (_language_q(base) for base in bases)))
    elif language and language != ALL:
        qs = qs.filter(_language_q(language))
    if values.get("check"):
        # checks_failed first: it excludes most rows before the JSON is looked at.
        qs = qs.filter(checks_failed__gt=0).filter(_failed_check(values["check"]))
    if values.get("run"):
        qs = qs.filter(run_id=values["run"])
    if values.get("underperforming"):
        qs = qs.filter(underperforming=True)
    return qs


def status_counts(values: dict) -> dict[str, int]:
    """How many variants of each status the other filters select: one GROUP BY."""
    rows = (
        variants_filtered(values, status=False)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    return dict(rows)


# --- keyset pagination ---------------------------------------------------------------
#
# The queue is ordered by (checks_failed desc, created, id), which the
# variant_queue_order index (status, -checks_failed, created, id) serves. A page is
# "the 20 rows after this key", not "rows 2000 to 2020": the database seeks to the key
# instead of counting past every earlier row (OFFSET), so the last page of 100,000
# variants costs what the first does, and the page count needs no COUNT(*) over the
# filtered table (the per-status GROUP BY gives the total shown). It also suits a
# queue that drains while people work: decided variants leave the filter, and an
# offset would then skip the rows that moved up; a key never does.
#
# The order mixes directions, so "after (cf, created, id)" is asked as two range
# scans of the index rather than one OR that no index can serve: the rest of the
# rows with the same checks_failed, then the rows with fewer.

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ORDER = ("-checks_failed", "created", "id")


@dataclass(frozen=True)
class Key:
    checks_failed: int
    created: datetime
    pk: int

    @classmethod
    def of(cls, variant: Variant) -> Key:
        return cls(variant.checks_failed, variant.created, variant.pk)

    @classmethod
    def parse(cls, text: str | None) -> Key | None:
        """Read a key from a URL ("2.1718000000000000.42"); None if it is not one."""
        match = re.fullmatch(r"(\d{1,4})\.(\d{1,20})\.(\d{1,20})", text or "")
        if not match:
            return None
        failed, micros, pk = (int(g) for g in match.groups())
        try:
            return cls(failed, EPOCH + timedelta(microseconds=micros), pk)
        except OverflowError:
            return None

    def __str__(self) -> str:
        micros = (self.created - EPOCH) // timedelta(microseconds=1)
        return f"{self.checks_failed}.{micros}.{self.pk}"


def _after(qs: QuerySet[Variant], key: Key, limit: int) -> list[Variant]:
    rows = list(
        qs.filter(checks_failed=key.checks_failed, created__gte=key.created)
        .exclude(created=key.created, pk__lte=key.pk)
        .order_by("created", "id")[:limit]
    )
    if len(rows) < limit:
        rows += qs.filter(checks_failed__lt=key.checks_failed).order_by(*ORDER)[: limit - len(rows)]
    return rows


def _before(qs: QuerySet[Variant], key: Key, limit: int) -> list[Variant]:
    """The `limit` rows before `key`, nearest first."""
    rows = list(
        qs.filter(checks_failed=key.checks_failed, created__lte=key.created)
        .exclude(created=key.created, pk__gte=key.pk)
        .order_by("-created", "-id")[:limit]
    )
    if len(rows) < limit:
        rows += qs.filter(checks_failed__gt=key.checks_failed).order_by(
            "checks_failed", "-created", "-id"
        )[: limit - len(rows)]
    return rows


@dataclass
class QueuePage:
    variants: list[Variant]
    next_key: Key | None = None
    previous_key: Key | None = None
    first: bool = True


def page_fetch(
    qs: QuerySet[Variant], *, after: Key | None = None, before: Key | None = None,
    size: int = PAGE_SIZE,
) -> QueuePage:  # fmt: skip
    """One page of the queue after or before a key (or the first page); 1–2 queries."""
    if before is not None:
        rows = _before(qs, before, size + 1)
        if len(rows) < size:  # back at the start, and rows have left: show the first page
            return page_fetch(qs, size=size)
        has_previous = len(rows) > size
        rows = rows[:size][::-1]
        return QueuePage(
            rows,
            next_key=Key.of(rows[-1]),
            previous_key=Key.of(rows[0]) if has_previous else None,
            first=not has_previous,
        )
    if after is not None:
        rows = _after(qs, after, size + 1)
    else:
        rows = list(qs.order_by(*ORDER)[: size + 1])
    has_next = len(rows) > size
    rows = rows[:size]
    return QueuePage(
        rows,
        next_key=Key.of(rows[-1]) if has_next else None,
        previous_key=Key.of(rows[0]) if after is not None and rows else None,
        first=after is None,
    )


def neighbours(qs: QuerySet[Variant], variant: Variant) -> tuple[Variant | None, Variant | None]:
    """The variants before and after `variant` in the queue's order (for j/k)."""
    key = Key.of(variant)
    previous = _before(qs, key, 1)
    following = _after(qs, key, 1)
    return (previous[0] if previous else None), (following[0] if following else None)


# --- near-duplicates -------------------------------------------------------------------

SHINGLE = 3
JACCARD_MIN = 0.85
RATIO_MIN = 0.9


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _shingles(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + SHINGLE]) for i in range(max(1, len(words) - SHINGLE + 1))}


def near_identical(a: str, b: str) -> bool:
    """Word-shingle Jaccard ≥ 0.85, or a difflib ratio on words ≥ 0.9 (short texts)."""
    wa, wb = _words(a), _words(b)
    sa, sb = _shingles(wa), _shingles(wb)
    if len(sa & sb) / len(sa | sb) >= JACCARD_MIN:
        return True
    matcher = SequenceMatcher(None, wa, wb, autojunk=False)
    return (
        matcher.real_quick_ratio() >= RATIO_MIN
        and matcher.quick_ratio() >= RATIO_MIN
        and matcher.ratio() >= RATIO_MIN
    )


@dataclass
class QueueEntry:
    """A variant, or a group of near-identical ones, as the queue shows it."""

    variants: list[Variant] = field(default_factory=list)

    @property
    def is_group(self) -> bool:
        return len(self.variants) > 1

    @property
    def first(self) -> Variant:
        return self.variants[0]


def queue_entries(variants: list[Variant]) -> list[QueueEntry]:
    """Group the page's near-identical variants in review of one product, prompt version
    and language (copy in two languages is never a duplicate).

    Only the page's variants are compared, and only within such a bucket, so
    the work is bounded by the page size (at most 190 pairs for 20 variants). A group
    takes the place of its first member; the others move up beside it.
    """
    parent = list(range(len(variants)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    buckets: dict[tuple, list[int]] = {}
    for i, v in enumerate(variants):
        if v.status == Variant.Status.IN_REVIEW:
            buckets.setdefault((v.product_id, v.prompt_version_id, v.language), []).append(i)
    for members in buckets.values():
        for n, i in enumerate(members):
            for j in members[n + 1 :]:
                if root(i) != root(j) and near_identical(variants[i].text, variants[j].text):
                    parent[root(j)] = root(i)

    entries: dict[int, QueueEntry] = {}
    for i, v in enumerate(variants):
        entries.setdefault(root(i), QueueEntry()).variants.append(v)
    return list(entries.values())


# --- word diff -----------------------------------------------------------------------


@dataclass(frozen=True)
class WordDiff:
    """Runs of text marked "same", "del" or "ins"; the template escapes every run."""

    left: list[tuple[str, str]]  # the old text: same and del
    right: list[tuple[str, str]]  # the new text: same and ins
    inline: list[tuple[str, str]]  # both in one: same, del, ins
    changed: bool


def _tokens(text: str) -> list[str]:
    """Words with the whitespace after them; leading whitespace is its own token."""
    tokens = re.findall(r"\S+\s*", text)
    lead = text[: len(text) - len(text.lstrip())]
    return [lead, *tokens] if lead else tokens


def _push(runs: list[tuple[str, str]], kind: str, text: str) -> None:
    """Add a run, merging it into the last one of the same kind.

    A marked run ends at its last word: the whitespace after it is plain text.
    """
    trailing = ""
    if kind != "same":
        core = text.rstrip()
        text, trailing = core, text[len(core) :]
    for kind_, text_ in ((kind, text), ("same", trailing)):
        if not text_:
            continue
        if runs and runs[-1][0] == kind_:
            runs[-1] = (kind_, runs[-1][1] + text_)
        else:
            runs.append((kind_, text_))


def word_diff(before: str, after: str) -> WordDiff:
    """Compare two texts word by word (difflib), keeping their whitespace."""
    a, b = _tokens(before or ""), _tokens(after or "")
    matcher = SequenceMatcher(None, [t.strip() for t in a], [t.strip() for t in b], autojunk=False)
    left: list[tuple[str, str]] = []
    right: list[tuple[str, str]] = []
    inline: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        old, new = "".join(a[i1:i2]), "".join(b[j1:j2])
        if op == "equal":
            _push(left, "same", old)
            _push(right, "same", new)
            _push(inline, "same", new)
            continue
        _push(left, "del", old)
        _push(right, "ins", new)
        if old:
            _push(inline, "del", old if not new else old.rstrip() + " ")
        _push(inline, "ins", new)
    changed = any(kind != "same" for kind, _ in inline)
    return WordDiff(left, right, inline, changed)


# --- what the focus view shows about a variant ---------------------------------------


def segment_summary(summary: dict, *, top: int = 3) -> list[dict]:
    """Each attribute's `top` most common values among the members, with their shares."""
    rows = []
    for attribute, shares in sorted((summary or {}).items()):
        if not isinstance(shares, dict):
            continue
        if attribute == "language":
            # Both ways: "de 33%" with its tags, "de-de 18%, de-ch 15%", beside it.
            bases = languages.base_shares({k: float(v or 0) for k, v in shares.items()})
            ordered = [(f"{b.base} ({b.detail})" if b.detail else b.base, b.share) for b in bases]
        else:
            ordered = sorted(shares.items(), key=lambda kv: -float(kv[1] or 0))
        rows.append(
            {
                "attribute": attribute,
                "values": [(value, round(float(share) * 100)) for value, share in ordered[:top]],
                "more": max(0, len(ordered) - top),
            }
        )
    return rows


def reject_reason(choice: str, detail: str) -> str:
    """The reason recorded: a listed reason and the reviewer's words after it.

    A reason not in the list (an older form, a script) is kept as free text; "Other"
    needs words; an empty one is left to variant_reject to refuse.
    """
    choice, detail = (choice or "").strip(), (detail or "").strip()
    if choice == "Other":
        return f"Other: {detail}" if detail else ""
    if choice and detail:
        return f"{choice}: {detail}"
    return choice or detail
