"""Segments: rules, members, summaries, and building them from attributes."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any, ClassVar

from django.db import transaction
from django.utils.text import slugify

from generation import (
    prompting,
)
from generation.errors import ServiceError
from generation.models import (
    Customer,
    Segment,
    SegmentRuleError,
    attribute_text,
    segment_rules_clean,
)

logger = logging.getLogger(__name__)


class SegmentError(ServiceError):
    """A segment that cannot be built, saved or previewed as asked; `field` names the
    request field (rules, name, slug, by)."""

    default_field: ClassVar[str | None] = "rules"


class SegmentInUse(SegmentError):
    """Copy was written for the segment: deleting it would lose review history."""

    status = 409
    default_field = None


# Each summarised attribute's values with their share of the members.
Summary = dict[str, dict[str, float]]


# Attributes with this many distinct values or more are identifiers or free text
# (e-mail addresses, names), not something a segment summary should describe.
SUMMARY_MAX_DISTINCT = 50
# Past this many distinct rule-attribute combinations, memberships are not memoised.
_MEMO_MAX = 100_000
# Customers SegmentTally counts at a time: their dicts are held until counted.
_TALLY_BATCH = 2_000


def _customer_attributes() -> Iterator[dict[str, Any]]:
    for language, attributes in Customer.objects.values_list("language", "attributes").iterator(
        chunk_size=5000
    ):
        yield {**attributes, "language": language}


def segments_refresh(
    *, segments: list[Segment] | None = None, tally: SegmentTally | None = None
) -> int:
    """Recompute every segment's member count and summary from the customers, and save
    those that changed. Returns the number of segments. `tally`: every customer already
    counted (an import that counted as it wrote), for its segments."""
    if tally is not None:
        segments, tallies = tally.segments, tally.results()
    else:
        segments = list(Segment.objects.all()) if segments is None else segments
        tallies = segment_tallies(segments)
    for segment, (members, summary) in zip(segments, tallies, strict=True):
        if (segment.member_count, segment.summary) != (members, summary):
            segment.member_count, segment.summary = members, summary
            segment.save(update_fields=["member_count", "summary", "updated"])
    return len(segments)


def segment_personal_refuse(attributes: Iterable[str], *, field: str = "rules") -> None:
    """SegmentError naming any personal attribute among `attributes`: a segment's rules
    and the name built from them reach the endpoint and the reviewers, so a segment is
    never made of personal attributes (by e-mail, by phone...)."""
    personal = prompting.personal_attributes()
    named = [a for a in attributes if a in personal]
    if named:
        verb = "is" if len(named) == 1 else "are"
        raise SegmentError(
            f"{', '.join(named)} {verb} personal: a segment's rules and name reach the "
            "endpoint and the reviewers, so segments are never made of personal attributes",
            field=field,
        )


def segment_preview(*, rules: object) -> tuple[int, Summary]:
    """How many customers rules would take in, and their summary; writes nothing.
    SegmentError names a bad rule."""
    try:
        rules = segment_rules_clean(rules)
    except SegmentRuleError as exc:
        raise SegmentError(str(exc), field="rules") from exc
    segment_personal_refuse(rules)
    [tally] = segment_tallies([Segment(rules=rules)])
    return tally


def segment_tallies(segments: list[Segment]) -> list[tuple[int, Summary]]:
    """(member count, summary) of each segment, from the customers (SegmentTally)."""
    tally = SegmentTally(segments)
    tally.add_many(_customer_attributes())
    return tally.results()


class SegmentTally:
    """Segments' member counts and summaries, counted one customer at a time: from the
    database (segment_tallies), or by an import as it reads its file.

    1. Each customer's set of matching segments, as a bit mask; each segment's answer
       is memoised by the customer's values of the attributes its rules name.
    2. Per mask, the count of each value of every attribute; an attribute that shows
       SUMMARY_MAX_DISTINCT distinct values is an identifier or free text, and is
       dropped from the counts. Memory is bounded by masks × attributes × values,
       not by customers.
    Then each segment gets its count and, for every counted attribute its rules do not
    name, the share of each value among its members. A segment without rules has none.
    """

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments
        # (rule attributes, segment, memo of its answer by their values and types)
        self.matchers: list[tuple[list[str], Segment, dict[tuple[Any, ...], bool]]] = [
            (sorted(s.rules), s, {}) for s in segments
        ]
        self.distinct: dict[str, set[str | None]] = defaultdict(set)
        # Personal attributes are never counted: a summary is shown to copywriters and
        # sent to the endpoint.
        self.personal = prompting.personal_attributes()
        self.dropped: set[str] = set()
        # Names already found not personal: asking `personal` parses the name each
        # time, which cost as much as the rest of the count at a million customers.
        self.countable: set[str] = set()
        # mask -> [members, {attribute: Counter of values}]
        self.per_mask: dict[int, list[Any]] = {}
        self._pending: list[dict[str, Any]] = []  # added, not counted yet (add)

    def add(self, attributes: dict[str, Any]) -> None:
        """Count one customer (their attributes and their language) with the next batch
        of _TALLY_BATCH; `results` counts what is left."""
        self._pending.append(attributes)
        if len(self._pending) >= _TALLY_BATCH:
            self._add_batch()

    def add_many(self, customers: Iterable[dict[str, Any]]) -> None:
        """Count customers (each their attributes and their language), a batch at a time.

        1. Each customer's mask, from the memo of each segment's answer. The memo's key
           is the values of the attributes the rules name, with their types: True and
           1 are equal keys of a dict, but a rule tells them apart.
        2. The batch's (attribute, value, type) triples counted per mask in one
           Counter, in C: counting attribute by attribute in Python cost as much as
           reading the file did (an import counts as it writes).
        3. The batch's counts merged into the tally as text values, where an attribute
           found personal or with too many distinct values is dropped.
        """
        for attributes in customers:
            self.add(attributes)

    def _add_batch(self) -> None:
        customers, self._pending = self._pending, []
        by_mask: dict[int, list[dict[str, Any]]] = {}
        for attributes in customers:
            mask = 0
            for bit, (names, segment, memo) in enumerate(self.matchers):
                values = tuple(map(attributes.get, names))
                key = (values, tuple(map(type, values)))
                hashable = True
                try:
                    hit = memo.get(key)
                except TypeError:  # a list or an object (set through the API)
                    hashable, hit = False, None
                if hit is None:
                    hit = bool(segment.rules) and segment.matches(attributes)
                    if hashable and len(memo) < _MEMO_MAX:
                        memo[key] = hit
                if hit:
                    mask |= 1 << bit
            if mask:
                found = by_mask.get(mask)
                if found is None:
                    by_mask[mask] = [attributes]
                else:
                    found.append(attributes)
        for mask, members in by_mask.items():
            try:
                counted = Counter(
                    chain.from_iterable(
                        zip(a.keys(), a.values(), map(type, a.values()), strict=True)
                        for a in members
                    )
                )
            except TypeError:  # an unhashable value: count the batch by its text
                counted = Counter(
                    (attribute, _summary_value(value), str)
                    for a in members
                    for attribute, value in a.items()
                )
            tally = self.per_mask.get(mask)
            if tally is None:
                tally = self.per_mask[mask] = [0, defaultdict(Counter)]
            tally[0] += len(members)
            for (attribute, value, _type), count in counted.items():
                self._count(tally[1], attribute, value, count)

    def _count(
        self, counts: dict[str, Counter[str | None]], attribute: str, value: Any, count: int
    ) -> None:
        """Add `count` members with this value to one mask's counts, unless the
        attribute is personal, has too many distinct values, or the value is empty."""
        if attribute in self.dropped or value is None or value == "":
            return
        if attribute not in self.countable:
            if attribute in self.personal:
                self.dropped.add(attribute)
                return
            self.countable.add(attribute)
        text = _summary_value(value)
        seen = self.distinct[attribute]
        if text not in seen:
            if len(seen) >= SUMMARY_MAX_DISTINCT - 1:
                self._drop(attribute)
                return
            seen.add(text)
        counts[attribute][text] += count

    def _drop(self, attribute: str) -> None:
        self.dropped.add(attribute)
        for _count, by_attribute in self.per_mask.values():
            by_attribute.pop(attribute, None)

    def results(self) -> list[tuple[int, Summary]]:
        """(member count, summary) of each segment, in the order they were given."""
        self._add_batch()
        # Found personal since counting began (an import's values): never summarised.
        personal = prompting.personal_attributes()
        for attribute in [a for a in self.countable if a in personal]:
            self._drop(attribute)
        tallies = []
        for bit, (_names, segment, _memo) in enumerate(self.matchers):
            members = 0
            merged: dict[str, Counter[str]] = defaultdict(Counter)
            for mask, (count, by_attribute) in self.per_mask.items():
                if mask >> bit & 1:
                    members += count
                    for attribute, counter in by_attribute.items():
                        merged[attribute].update(counter)
            summary = {
                attribute: {v: round(c / members, 4) for v, c in merged[attribute].most_common()}
                for attribute in sorted(merged)
                if attribute not in segment.rules
            }
            tallies.append((members, summary))
        return tallies


def _summary_value(value: object) -> str | None:
    return None if value is None or value == "" else attribute_text(value)


def segments_build(*, by: list[str]) -> list[Segment]:
    """Make one segment per combination of `by` values present among the customers.

    1. Find the combinations of `by` values (customers missing one are left out).
    2. Upsert a segment per combination by slug, with equality rules; segments built
       earlier on the same attributes whose combination no longer occurs stay, with
       0 members.
    3. Recompute every segment's members and summary.
    """
    by = [b.strip() for b in by if b.strip()]
    if not by:
        raise SegmentError(
            "Name at least one attribute to segment by (--by value_tier)", field="by"
        )
    segment_personal_refuse(by, field="by")
    combinations: set[tuple[str, ...]] = set()
    seen_attributes: set[str] = set()
    for attributes in _customer_attributes():
        seen_attributes.update(attributes)
        found = [_summary_value(attributes.get(b)) for b in by]
        present = [v for v in found if v is not None]
        if len(present) == len(found):
            combinations.add(tuple(present))
    unknown = [b for b in by if b not in seen_attributes]
    if unknown:
        raise SegmentError(
            f"No customer has the attribute(s) {', '.join(unknown)}. "
            "Known attributes: "
            + (", ".join(sorted(seen_attributes)) or "none (import customers first)"),
            field="by",
        )
    built = []
    with transaction.atomic():
        slugs = {slugify("-".join(values))[:200]: values for values in combinations}
        for existing in Segment.objects.filter(slug__in=slugs):
            if sorted(existing.rules) != sorted(by):
                raise SegmentError(
                    f"Segment '{existing.slug}' exists with rules on "
                    f"{', '.join(sorted(existing.rules))}; rename it or build by other attributes",
                    field="by",
                )
        for values in sorted(combinations):
            segment, _ = Segment.objects.update_or_create(
                slug=slugify("-".join(values))[:200],
                defaults={"name": " × ".join(values), "rules": dict(zip(by, values, strict=True))},
            )
            built.append(segment)
        segments_refresh()
    for segment in built:
        segment.refresh_from_db()
    return built


# /api/v1/segments/rebuild/ and /preview/ would shadow segments of these slugs.
RESERVED_SEGMENT_SLUGS = frozenset({"rebuild", "preview", "new", "generate"})


@transaction.atomic
def segment_save(
    *, slug: str = "", name: str, rules: object, segment: Segment | None = None
) -> Segment:
    """Create a segment from rules (or change one's name and rules), then count its
    members and summarise them. SegmentError names what is wrong."""
    try:
        rules = segment_rules_clean(rules)
    except SegmentRuleError as exc:
        raise SegmentError(str(exc), field="rules") from exc
    segment_personal_refuse(rules)
    name = name.strip()
    if not name:
        raise SegmentError("A segment needs a name", field="name")
    if segment is None:
        slug = slugify(slug or name)[:200]
        if not slug:
            raise SegmentError("A segment needs a name made of letters or digits", field="name")
        if slug in RESERVED_SEGMENT_SLUGS:
            raise SegmentError(f"'{slug}' is a reserved name; choose another", field="name")
        if Segment.objects.filter(slug=slug).exists():
            raise SegmentError(f"A segment '{slug}' already exists", field="slug")
        segment = Segment(slug=slug)
    segment.name, segment.rules = name, rules
    segment.save()
    segments_refresh(segments=[segment])
    return segment


@transaction.atomic
def segment_delete(*, segment: Segment) -> None:
    """Delete a segment that no copy was written for; one with variants keeps its
    history (and live copy), so it is refused."""
    written = segment.variants.count()
    if written:
        raise SegmentInUse(
            f"Segment '{segment.slug}' has {written} variant(s) written for it; it cannot be "
            "deleted without losing their review history"
        )
    segment.delete()
