"""Writes with side effects in the generation domain. Views, commands and tasks call these."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import openai
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.utils import timezone
from django.utils.text import slugify

from generation import (
    audience,
    capabilities,
    checks,
    engine,
    languages,
    llm,
    pricing,
    prompting,
    signals,
)
from generation.audience import CustomerRow, Reading, RowError
from generation.importers import ImportFileError, read_products
from generation.limiter import EndpointLimiter, endpoint_limiter
from generation.models import (
    Brand,
    Customer,
    CustomerSource,
    GenerationRun,
    PersonalAttribute,
    Product,
    Prompt,
    PromptVersion,
    Segment,
    SegmentRuleError,
    Variant,
    attribute_text,
    segment_rules_clean,
)

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
ANALYZE_AFTER = 10_000
# Slots a run queues when it is created; the rest are queued in the background, this
# many products a transaction (PostgreSQL: about 0.4 s for 20,000 slots).
QUEUE_NOW_SLOTS = 20_000
POPULATE_PRODUCTS = 1_000


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


def _upsert(model, key: str, rows: list[dict], fields: list[str]) -> ImportResult:
    """Create or update `rows` keyed by `key`, in the caller's transaction."""
    existing = {
        getattr(obj, key): obj
        for obj in model.objects.filter(**{f"{key}__in": [r[key] for r in rows]})
    }
    to_create, to_update, unchanged = [], [], 0
    for row in rows:
        obj = existing.get(row[key])
        if obj is None:
            to_create.append(model(**row))
        elif any(getattr(obj, f) != row[f] for f in fields):
            for f in fields:
                setattr(obj, f, row[f])
            to_update.append(obj)
        else:
            unchanged += 1
    model.objects.bulk_create(to_create, batch_size=BATCH_SIZE)
    model.objects.bulk_update(to_update, [*fields, "updated"], batch_size=BATCH_SIZE)
    return ImportResult(created=len(to_create), updated=len(to_update), unchanged=unchanged)


def products_import(*, path: Path, store_views: dict[str, str] | None = None) -> ImportResult:
    """1. Read and validate the whole file (raises ImportFileError, nothing written).
    2. Upsert by SKU in one transaction."""
    rows = read_products(path, store_views=store_views)
    fields = ["name", "category", "subcategory", "description", "attributes", "translations"]
    now = timezone.now()
    with transaction.atomic():
        result = _upsert(
            Product,
            "sku",
            [{"sku": r.sku, "updated": now, **{f: getattr(r, f) for f in fields}} for r in rows],
            fields,
        )
        # Bulk writes send no post_save: tell delivery the base copy changed.
        signals.live_copy_changed.send(sender=Product)
    return result


MAX_LISTED_ERRORS = 50
CUSTOMER_BATCH_SIZE = 2000


class CustomerRowsError(ImportFileError):
    """Bad rows in a customer file, when the import was asked to write none of them.

    ``line`` and ``column`` are the first bad row's; the message lists up to
    MAX_LISTED_ERRORS of them."""

    def __init__(self, path: Path | str, errors: list[RowError], *, more: bool) -> None:
        self.errors = errors
        self.more = more
        first = errors[0]
        listed = "\n".join(f"  {e}" for e in errors)
        tail = f"\n  ... reading stopped after {len(errors)} bad rows" if more else ""
        count = f"{len(errors)}{'+' if more else ''}"
        super().__init__(
            path,
            first.line,
            first.column,
            f"{count} bad row(s); nothing was imported (--skip-invalid imports the good "
            f"rows):\n{listed}{tail}",
        )


@dataclass(frozen=True)
class CustomerImportResult(ImportResult):
    rows: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)
    more_errors: bool = False
    segments: int = 0
    seconds: float = 0.0
    # attribute → why its values made it personal (it never reaches an endpoint)
    personal: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = super().__str__()
        if self.skipped:
            text += f", {self.skipped} bad row(s) skipped"
        if self.personal:
            found = "; ".join(f"{a} ({why})" for a, why in self.personal.items())
            text += f". Marked personal, never sent to an endpoint nor summarised: {found}"
        return text

    def as_json(self) -> dict:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "errors": [str(e) for e in self.errors],
            "segments": self.segments,
            "seconds": round(self.seconds, 2),
            "personal": self.personal,
        }


def _customers_upsert(batch: list[CustomerRow], now) -> tuple[int, int, int]:
    """Write one batch by external id: (created, updated, unchanged)."""
    existing = {
        external_id: (language, attributes)
        for external_id, language, attributes in Customer.objects.filter(
            external_id__in=[r.external_id for r in batch]
        ).values_list("external_id", "language", "attributes")
    }
    write = []
    created = unchanged = 0
    for row in batch:
        before = existing.get(row.external_id)
        if before is None:
            created += 1
        elif before == (row.language, row.attributes):
            unchanged += 1
            continue
        write.append(
            (
                row.external_id,
                row.language,
                json.dumps(row.attributes, ensure_ascii=False),
                now,
                now,
            )
        )
    if write:
        _upsert_customer_rows(write)
    return created, len(write) - created, unchanged


def _upsert_customer_rows(rows: list[tuple]) -> None:
    """One INSERT ... ON CONFLICT for new and changed rows alike, bypassing the ORM's
    per-value preparation (most of an import's time otherwise). SQLite and PostgreSQL
    share the syntax; PostgreSQL needs the JSON cast."""
    table = connection.ops.quote_name(Customer._meta.db_table)
    attributes = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    sql = (
        f"INSERT INTO {table} (external_id, language, attributes, created, updated) "
        f"VALUES (%s, %s, {attributes}, %s, %s) ON CONFLICT (external_id) DO UPDATE SET "
        "language = excluded.language, attributes = excluded.attributes, "
        "updated = excluded.updated"
    )
    field = Customer._meta.get_field("updated")
    stamp = field.get_db_prep_save(rows[0][3], connection)
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(*row[:3], stamp, stamp) for row in rows])


def customers_import(
    *,
    path: Path,
    source: CustomerSource | None = None,
    skip_invalid: bool = False,
    max_errors: int = MAX_LISTED_ERRORS,
    progress: Callable[[Reading], None] | None = None,
) -> CustomerImportResult:
    """Import a customer file, streamed, in bounded memory.

    1. Read the file through the source's column mapping (without a source, the file
       uses our column names), one record at a time.
    2. Upsert good rows by external id in batches, all in one transaction.
    3. A bad row: without `skip_invalid`, writing stops, reading goes on to list up to
       `max_errors` bad rows, and CustomerRowsError rolls everything back. With it,
       the bad rows are reported (up to `max_errors` listed) and the rest imported.
    4. Recompute every segment's members and summary, and record the import on the
       source.
    """
    started = time.monotonic()
    mapping = audience.Mapping.parse(source.mapping) if source is not None else None
    reading = audience.Reading()
    errors: list[RowError] = []
    more = False
    counts = [0, 0, 0]
    batch: list[CustomerRow] = []
    now = timezone.now()
    watch = checks.PersonalValues()

    def flush() -> None:
        for i, n in enumerate(_customers_upsert(batch, now)):
            counts[i] += n
        batch.clear()

    with transaction.atomic():
        for item in audience.read_customers(path, mapping=mapping, reading=reading):
            if isinstance(item, RowError):
                if len(errors) < max_errors:
                    errors.append(item)
                else:
                    more = True
                    if not skip_invalid:
                        break
                continue
            if errors and not skip_invalid:
                continue  # doomed: read on only to list the bad rows
            batch.append(item)
            watch.add(item.attributes)
            if len(batch) >= CUSTOMER_BATCH_SIZE:
                flush()
                if progress is not None:
                    progress(reading)
        if errors and not skip_invalid:
            raise CustomerRowsError(path, errors, more=more)
        if batch:
            flush()
        if progress is not None:
            reading.done = 1.0
            progress(reading)
        good = reading.rows - reading.bad
        if not good:
            raise ImportFileError(
                path,
                None,
                None,
                "the file has no customers" if not reading.rows else "no row could be imported",
            )
        # Before the summaries: they never hold a personal attribute.
        known = prompting.personal_attributes()
        personal = {name: why for name, why in watch.found().items() if name not in known}
        for name, why in personal.items():
            PersonalAttribute.objects.get_or_create(name=name, defaults={"reason": why})
        segments = segments_refresh()
        result = CustomerImportResult(
            created=counts[0],
            updated=counts[1],
            unchanged=counts[2],
            rows=reading.rows,
            skipped=reading.bad,
            errors=errors,
            more_errors=more,
            segments=segments,
            seconds=time.monotonic() - started,
            personal=personal,
        )
        if source is not None:
            # Counts only: the listed errors quote values, which may be personal.
            counts = {k: v for k, v in result.as_json().items() if k != "errors"}
            source.last_import = {"file": Path(path).name, "at": now.isoformat(), **counts}
            source.save(update_fields=["last_import", "updated"])
    return result


@transaction.atomic
def customer_source_save(*, slug: str, name: str = "", mapping: object) -> CustomerSource:
    """Create or replace a source's column mapping; MappingError names what is wrong."""
    parsed = audience.Mapping.parse(mapping)
    slug = slugify(slug)
    if not slug:
        raise audience.MappingError("A source needs a name made of letters or digits")
    source, _ = CustomerSource.objects.update_or_create(
        slug=slug, defaults={"name": name or slug, "mapping": parsed.as_json()}
    )
    return source


@transaction.atomic
def customer_erase(*, external_id: str) -> dict:
    """Erase a customer (GDPR art. 17): their row, their attributes and every
    one-to-one variant written for them, with those variants' review history and
    engagement. Engagement they caused on segment copy stays, without them.
    Returns what was removed; CustomerNotFound when there is no such customer."""
    customer = Customer.objects.select_for_update().filter(external_id=external_id).first()
    if customer is None:
        raise CustomerNotFound(f"No customer with external id '{external_id}'")
    variants = Variant.objects.filter(customer=customer)
    variant_count = variants.count()
    prompt_ids = set(variants.values_list("prompt_id", flat=True))
    products = set(variants.values_list("product_id", flat=True))
    attributes = customer.segment_attributes()
    customer.delete()  # cascades to the variants, their events and review history
    for product_id in products:
        for prompt_id in prompt_ids:
            signals.live_copy_changed.send(
                sender=Prompt, prompt_id=prompt_id, product_id=product_id
            )
    # Their segments lose a member now; summaries (shares) are recomputed with the
    # next import, as a full recount reads every customer.
    left = [s.pk for s in Segment.objects.exclude(rules={}) if s.matches(attributes)]
    Segment.objects.filter(pk__in=left, member_count__gt=0).update(
        member_count=F("member_count") - 1
    )
    logger.info("customer erased", extra={"variants": variant_count})
    return {"customer": 1, "variants": variant_count}


class CustomerNotFound(LookupError):
    pass


class SegmentError(ValueError):
    pass


# Attributes with this many distinct values or more are identifiers or free text
# (e-mail addresses, names), not something a segment summary should describe.
SUMMARY_MAX_DISTINCT = 50
# Past this many distinct rule-attribute combinations, memberships are not memoised.
_MEMO_MAX = 100_000


def _customer_attributes():
    for language, attributes in Customer.objects.values_list("language", "attributes").iterator(
        chunk_size=5000
    ):
        yield {**attributes, "language": language}


def segments_refresh(*, segments: list[Segment] | None = None) -> int:
    """Recompute every segment's member count and summary from the customers, and save
    those that changed. Returns the number of segments."""
    segments = list(Segment.objects.all()) if segments is None else segments
    for segment, (members, summary) in zip(segments, segment_tallies(segments), strict=True):
        if (segment.member_count, segment.summary) != (members, summary):
            segment.member_count, segment.summary = members, summary
            segment.save(update_fields=["member_count", "summary", "updated"])
    return len(segments)


def segment_personal_refuse(attributes) -> None:
    """SegmentError naming any personal attribute among `attributes`: a segment's rules
    and the name built from them reach the endpoint and the reviewers, so a segment is
    never made of personal attributes (by e-mail, by phone...)."""
    personal = prompting.personal_attributes()
    named = [a for a in attributes if a in personal]
    if named:
        verb = "is" if len(named) == 1 else "are"
        raise SegmentError(
            f"{', '.join(named)} {verb} personal: a segment's rules and name reach the "
            "endpoint and the reviewers, so segments are never made of personal attributes"
        )


def segment_preview(*, rules: object) -> tuple[int, dict]:
    """How many customers rules would take in, and their summary; writes nothing.
    SegmentError names a bad rule."""
    try:
        rules = segment_rules_clean(rules)
    except SegmentRuleError as exc:
        raise SegmentError(str(exc)) from exc
    segment_personal_refuse(rules)
    [tally] = segment_tallies([Segment(rules=rules)])
    return tally


def segment_tallies(segments: list[Segment]) -> list[tuple[int, dict]]:
    """(member count, summary) of each segment, from the customers.

    One pass over the customers:
    1. each customer's set of matching segments, as a bit mask; each segment's answer
       is memoised by the customer's values of the attributes its rules name;
    2. per mask, the count of each value of every attribute; an attribute that shows
       SUMMARY_MAX_DISTINCT distinct values is an identifier or free text, and is
       dropped from the counts. Memory is bounded by masks × attributes × values,
       not by customers.
    Then each segment gets its count and, for every counted attribute its rules do not
    name, the share of each value among its members. A segment without rules has none.
    """
    if not segments:
        return []
    matchers = [(sorted(s.rules), s, {}) for s in segments]
    distinct: dict[str, set] = defaultdict(set)
    # Personal attributes are never counted: a summary is shown to copywriters and sent
    # to the endpoint.
    personal = prompting.personal_attributes()
    dropped: set[str] = set()
    per_mask: dict[int, list] = {}
    for attributes in _customer_attributes():
        mask = 0
        for bit, (names, segment, memo) in enumerate(matchers):
            key = tuple(_summary_value(attributes.get(a)) for a in names)
            hit = memo.get(key)
            if hit is None:
                hit = bool(segment.rules) and segment.matches(attributes)
                if len(memo) < _MEMO_MAX:
                    memo[key] = hit
            if hit:
                mask |= 1 << bit
        if not mask:
            continue
        tally = per_mask.get(mask)
        if tally is None:
            tally = per_mask[mask] = [0, defaultdict(Counter)]
        tally[0] += 1
        counts = tally[1]
        for attribute, value in attributes.items():
            if attribute in dropped or value is None or value == "":
                continue
            if attribute in personal:
                dropped.add(attribute)
                continue
            value = _summary_value(value)
            seen = distinct[attribute]
            if value not in seen:
                if len(seen) >= SUMMARY_MAX_DISTINCT - 1:
                    dropped.add(attribute)
                    for _count, by_attribute in per_mask.values():
                        by_attribute.pop(attribute, None)
                    continue
                seen.add(value)
            counts[attribute][value] += 1

    tallies = []
    for bit, (_names, segment, _memo) in enumerate(matchers):
        members = 0
        counts: dict[str, Counter] = defaultdict(Counter)
        for mask, (count, by_attribute) in per_mask.items():
            if mask >> bit & 1:
                members += count
                for attribute, counter in by_attribute.items():
                    counts[attribute].update(counter)
        summary = {
            attribute: {v: round(c / members, 4) for v, c in counts[attribute].most_common()}
            for attribute in sorted(counts)
            if attribute not in segment.rules
        }
        tallies.append((members, summary))
    return tallies


def _summary_value(value) -> str | None:
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
        raise SegmentError("Name at least one attribute to segment by (--by value_tier)")
    segment_personal_refuse(by)
    combinations: set[tuple] = set()
    seen_attributes: set[str] = set()
    for attributes in _customer_attributes():
        seen_attributes.update(attributes)
        values = tuple(_summary_value(attributes.get(b)) for b in by)
        if None not in values:
            combinations.add(values)
    unknown = [b for b in by if b not in seen_attributes]
    if unknown:
        raise SegmentError(
            f"No customer has the attribute(s) {', '.join(unknown)}. "
            "Known attributes: "
            + (", ".join(sorted(seen_attributes)) or "none (import customers first)")
        )
    built = []
    with transaction.atomic():
        slugs = {slugify("-".join(values))[:200]: values for values in combinations}
        for existing in Segment.objects.filter(slug__in=slugs):
            if sorted(existing.rules) != sorted(by):
                raise SegmentError(
                    f"Segment '{existing.slug}' exists with rules on "
                    f"{', '.join(sorted(existing.rules))}; rename it or build by other attributes"
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
        raise SegmentError(str(exc)) from exc
    segment_personal_refuse(rules)
    name = name.strip()
    if not name:
        raise SegmentError("A segment needs a name")
    if segment is None:
        slug = slugify(slug or name)[:200]
        if not slug:
            raise SegmentError("A segment needs a name made of letters or digits")
        if slug in RESERVED_SEGMENT_SLUGS:
            raise SegmentError(f"'{slug}' is a reserved name; choose another")
        if Segment.objects.filter(slug=slug).exists():
            raise SegmentError(f"A segment '{slug}' already exists")
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
        raise SegmentError(
            f"Segment '{segment.slug}' has {written} variant(s) written for it; it cannot be "
            "deleted without losing their review history"
        )
    segment.delete()


EXAMPLES_MAX = 5
EXAMPLE_MAX_CHARS = 2000


def prompt_examples(*, prompt: Prompt, examples: list[str] | None) -> list[str]:
    """The examples a new version of `prompt` gets: the current version's when None,
    else these, stripped, without blanks or repeats. Raise PromptTemplateError when
    there are too many or one is too long (every slot's prompt carries them)."""
    if examples is None:
        current = prompt.current_version
        return list(current.examples) if current is not None else []
    cleaned = list(dict.fromkeys(e.strip() for e in examples if e and e.strip()))
    if len(cleaned) > EXAMPLES_MAX:
        raise prompting.PromptTemplateError(
            f"Choose at most {EXAMPLES_MAX} examples, not {len(cleaned)}"
        )
    for number, example in enumerate(cleaned, start=1):
        if len(example) > EXAMPLE_MAX_CHARS:
            raise prompting.PromptTemplateError(
                f"Example {number} is {len(example)} characters; at most {EXAMPLE_MAX_CHARS}"
            )
    return cleaned


@transaction.atomic
def prompt_version_create(
    *,
    prompt: Prompt,
    template: str,
    model: str,
    temperature: float = 0.7,
    author=None,
    note: str = "",
    regenerate: bool = True,
    examples: list[str] | None = None,
) -> PromptVersion:
    """Save a prompt's next version and, by default, regenerate its slots.

    1. Validate the template's placeholders (an unknown one is an error naming it) and
       the examples (approved copy shown to the model for its tone; None carries over
       the current version's).
    2. Save the version with the next number.
    3. If the prompt already has variants: the older versions' variants still in
       review (or queued) become superseded, published ones stay live until their
       replacement is approved, and a run of the new version over the same slots
       starts after commit.
    """
    prompting.template_placeholders(template)
    if not 0 <= temperature <= 2:
        raise prompting.PromptTemplateError(f"Temperature {temperature} is outside 0–2")
    Prompt.objects.select_for_update().get(pk=prompt.pk)  # serialise version numbers
    examples = prompt_examples(prompt=prompt, examples=examples)
    last = prompt.versions.order_by("-number").values_list("number", flat=True).first()
    version = PromptVersion.objects.create(
        prompt=prompt,
        number=(last or 0) + 1,
        template=template,
        model=model,
        temperature=temperature,
        author=author,
        note=note,
        examples=examples,
    )
    if regenerate and last is not None:
        prompt_regenerate(prompt=prompt, user=author)
    return version


class RunError(ValueError):
    pass


@dataclass(frozen=True)
class RunEstimate:
    slots: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal | None
    # The languages written in, with the slots of each (a segment slot per language).
    languages: tuple[tuple[str, int], ...] = ()

    def __str__(self) -> str:
        cost = f"${self.cost:,.4f}" if self.cost is not None else "unknown cost (no price)"
        return (
            f"{self.slots:,} slots{self.languages_text}, about {self.prompt_tokens:,} prompt + "
            f"{self.completion_tokens:,} completion tokens, {cost}"
        )

    @property
    def languages_text(self) -> str:
        """' in 3 languages (en 1,000, de 600, fr 400)'; empty for one language."""
        if len(self.languages) < 2:
            return f" in {self.languages[0][0]}" if self.languages else ""
        listed = ", ".join(f"{tag} {n:,}" for tag, n in self.languages[:12])
        more = f", +{len(self.languages) - 12} more" if len(self.languages) > 12 else ""
        return f" in {len(self.languages)} languages ({listed}{more})"


ESTIMATE_SAMPLES = 12


def run_estimate(
    *,
    version: PromptVersion,
    products: list[Product],
    audiences: list[tuple[Segment, str]],
    slots: int,
    per_language: Counter | None = None,
) -> RunEstimate:
    """Estimate a run's tokens and cost by rendering a sample of its slots; `audiences`
    are its (segment, language) pairs (segment_slots), `per_language` the slots still
    to write in each language (by default every product's)."""
    if per_language is None:
        per_language = Counter()
        for _segment, language in audiences:
            per_language[language] += len(products)
    # Most slots first; ties in the order the prompt lists them (a stable sort).
    languages = tuple(sorted(per_language.items(), key=lambda t: -t[1]))
    if not slots:
        return RunEstimate(0, 0, 0, Decimal(0), languages)
    prompt = version.prompt
    count = len(products) * len(audiences)
    step = max(1, count // ESTIMATE_SAMPLES)
    picks = range(0, count, step)[:ESTIMATE_SAMPLES]
    per_slot = sum(
        pricing.estimate_tokens(m["content"])
        for product, (segment, language) in (
            (products[i // len(audiences)], audiences[i % len(audiences)]) for i in picks
        )
        for m in prompting.render(
            version=version,
            prompt=prompt,
            brand=prompt.brand,
            product=product,
            segment=segment,
            language=language,
        ).messages
    ) / len(picks)
    prompt_tokens = round(per_slot * slots)
    completion_tokens = pricing.estimate_completion_tokens(prompt.max_length) * slots
    return RunEstimate(
        slots,
        prompt_tokens,
        completion_tokens,
        pricing.cost(
            model=version.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        ),
        languages,
    )


CAPABILITY_MAX_AGE = timedelta(days=1)


def endpoint_check(*, model: str) -> None:
    """Ask the endpoint whether our key and the model are good, before queueing anything,
    and (LLM_STRUCTURED_OUTPUT=auto) whether it gives structured output.

    Raise RunError naming the problem: unreachable endpoint, refused key, unknown model.
    Endpoints that do not list models are given the benefit of the doubt. What the
    structured-output probe finds is remembered for a day (EndpointCapability).
    """
    _endpoint_models_check(model=model)
    if settings.LLM_STRUCTURED_OUTPUT != "auto":
        return
    known = capabilities.known(model)
    fresh = known is not None and known.checked > timezone.now() - CAPABILITY_MAX_AGE
    if fresh and known.structured_output is not None:
        return
    try:
        capabilities.probe(model=model)
    except llm.EndpointConfigError as exc:
        raise RunError(f"The LLM endpoint at {settings.LLM_BASE_URL} refused: {exc}") from exc


def _endpoint_models_check(*, model: str) -> None:
    client = llm.client()
    try:
        client.models.retrieve(model)
        return
    except openai.AuthenticationError as exc:
        raise RunError(
            f"The LLM endpoint at {settings.LLM_BASE_URL} refused the API key (HTTP 401): "
            f"{exc.message}. Check LLM_API_KEY."
        ) from exc
    except openai.NotFoundError:
        pass
    except openai.APIConnectionError as exc:
        raise RunError(f"Cannot reach the LLM endpoint at {settings.LLM_BASE_URL}: {exc}") from exc
    except openai.APIStatusError:
        return  # the endpoint does not serve /models/{id}; the run will tell
    try:
        offered = [m.id for m in client.models.list()]
    except openai.APIError:
        return
    if model not in offered:
        raise RunError(
            f"The LLM endpoint at {settings.LLM_BASE_URL} has no model '{model}'. "
            f"It offers: {', '.join(offered[:20]) or 'none'}."
        )


def segment_slots(prompt: Prompt, segments: list[Segment]) -> list[tuple[Segment, str]]:
    """(segment, language) for each language the prompt writes in for each segment:
    with every product, the run's slots."""
    return [(s, language) for s in segments for language in prompt.segment_languages(s)]


def _written_slots(version: PromptVersion) -> set[tuple[int, int, str]]:
    """(product id, segment id, language) of every segment slot this version wrote."""
    return set(
        Variant.objects.filter(prompt_version=version, segment__isnull=False).values_list(
            "product_id", "segment_id", "language"
        )
    )


def queued_slots(version: PromptVersion, products: list[Product], segments: list[Segment]):
    """(product, segment, language) of products × segments × languages this version has
    written no variant for yet."""
    done = _written_slots(version)
    audiences = segment_slots(version.prompt, segments)
    return [
        (p, s, language)
        for p in products
        for s, language in audiences
        if (p.pk, s.pk, language) not in done
    ]


def run_create(
    *,
    prompt: Prompt,
    products: list[Product] | None = None,
    segments: list[Segment] | None = None,
    user=None,
    budget: Decimal | None = None,
    note: str = "",
    check_endpoint: bool = True,
    only_slots: set[tuple[int, int, str]] | None = None,
) -> GenerationRun:
    """Create a run of the prompt's current version over products × segments × the
    languages it writes in for each segment (or, with `only_slots`, just those
    (product id, segment id, language) among them).

    1. Refuse a prompt with no version, an empty scope, a budget for a model with no
       price, and an endpoint that refuses the key or the model, naming which.
    2. Create one queued variant per slot this version has not written yet (the
       unique constraint per version and slot makes a second run skip them), with
       the run's estimated tokens and cost.
    3. After commit, hand the run to Celery.
    """
    version = prompt.current_version
    if version is None:
        raise RunError(f"Prompt '{prompt.slug}' has no version yet; save one first")
    products = list(Product.objects.all()) if products is None else products
    segments = list(Segment.objects.filter(member_count__gt=0)) if segments is None else segments
    if not products:
        raise RunError("The run covers no products; import products first")
    if not segments:
        raise RunError("The run covers no segments; build segments first")
    if budget is not None:
        if budget <= 0:
            raise RunError("The budget must be more than $0")
        try:
            pricing.price_for(version.model)
        except pricing.UnknownPrice as exc:
            raise RunError(f"A budget needs a price: {exc}") from exc
    if check_endpoint:
        endpoint_check(model=version.model)

    mode, mode_reason = capabilities.output_mode(version.model)
    audiences = segment_slots(prompt, segments)
    languages_by_segment: dict[str, list[str]] = {}
    for segment, language in audiences:
        languages_by_segment.setdefault(segment.slug, []).append(language)
    with transaction.atomic():
        run = GenerationRun.objects.create(
            prompt_version=version,
            scope={
                "products": [p.sku for p in products],
                "segments": [s.slug for s in segments],
                "languages": languages_by_segment,
            },
            created_by=user,
            budget=budget,
            note=note,
            output_mode=mode,
            output_mode_reason=mode_reason[:300],
        )
        if only_slots is None:
            total = _unwritten_slots(version, products, audiences)
            # The first slots now, so the run starts at once; a big run queues the
            # rest in the background (run_populate) while its first slots are written.
            first = max(1, QUEUE_NOW_SLOTS // len(audiences))
            queued = _insert_slots(run, version, products[:first], audiences) if total else 0
            run.queued_products = min(first, len(products))
            if run.queued_products == len(products):
                total = queued  # all of it is queued: the exact count
            run.unqueued = total - queued
        else:
            slots = _chosen_slots(version, products, segments, only_slots)
            Variant.objects.bulk_create(
                Variant(
                    run=run,
                    prompt=prompt,
                    prompt_version=version,
                    product=product,
                    segment=segment,
                    language=language,
                    model=version.model,
                )
                for product, segment, language in slots
            )
            total = len(slots)
            run.queued_products = len(products)
        estimate = run_estimate(
            version=version, products=products, audiences=audiences, slots=total
        )
        run.total = total
        run.estimated_prompt_tokens = estimate.prompt_tokens
        run.estimated_completion_tokens = estimate.completion_tokens
        run.estimated_cost = estimate.cost
        fields = ["total", "unqueued", "queued_products", "estimated_prompt_tokens"]
        run.save(update_fields=[*fields, "estimated_completion_tokens", "estimated_cost"])
        if run.total > ANALYZE_AFTER and connection.vendor == "postgresql":
            # Fresh statistics, so the claim query uses the partial index at once
            # even where autovacuum is off or behind.
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {Variant._meta.db_table}")
        if run.total == 0:
            run.status = GenerationRun.Status.FINISHED
            run.finished = timezone.now()
            run.save(update_fields=["status", "finished"])
        else:
            _dispatch_on_commit(run)
    return run


def _chosen_slots(
    version: PromptVersion,
    products: list[Product],
    segments: list[Segment],
    chosen: set[tuple[int, int, str]],
) -> list[tuple[Product, Segment, str]]:
    """The chosen (product id, segment id, language) slots among products × segments
    that this version has not written yet, product by product. A slot of a variant
    made before slots had a language ("") takes the segment's main language."""
    done = _written_slots(version)
    order = {p.pk: i for i, p in enumerate(products)}
    by_product = {p.pk: p for p in products}
    by_segment = {s.pk: s for s in segments}
    slots = set()
    for product_id, segment_id, language in chosen:
        if product_id not in by_product or segment_id not in by_segment:
            continue
        segment = by_segment[segment_id]
        language = language or prompting.segment_language(segment)
        if (product_id, segment_id, language) not in done:
            slots.add((product_id, segment_id, language))
    return [
        (by_product[p], by_segment[s], language)
        for p, s, language in sorted(slots, key=lambda t: (order[t[0]], t[1], t[2]))
    ]


def _unwritten_slots(
    version: PromptVersion, products: list[Product], audiences: list[tuple[Segment, str]]
) -> int:
    """How many of products × (segment, language) this version has no variant for yet."""
    wanted = {(s.pk, language) for s, language in audiences}
    written = (
        Variant.objects.filter(
            prompt_version=version,
            product_id__in=[p.pk for p in products],
            segment_id__in={s for s, _language in wanted},
        )
        .values_list("segment_id", "language")
        .annotate(n=Count("id"))
    )
    done = sum(n for segment_id, language, n in written if (segment_id, language) in wanted)
    return len(products) * len(audiences) - done


def run_populate(*, run_id: int) -> int:
    """Queue the rest of a run's slots, a chunk of products at a time; return how many.

    Each chunk is one transaction that inserts the slots and moves the run's
    `unqueued` and `queued_products` with them, so a worker that dies mid-way leaves a
    run that the next call (a resume, beat's revive) continues where it stopped.
    A run that is no longer running or pending stops being populated; a resume goes on.
    """
    added = 0
    while True:
        with transaction.atomic():
            run = (
                GenerationRun.objects.select_for_update()
                .select_related("prompt_version__prompt")
                .filter(pk=run_id)
                .first()
            )
            if run is None or not run.is_active or not run.is_populating:
                return added
            version = run.prompt_version
            skus = run.scope.get("products", [])
            chunk = skus[run.queued_products : run.queued_products + POPULATE_PRODUCTS]
            by_sku = Product.objects.in_bulk(chunk, field_name="sku")
            by_slug = Segment.objects.in_bulk(run.scope.get("segments", []), field_name="slug")
            products = [by_sku[sku] for sku in chunk if sku in by_sku]
            segments = [by_slug[slug] for slug in run.scope.get("segments", []) if slug in by_slug]
            audiences = _run_audiences(run, segments)
            inserted = _insert_slots(run, version, products, audiences) if chunk else 0
            run.unqueued = max(0, run.unqueued - inserted)
            run.queued_products += len(chunk)
            if not chunk or run.queued_products >= len(skus):
                # Done: products deleted meanwhile take their slots with them.
                run.total -= run.unqueued
                run.unqueued = 0
            run.save(update_fields=["unqueued", "queued_products", "total"])
            added += inserted
        if not run.unqueued:
            if added > ANALYZE_AFTER and connection.vendor == "postgresql":
                # The statistics taken at creation saw only the first slots, all queued:
                # without fresh ones the claim query scans the primary key instead of
                # the partial index of queued variants (0.2 s a claim at 140,000 slots).
                with connection.cursor() as cursor:
                    cursor.execute(f"ANALYZE {Variant._meta.db_table}")
            engine.finish_if_done(run_id)
            return added


def _run_audiences(run: GenerationRun, segments: list[Segment]) -> list[tuple[Segment, str]]:
    """The run's (segment, language) pairs as fixed when it was created (scope
    "languages"), so populating later is not changed by a recount; a run made before
    languages were kept takes them from the prompt now."""
    fixed = run.scope.get("languages")
    if not isinstance(fixed, dict):
        return segment_slots(run.prompt_version.prompt, segments)
    return [(s, language) for s in segments for language in fixed.get(s.slug, [])]


def _insert_slots(
    run: GenerationRun,
    version: PromptVersion,
    products: list[Product],
    audiences: list[tuple[Segment, str]],
) -> int:
    """Queue a variant for every slot of products × (segment, language) this version
    has not written yet, in one INSERT … SELECT; return how many.

    The rows are numbered product by product, in the order given: tasks claim in id
    order, so consecutive calls share a product, and with it the prompt's cacheable
    prefix (see generation.prompting). The ORM's bulk_create sent 140,000 rows
    through Python in 28 s; this sends two lists of ids.
    """
    template = Variant(run=run, prompt=version.prompt, prompt_version=version, model=version.model)
    slot_columns = ("product_id", "segment_id", "language")
    fields = [
        f
        for f in Variant._meta.concrete_fields
        if not f.primary_key and f.attname not in slot_columns
    ]
    values = [f.get_db_prep_save(f.pre_save(template, add=True), connection) for f in fields]
    table = connection.ops.quote_name(Variant._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    segment_ids = [s.pk for s, _language in audiences]
    tags = [language for _s, language in audiences]
    if connection.vendor == "postgresql":
        constants = ", ".join(f"CAST(%s AS {f.db_type(connection)})" for f in fields)
        # The two audience arrays unnest side by side: row n is (segment n, language n).
        sources = (
            "unnest(%s::bigint[]) WITH ORDINALITY AS p(id, n) "
            "CROSS JOIN unnest(%s::bigint[], %s::text[]) WITH ORDINALITY AS s(id, lang, n)"
        )
        params = [[p.pk for p in products], segment_ids, tags]
        p_id, s_id, s_lang = "p.id", "s.id", "s.lang"
        order = "p.n, s.n"
    else:
        constants = ", ".join(["%s"] * len(fields))
        sources = "json_each(%s) AS p CROSS JOIN json_each(%s) AS s"
        pairs = list(zip(segment_ids, tags, strict=True))
        params = [json.dumps([p.pk for p in products]), json.dumps(pairs)]
        p_id = "p.value"
        s_id, s_lang = "json_extract(s.value, '$[0]')", "json_extract(s.value, '$[1]')"
        order = "p.key, s.key"
    sql = (
        f"INSERT INTO {table} ({columns}, product_id, segment_id, language) "
        f"SELECT {constants}, {p_id}, {s_id}, {s_lang} FROM {sources} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} AS v WHERE v.prompt_version_id = %s "
        f"AND v.product_id = {p_id} AND v.segment_id = {s_id} AND v.language = {s_lang}) "
        f"ORDER BY {order}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, *params, version.pk])
        return cursor.rowcount


def _dispatch_on_commit(run: GenerationRun) -> None:
    from generation.tasks import run_start

    transaction.on_commit(lambda: run_start.delay(run.pk))


def run_dispatch(*, run_id: int) -> int:
    """Mark a pending run running; return how many drain tasks to start (0: none)."""
    GenerationRun.objects.filter(pk=run_id, status=GenerationRun.Status.PENDING).update(
        status=GenerationRun.Status.RUNNING, started=timezone.now()
    )
    run = GenerationRun.objects.filter(pk=run_id).first()
    if run is None or run.status != GenerationRun.Status.RUNNING:
        logger.info("run %s is gone or not running; nothing to start", run_id)
        return 0
    engine.finish_if_done(run_id)
    return settings.GENERATION_TASKS_PER_RUN


def runs_revive_stuck(*, idle_seconds: float | None = None) -> list[int]:
    """Start drain tasks again for running runs that still have work but have made no
    progress for `idle_seconds` (default GENERATION_LEASE_SECONDS): their tasks were
    lost (a broker restarted without persistence, a purged queue). Safe to run twice:
    drains claim variants by conditional UPDATE, and take over claims whose lease ran
    out. Returns the ids of the runs revived. Celery beat runs it every few minutes."""
    from generation.tasks import run_drain, run_populate

    idle = settings.GENERATION_LEASE_SECONDS if idle_seconds is None else idle_seconds
    cutoff = timezone.now() - timezone.timedelta(seconds=idle)
    moving = Variant.objects.filter(run=OuterRef("pk"), updated__gte=cutoff)
    left = Variant.objects.filter(
        run=OuterRef("pk"), status__in=[Variant.Status.QUEUED, Variant.Status.GENERATING]
    )
    stuck = list(
        GenerationRun.objects.filter(status=GenerationRun.Status.RUNNING, started__lt=cutoff)
        .filter(Exists(left) | Q(unqueued__gt=0))
        .exclude(Exists(moving))
        .values_list("pk", flat=True)
    )
    for run_id in stuck:
        run_populate.delay(run_id)
        logger.warning(
            "run %s made no progress for %.0f s; starting its drain tasks again",
            run_id,
            idle,
            extra={"run_id": run_id},
        )
        for _ in range(settings.GENERATION_TASKS_PER_RUN):
            run_drain.delay(run_id)
    return stuck


@transaction.atomic
def run_cancel(*, run: GenerationRun) -> GenerationRun:
    """Stop a run: queued variants stay queued (for a resume); calls in flight finish."""
    updated = GenerationRun.objects.filter(
        pk=run.pk,
        status__in=[
            GenerationRun.Status.PENDING,
            GenerationRun.Status.RUNNING,
            GenerationRun.Status.PAUSED,
        ],
    ).update(status=GenerationRun.Status.CANCELLED, error="Cancelled")
    run.refresh_from_db()
    if not updated:
        raise RunError(f"Run {run.pk} is {run.get_status_display().lower()}; nothing to cancel")
    return run


@transaction.atomic
def run_resume(*, run: GenerationRun, budget: Decimal | None = None) -> GenerationRun:
    """Continue a cancelled, paused or failed run from where it stopped."""
    run = GenerationRun.objects.select_for_update().get(pk=run.pk)
    if run.is_active or run.status == GenerationRun.Status.FINISHED:
        raise RunError(f"Run {run.pk} is {run.get_status_display().lower()}; nothing to resume")
    if budget is not None:
        run.budget = budget
    if run.budget is not None and run.cost >= run.budget:
        raise RunError(
            f"Run {run.pk} has spent ${run.cost:.4f} of its ${run.budget:.4f} budget; "
            "raise the budget to resume"
        )
    if run.status == GenerationRun.Status.FAILED:
        endpoint_check(model=run.prompt_version.model)
    run.status = GenerationRun.Status.PENDING
    run.error = ""
    run.save(update_fields=["status", "error", "budget"])
    _dispatch_on_commit(run)
    return run


@transaction.atomic
def run_retry_failed(*, run: GenerationRun) -> int:
    """Queue a run's failed variants again; the run's counts move with them."""
    run = GenerationRun.objects.select_for_update().get(pk=run.pk)
    retried = Variant.objects.filter(run=run, status=Variant.Status.FAILED).update(
        status=Variant.Status.QUEUED, error="", claim="", claimed_at=None
    )
    if not retried:
        return 0
    run.failed -= retried
    run.finished = None
    run.error = ""
    if not run.is_active:
        run.status = GenerationRun.Status.PENDING
    run.save(update_fields=["failed", "finished", "error", "status"])
    _dispatch_on_commit(run)
    return retried


@transaction.atomic
def variant_retry(*, variant: Variant) -> Variant:
    """Queue one failed variant again (on its own, outside any run drain)."""
    variant = Variant.objects.select_for_update().get(pk=variant.pk)
    if variant.status != Variant.Status.FAILED:
        raise RunError(
            f"Variant {variant.pk} is {variant.get_status_display().lower()}, not failed"
        )
    if variant.run_id:
        GenerationRun.objects.filter(pk=variant.run_id).update(failed=F("failed") - 1)
    return _requeue_alone(variant, note=variant.regeneration_note)


def _requeue_alone(variant: Variant, *, note: str) -> Variant:
    """Queue a variant for generation on its own; it leaves its run's counts."""
    from generation.tasks import generate_variants

    variant.status = Variant.Status.QUEUED
    variant.regeneration_note = note
    variant.error = ""
    variant.claim = ""
    variant.claimed_at = None
    variant.run = None
    variant.save(
        update_fields=["status", "regeneration_note", "error", "claim", "claimed_at", "run"]
    )
    pk = variant.pk
    transaction.on_commit(lambda: generate_variants.delay([pk]))
    return variant


@transaction.atomic
def variant_regenerate(*, variant: Variant, note: str) -> Variant:
    """Write an in-review variant again, with a reviewer's note as a course correction.

    The variant keeps its row (one variant per version and slot); the text it had is
    kept in the audit trail by the caller.
    """
    variant = Variant.objects.select_for_update().get(pk=variant.pk)
    if variant.status not in (Variant.Status.IN_REVIEW, Variant.Status.REJECTED):
        raise RunError(
            f"Variant {variant.pk} is {variant.get_status_display().lower()}; "
            "only variants in review or rejected can be regenerated"
        )
    if variant.run_id:
        GenerationRun.objects.filter(pk=variant.run_id).update(succeeded=F("succeeded") - 1)
    return _requeue_alone(variant, note=note.strip())


def prompt_regenerate(*, prompt: Prompt, user=None) -> GenerationRun | None:
    """Regenerate every slot of a prompt with its current version (after a new version).

    Older versions' variants still queued or in review become superseded; published
    ones stay live until the new version's replacement is approved.
    """
    version = prompt.current_version
    GenerationRun.objects.filter(
        prompt_version__prompt=prompt,
        status__in=[
            GenerationRun.Status.PENDING,
            GenerationRun.Status.RUNNING,
            GenerationRun.Status.PAUSED,
        ],
    ).exclude(prompt_version=version).update(
        status=GenerationRun.Status.CANCELLED, error=f"Superseded by {version}"
    )
    older = Variant.objects.filter(prompt=prompt).exclude(prompt_version=version)
    older.filter(status__in=[Variant.Status.IN_REVIEW, Variant.Status.QUEUED]).update(
        status=Variant.Status.SUPERSEDED, updated=timezone.now()
    )
    slots = set(
        older.filter(segment__isnull=False)
        .values_list("product_id", "segment_id", "language")
        .distinct()
    )
    if not slots:
        return None
    return run_create(
        prompt=prompt,
        products=list(Product.objects.filter(pk__in={p for p, _s, _l in slots})),
        segments=list(Segment.objects.filter(pk__in={s for _p, s, _l in slots})),
        user=user,
        note=f"Regeneration for {version}",
        check_endpoint=False,
        only_slots=slots,
    )


def run_estimate_for(*, prompt: Prompt) -> RunEstimate:
    """The estimate of a run of the prompt's current version over everything."""
    version = prompt.current_version
    if version is None:
        raise RunError(f"Prompt '{prompt.slug}' has no version yet; save one first")
    products = list(Product.objects.all())
    segments = list(Segment.objects.filter(member_count__gt=0))
    if not products or not segments:
        raise RunError("Import products and build segments before estimating a run")
    todo = queued_slots(version, products, segments)
    return run_estimate(
        version=version,
        products=products,
        audiences=segment_slots(prompt, segments),
        slots=len(todo),
        per_language=Counter(language for _p, _s, language in todo),
    )


# --- The brand voice editor and the prompt studio ----------------------------------
# Everything a marketing lead does before a save (preview, try, impact) writes nothing.

TRY_MAX_SAMPLES = 5
# A person waits for a try in the browser: stop retrying after this long, and give up
# on a request slot of the shared limiter sooner than a worker would.
TRY_DEADLINE_SECONDS = 20
TRY_SLOT_SECONDS = 15


class StudioError(ValueError):
    """A studio request that cannot be done as asked; the message says why."""


class BrandError(ValueError):
    pass


def _unique_lines(values: list[str], *, key) -> list[str]:
    """Trimmed, without empty lines or repeats (the first spelling wins)."""
    seen: set[str] = set()
    kept = []
    for value in values:
        value = value.strip()
        if value and key(value) not in seen:
            seen.add(key(value))
            kept.append(value)
    return kept


_LANGUAGE_LINE = re.compile(r"^\[([^\]]*)\]\s*(.*)$")


def _banned_by_language(lines: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Banned phrases for every language, and those of one language, written
    "[de] Wunder" (a BCP 47 tag in brackets); BrandError names a bad tag."""
    every: list[str] = []
    by_language: dict[str, list[str]] = {}
    for line in lines:
        match = _LANGUAGE_LINE.match(line)
        if match is None:
            every.append(line)
            continue
        try:
            tag = languages.language_tag(match.group(1))
        except languages.LanguageTagError as exc:
            raise BrandError(f"Banned phrase '{line}': {exc}") from None
        if not match.group(2).strip():
            raise BrandError(
                f"Banned phrase '{line}': the phrase after [{match.group(1)}] is empty"
            )
        by_language.setdefault(tag, []).append(match.group(2).strip())
    return every, by_language


def brand_update(
    *, brand: Brand, voice: str, banned_phrases: list[str], protected_terms: list[str], user
) -> Brand:
    """Change the brand's voice (the system prompt of all its prompts) and its word lists.

    1. Trim every line and drop empty ones and repeats: banned phrases whatever their
       case (the check ignores case), protected terms exactly (they are kept verbatim).
    2. Refuse an empty voice, and a protected term that contains a banned phrase: no
       copy could pass both checks.
    3. Save. Variants already written keep their text; the next run or regeneration
       uses the new voice and lists.
    """
    voice = voice.strip()
    if not voice:
        raise BrandError("The brand voice cannot be empty: it is the system prompt of every prompt")
    banned, by_language = _banned_by_language(_unique_lines(banned_phrases, key=str.casefold))
    protected = _unique_lines(protected_terms, key=str)
    every = [*banned, *(p for phrases in by_language.values() for p in phrases)]
    clashes = [t for t in protected if not checks.check_banned_phrases(t, phrases=every).passed]
    if clashes:
        raise BrandError(
            "A protected term cannot contain a banned phrase: "
            + ", ".join(f"'{t}'" for t in clashes)
        )
    brand.voice, brand.banned_phrases, brand.protected_terms = voice, banned, protected
    brand.banned_phrases_by_language = by_language
    brand.save(
        update_fields=[
            "voice",
            "banned_phrases",
            "banned_phrases_by_language",
            "protected_terms",
            "updated",
        ]
    )
    logger.info("brand %s (%s) updated by %s", brand.pk, brand.name, user)
    return brand


def _draft(
    *,
    prompt: Prompt,
    template: str,
    model: str = "",
    temperature: float = 0.7,
    examples: list[str] | None = None,
):
    """An unsaved version, checked as a save checks it, then rendered once on a stand-in
    slot: a format spec the value cannot take ('{max_length:s}') passes the placeholder
    check but would fail every variant of the run. Examples: as prompt_version_create."""
    if not template.strip():
        raise prompting.PromptTemplateError("The template is empty")
    prompting.template_placeholders(template)
    if not 0 <= temperature <= 2:
        raise prompting.PromptTemplateError(f"Temperature {temperature} is outside 0–2")
    version = PromptVersion(
        prompt=prompt,
        number=0,
        template=template,
        model=model.strip(),
        temperature=temperature,
        examples=prompt_examples(prompt=prompt, examples=examples),
    )
    try:
        prompting.render(
            version=version,
            prompt=prompt,
            brand=prompt.brand,
            product=Product(sku="SAMPLE", name="Sample", description="Sample."),
            segment=Segment(slug="sample", name="Sample", rules={}, summary={}),
        )
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise prompting.PromptTemplateError(f"The template cannot be rendered: {exc}") from exc
    return version


def _draft_with_model(
    *,
    prompt: Prompt,
    template: str,
    model: str,
    temperature: float,
    examples: list[str] | None = None,
):
    version = _draft(
        prompt=prompt, template=template, model=model, temperature=temperature, examples=examples
    )
    if not version.model:
        raise StudioError("Name the model to write with")
    return version


def prompt_preview(
    *,
    prompt: Prompt,
    template: str,
    product: Product,
    segment: Segment,
    examples: list[str] | None = None,
) -> prompting.RenderedPrompt:
    """The exact messages a version with this template (and these examples; None: the
    current version's) would send for one slot.

    Raise PromptTemplateError naming an unknown placeholder; nothing is saved.
    """
    version = _draft(prompt=prompt, template=template, examples=examples)
    return prompting.render(
        version=version,
        prompt=prompt,
        brand=prompt.brand,
        product=product,
        segment=segment,
        mode=capabilities.output_mode(version.model or settings.LLM_DEFAULT_MODEL)[0],
    )


@dataclass(frozen=True)
class PrefixShare:
    """How much of a template's rendered prompt a provider's prefix cache can reuse."""

    shared_chars: int  # what every segment's prompt for one product starts with
    prompt_chars: int  # a prompt's average length
    segments: int  # how many segments' prompts were compared
    cached_tokens: int  # what the endpoint reported cached, over the prompt's variants
    prompt_tokens: int

    @property
    def share(self) -> float:
        return self.shared_chars / self.prompt_chars if self.prompt_chars else 0.0

    @property
    def cached_share(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


PREFIX_SEGMENTS = 3


def prompt_prefix_share(
    *, prompt: Prompt, template: str, product: Product, examples: list[str] | None = None
) -> PrefixShare:
    """Render the template for one product and a few segments, and measure the prefix
    they share (the brand voice, the rules, the examples and the product's data come
    first for that). Beside it, the cached tokens the endpoint reported so far."""
    version = _draft(prompt=prompt, template=template, examples=examples)
    mode = capabilities.output_mode(version.model or settings.LLM_DEFAULT_MODEL)[0]
    segments = list(Segment.objects.filter(member_count__gt=0).order_by("-member_count", "slug"))
    rendered = [
        prompting.render(
            version=version,
            prompt=prompt,
            brand=prompt.brand,
            product=product,
            segment=segment,
            mode=mode,
        )
        for segment in segments[:PREFIX_SEGMENTS]
    ]
    shared, length = prompting.shared_prefix(rendered)
    if len(rendered) == 1:
        shared = 0  # one prompt shares nothing with another
    tokens = Variant.objects.filter(prompt=prompt, generated__isnull=False).aggregate(
        prompt=Sum("prompt_tokens"), cached=Sum("cached_tokens")
    )
    return PrefixShare(shared, length, len(rendered), tokens["cached"] or 0, tokens["prompt"] or 0)


def prompt_sample_pairs(
    *, prompt: Prompt, count: int = TRY_MAX_SAMPLES
) -> list[tuple[Product, Segment]]:
    """Up to `count` product × segment pairs that differ from each other as much as they can.

    1. Draw from the prompt's own slots when it has some (what a save regenerates), else
       from the catalog and the segments with members.
    2. Take the largest segments, and products spread evenly through the SKUs.
    3. Pair them so that every product and every segment appears once before any repeats.
    """
    slots = Variant.objects.filter(prompt=prompt, segment__isnull=False)
    if slots.exists():
        products = Product.objects.filter(pk__in=slots.values("product_id"))
        segments = Segment.objects.filter(pk__in=slots.values("segment_id"))
    else:
        products = Product.objects.all()
        segments = Segment.objects.filter(member_count__gt=0)
    chosen_segments = list(segments.order_by("-member_count", "slug")[:count])
    ids = list(products.order_by("sku").values_list("pk", flat=True))
    ids = ids[:: max(1, len(ids) // count)][:count]
    chosen_products = list(Product.objects.filter(pk__in=ids).order_by("sku"))
    pairs: list[tuple[Product, Segment]] = []
    for strict in (True, False):
        for product in chosen_products:
            for segment in chosen_segments:
                if len(pairs) == count:
                    return pairs
                if (product, segment) in pairs or (
                    strict and any(p == product or s == segment for p, s in pairs)
                ):
                    continue
                pairs.append((product, segment))
    return pairs


@dataclass(frozen=True)
class TryResult:
    product: Product
    segment: Segment
    copy: str = ""
    rationale: str = ""
    checks: list[dict] = field(default_factory=list)
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int | None = None
    cost: Decimal | None = None
    error: str = ""

    @property
    def checks_failed(self) -> int:
        return sum(not c["passed"] for c in self.checks)


class _Impatient(EndpointLimiter):
    """The shared limiter, for a caller who cannot wait as long as a worker can."""

    def __init__(self, limiter: EndpointLimiter) -> None:
        self.__dict__.update(limiter.__dict__)

    def slot(self, *, tokens: int = 0, timeout: float = TRY_SLOT_SECONDS):
        return super().slot(tokens=tokens, timeout=min(timeout, TRY_SLOT_SECONDS))


def _try_result(outcome: engine.Outcome) -> TryResult:
    variant = outcome.job.variant
    slot = {"product": variant.product, "segment": variant.segment}
    if outcome.kind == "done":
        completion = outcome.completion
        return TryResult(
            **slot,
            copy=outcome.copy,
            rationale=outcome.rationale,
            checks=outcome.checks,
            model=completion.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            latency_ms=completion.latency_ms,
            cost=outcome.cost,
        )
    if outcome.kind == "config":
        error = (
            f"The endpoint at {settings.LLM_BASE_URL} refused the configuration: "
            f"{outcome.error}. Check LLM_API_KEY and the model."
        )
    elif outcome.kind == "release" and "slot" in outcome.error:  # LimiterTimeout
        error = f"{outcome.error}: runs are using every request slot; try again in a moment"
    elif outcome.kind == "release":
        error = (
            f"Gave up after {TRY_DEADLINE_SECONDS}s: the endpoint kept answering with "
            "transient errors (rate limits, 5xx or timeouts); try again in a moment"
        )
    else:
        error = outcome.error
    return TryResult(**slot, error=error)


def prompt_try(
    *,
    prompt: Prompt,
    template: str,
    model: str,
    temperature: float,
    pairs: list[tuple[Product, Segment]],
    examples: list[str] | None = None,
) -> list[TryResult]:
    """Write copy for a few slots now with an unsaved version; nothing is saved or queued.

    1. Refuse more than TRY_MAX_SAMPLES pairs; with none, pick them (prompt_sample_pairs).
    2. Check the template as a save would, and the endpoint and model as a run would.
    3. Send all the samples at once along a run's own path (engine.prepare, engine.call:
       the shared limiter, the retries, the rationale split, the checks), but give up
       sooner. The calls never touch the database: everything they read is loaded here.
    """
    if len(pairs) > TRY_MAX_SAMPLES:
        raise StudioError(f"Try at most {TRY_MAX_SAMPLES} samples at a time, not {len(pairs)}")
    version = _draft_with_model(
        prompt=prompt, template=template, model=model, temperature=temperature, examples=examples
    )
    pairs = pairs or prompt_sample_pairs(prompt=prompt)
    if not pairs:
        raise StudioError("Import products and build segments before trying a prompt")
    endpoint_check(model=version.model)
    personal = prompting.personal_attributes()
    jobs = [
        engine.prepare(
            Variant(prompt=prompt, prompt_version=version, product=p, segment=s),
            personal=personal,
            mode=capabilities.output_mode(version.model)[0],
        )
        for p, s in pairs
    ]
    limiter = _Impatient(endpoint_limiter())
    stop = threading.Event()
    deadline = threading.Timer(TRY_DEADLINE_SECONDS, stop.set)
    deadline.start()
    try:
        with ThreadPoolExecutor(len(jobs), thread_name_prefix="try") as pool:
            outcomes = list(pool.map(lambda job: engine.call(job, limiter, stop), jobs))
    finally:
        deadline.cancel()
    return [_try_result(outcome) for outcome in outcomes]


@dataclass(frozen=True)
class Impact:
    """What saving an edit of a prompt would do."""

    number: int  # the new version's number
    products: int
    segments: int
    # The regeneration run covers every product × segment among the prompt's slots,
    # which can be more than the slots that have a variant now (existing_slots).
    slots: int
    existing_slots: int
    in_review: int  # superseded on save, like the queued ones
    queued: int
    published: int  # stay live until their replacements are approved
    runs_cancelled: int  # older versions' runs still going
    estimate: RunEstimate
    # The current version's number when the edit changes nothing it would write with.
    unchanged_since: int | None = None

    @property
    def superseded(self) -> int:
        return self.in_review + self.queued


def prompt_impact(
    *,
    prompt: Prompt,
    model: str,
    template: str,
    temperature: float = 0.7,
    examples: list[str] | None = None,
) -> Impact:
    """What saving this edit would do, without doing it (as prompt_version_create and
    prompt_regenerate would): the old versions' variants in review or queued become
    superseded, published ones stay live, older runs still going are cancelled, and a
    run of the new version covers the prompt's segment slots."""
    version = _draft_with_model(
        prompt=prompt, template=template, model=model, temperature=temperature, examples=examples
    )
    current = prompt.current_version
    variants = Variant.objects.filter(prompt=prompt)
    counts = variants.aggregate(
        in_review=Count("pk", filter=Q(status=Variant.Status.IN_REVIEW)),
        queued=Count("pk", filter=Q(status=Variant.Status.QUEUED)),
        published=Count("pk", filter=Q(status=Variant.Status.PUBLISHED)),
    )
    slotted = variants.filter(segment__isnull=False)
    products = list(Product.objects.filter(pk__in=slotted.values("product_id")))
    segments = list(Segment.objects.filter(pk__in=slotted.values("segment_id")))
    # The regeneration covers exactly the slots that have a variant (prompt_regenerate).
    slot_keys = set(slotted.values_list("segment_id", "language", "product_id").distinct())
    slots = len(slot_keys)
    by_segment = {s.pk: s for s in segments}
    audiences = [
        (by_segment[s], language)
        for s, language in sorted({(s, language) for s, language, _p in slot_keys})
        if s in by_segment
    ]
    return Impact(
        number=current.number + 1 if current else 1,
        products=len(products),
        segments=len(segments),
        slots=slots,
        existing_slots=slots,
        runs_cancelled=GenerationRun.objects.filter(
            prompt_version__prompt=prompt,
            status__in=[
                GenerationRun.Status.PENDING,
                GenerationRun.Status.RUNNING,
                GenerationRun.Status.PAUSED,
            ],
        ).count(),
        estimate=dataclasses.replace(
            run_estimate(version=version, products=products, audiences=audiences, slots=slots),
            languages=tuple(Counter(language for _s, language, _p in slot_keys).most_common()),
        ),
        unchanged_since=current.number if current and _same_version(current, version) else None,
        **counts,
    )


def _same_version(a: PromptVersion, b: PromptVersion) -> bool:
    return (a.template, a.model, a.temperature, list(a.examples)) == (
        b.template,
        b.model,
        b.temperature,
        list(b.examples),
    )


def prompt_save(
    *,
    prompt: Prompt,
    template: str,
    model: str,
    temperature: float,
    note: str = "",
    user=None,
    examples: list[str] | None = None,
) -> PromptVersion:
    """Save an edit from the studio as the prompt's next version; it regenerates the slots.

    1. Check it as the preview does, refuse an edit that changes nothing (it would pay
       for a regeneration of every slot), and ask the endpoint about a new model.
    2. prompt_version_create: the version, the superseded variants, the regeneration run
       (the new version's `runs`).
    """
    draft = _draft_with_model(
        prompt=prompt, template=template, model=model, temperature=temperature, examples=examples
    )
    current = prompt.current_version
    if current is not None and _same_version(current, draft):
        raise StudioError(
            f"Nothing changed since v{current.number}: change the template, the model, "
            "the temperature or the examples before saving a new version"
        )
    if current is None or current.model != draft.model:
        endpoint_check(model=draft.model)
    return prompt_version_create(
        prompt=prompt,
        template=draft.template,
        model=draft.model,
        temperature=draft.temperature,
        author=user,
        note=note.strip(),
        examples=draft.examples,
    )


def prompt_rollback(*, prompt: Prompt, version: PromptVersion, user) -> PromptVersion:
    """Save an earlier version again as the newest ("Rollback to vN"); it regenerates
    the prompt's slots like any save. Versions are never edited or deleted."""
    if version.prompt_id != prompt.pk:
        raise StudioError(f"{version} is not a version of '{prompt.slug}'")
    current = prompt.current_version
    if current is not None and current.pk == version.pk:
        raise StudioError(f"v{version.number} is already the current version")
    if current is not None and _same_version(current, version):
        raise StudioError(
            f"v{current.number} already has the template, model, temperature and examples of "
            f"v{version.number}; nothing to roll back"
        )
    return prompt_version_create(
        prompt=prompt,
        template=version.template,
        model=version.model,
        temperature=version.temperature,
        author=user,
        note=f"Rollback to v{version.number}",
        examples=list(version.examples),
    )
