"""Writes with side effects in the generation domain. Views, commands and tasks call these."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from generation import llm, prompting
from generation.checks import run_checks
from generation.importers import read_customers, read_products
from generation.models import (
    Customer,
    GenerationRun,
    Product,
    Prompt,
    PromptVersion,
    Segment,
    Variant,
)

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000


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


def products_import(*, path: Path) -> ImportResult:
    """1. Read and validate the whole file (raises ImportFileError, nothing written).
    2. Upsert by SKU in one transaction."""
    rows = read_products(path)
    fields = ["name", "category", "subcategory", "description", "attributes"]
    now = timezone.now()
    with transaction.atomic():
        return _upsert(
            Product,
            "sku",
            [{"sku": r.sku, "updated": now, **{f: getattr(r, f) for f in fields}} for r in rows],
            fields,
        )


def customers_import(*, path: Path) -> ImportResult:
    """1. Read and validate the whole file (raises ImportFileError, nothing written).
    2. Upsert by external id in one transaction."""
    rows = read_customers(path)
    now = timezone.now()
    with transaction.atomic():
        return _upsert(
            Customer,
            "external_id",
            [
                {
                    "external_id": r.external_id,
                    "language": r.language,
                    "attributes": r.attributes,
                    "updated": now,
                }
                for r in rows
            ],
            ["language", "attributes"],
        )


class SegmentError(ValueError):
    pass


# Attributes with this many distinct values or more are identifiers or free text
# (e-mail addresses, names), not something a segment summary should describe.
SUMMARY_MAX_DISTINCT = 50


def segments_build(*, by: list[str]) -> list[Segment]:
    """Make one segment per combination of `by` values present among the customers.

    1. Group customers by their values of `by` (customers missing one are left out).
    2. Summarise each group: the share of each value of every other attribute.
    3. Upsert segments by slug in one transaction; segments built earlier on the same
       attributes whose combination no longer occurs keep their rules with 0 members.
    """
    by = [b.strip() for b in by if b.strip()]
    if not by:
        raise SegmentError("Name at least one attribute to segment by (--by value_tier)")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    seen_attributes: set[str] = set()
    for language, attributes in Customer.objects.values_list("language", "attributes").iterator(
        chunk_size=5000
    ):
        attributes = {**attributes, "language": language}
        seen_attributes.update(attributes)
        values = tuple(attributes.get(b) for b in by)
        if all(v not in (None, "") for v in values):
            groups[tuple(str(v) for v in values)].append(attributes)
    unknown = [b for b in by if b not in seen_attributes]
    if unknown:
        raise SegmentError(
            f"No customer has the attribute(s) {', '.join(unknown)}. "
            "Known attributes: "
            + (", ".join(sorted(seen_attributes)) or "none (import customers first)")
        )

    distinct: dict[str, set] = defaultdict(set)
    for members in groups.values():
        for attributes in members:
            for k, v in attributes.items():
                if len(distinct[k]) < SUMMARY_MAX_DISTINCT:
                    distinct[k].add(str(v))
    described = sorted(
        k for k, vs in distinct.items() if k not in by and len(vs) < SUMMARY_MAX_DISTINCT
    )

    built = []
    with transaction.atomic():
        for values, members in sorted(groups.items()):
            summary = {}
            for attribute in described:
                counts = Counter(str(m[attribute]) for m in members if attribute in m)
                summary[attribute] = {
                    v: round(c / len(members), 4) for v, c in counts.most_common()
                }
            segment, _ = Segment.objects.update_or_create(
                slug=slugify("-".join(values))[:200],
                defaults={
                    "name": " × ".join(values),
                    "rules": dict(zip(by, values, strict=True)),
                    "member_count": len(members),
                    "summary": summary,
                },
            )
            built.append(segment)
        stale = Segment.objects.exclude(pk__in=[s.pk for s in built])
        for segment in stale:
            if sorted(segment.rules) == sorted(by):
                segment.member_count = 0
                segment.summary = {}
                segment.save(update_fields=["member_count", "summary", "updated"])
    return built


@transaction.atomic
def prompt_version_create(
    *,
    prompt: Prompt,
    template: str,
    model: str,
    temperature: float = 0.7,
    author=None,
    note: str = "",
) -> PromptVersion:
    """Validate the template's placeholders, then save it as the prompt's next version."""
    prompting.template_placeholders(template)
    if not 0 <= temperature <= 2:
        raise prompting.PromptTemplateError(f"Temperature {temperature} is outside 0–2")
    Prompt.objects.select_for_update().get(pk=prompt.pk)  # serialise version numbers
    last = prompt.versions.order_by("-number").values_list("number", flat=True).first()
    return PromptVersion.objects.create(
        prompt=prompt,
        number=(last or 0) + 1,
        template=template,
        model=model,
        temperature=temperature,
        author=author,
        note=note,
    )


class RunError(ValueError):
    pass


def run_create(
    *,
    prompt: Prompt,
    products: list[Product] | None = None,
    segments: list[Segment] | None = None,
    user=None,
) -> GenerationRun:
    """Create a run of the prompt's current version over products × segments.

    1. Refuse a prompt with no version and an empty scope, naming which.
    2. Create one queued variant per slot this version has not written yet (the
       unique constraint per version and slot makes a second run skip them).
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

    with transaction.atomic():
        run = GenerationRun.objects.create(
            prompt_version=version,
            scope={"products": [p.sku for p in products], "segments": [s.slug for s in segments]},
            created_by=user,
        )
        done = set(
            Variant.objects.filter(prompt_version=version, segment__isnull=False).values_list(
                "product_id", "segment_id"
            )
        )
        Variant.objects.bulk_create(
            (
                Variant(
                    run=run,
                    prompt=prompt,
                    prompt_version=version,
                    product=product,
                    segment=segment,
                    model=version.model,
                )
                for product in products
                for segment in segments
                if (product.pk, segment.pk) not in done
            ),
            batch_size=BATCH_SIZE,
        )
        run.total = run.variants.count()
        if run.total == 0:
            run.status = GenerationRun.Status.FINISHED
            run.finished = timezone.now()
        run.save(update_fields=["total", "status", "finished"])
        if run.total:
            from generation.tasks import run_start

            transaction.on_commit(lambda: run_start.delay(run.pk))
    return run


def run_start(*, run_id: int) -> list[int]:
    """Mark the run running and return the ids of its variants still queued."""
    updated = GenerationRun.objects.filter(
        pk=run_id, status__in=[GenerationRun.Status.PENDING, GenerationRun.Status.RUNNING]
    ).update(status=GenerationRun.Status.RUNNING, started=timezone.now())
    if not updated:
        logger.info("run %s is not pending or running; nothing to start", run_id)
        return []
    return list(
        Variant.objects.filter(run_id=run_id, status=Variant.Status.QUEUED).values_list(
            "pk", flat=True
        )
    )


def _run_count(run_id: int | None, **increments) -> None:
    if run_id is None:
        return
    GenerationRun.objects.filter(pk=run_id).update(**{k: F(k) + v for k, v in increments.items()})
    # Finishing is a conditional UPDATE too, so two workers finishing the last two
    # slots at once both try and exactly one succeeds.
    GenerationRun.objects.filter(
        pk=run_id,
        status=GenerationRun.Status.RUNNING,
        total__lte=F("succeeded") + F("failed"),
    ).update(status=GenerationRun.Status.FINISHED, finished=timezone.now())


def variant_generate(*, variant_id: int) -> Variant | None:
    """Write one variant through the LLM endpoint.

    1. Claim the variant (queued → generating) with a conditional UPDATE; if another
       worker holds it or it is gone, return None.
    2. Render the prompt, call the endpoint, split copy from rationale, run checks.
    3. Store it as in review with usage and latency, and count it on the run.
    A transient endpoint error puts the variant back in the queue and re-raises (the
    task retries with backoff); a permanent one marks it failed with the reason.
    """
    claimed = Variant.objects.filter(pk=variant_id, status=Variant.Status.QUEUED).update(
        status=Variant.Status.GENERATING, attempts=F("attempts") + 1
    )
    if not claimed:
        logger.info("variant %s is not queued (gone or claimed); skipping", variant_id)
        return None
    variant = Variant.objects.select_related(
        "prompt__brand", "prompt_version", "product", "segment", "customer"
    ).get(pk=variant_id)
    prompt = variant.prompt
    try:
        rendered = prompting.render(
            version=variant.prompt_version,
            prompt=prompt,
            brand=prompt.brand,
            product=variant.product,
            segment=variant.segment,
            customer=variant.customer,
        )
        completion = llm.complete(
            messages=rendered.messages,
            model=variant.prompt_version.model,
            temperature=variant.prompt_version.temperature,
        )
        copy, rationale = llm.split_rationale(completion.content)
    except llm.TransientLLMError:
        Variant.objects.filter(pk=variant_id, status=Variant.Status.GENERATING).update(
            status=Variant.Status.QUEUED
        )
        raise
    except (llm.PermanentLLMError, KeyError, ValueError) as exc:
        variant_fail(variant_id=variant_id, reason=str(exc))
        return None

    variant.text = variant.original_text = copy
    variant.rationale = rationale
    variant.checks = run_checks(
        text=copy, prompt=prompt, brand=prompt.brand, product=variant.product
    )
    variant.model = completion.model
    variant.prompt_tokens = completion.prompt_tokens
    variant.completion_tokens = completion.completion_tokens
    variant.cached_tokens = completion.cached_tokens
    variant.latency_ms = completion.latency_ms
    variant.error = ""
    variant.status = Variant.Status.IN_REVIEW
    variant.generated = timezone.now()
    with transaction.atomic():
        variant.save(
            update_fields=[
                "text", "original_text", "rationale", "checks", "model", "prompt_tokens",
                "completion_tokens", "cached_tokens", "latency_ms", "error", "status",
                "generated", "updated",
            ]
        )  # fmt: skip
        _run_count(
            variant.run_id,
            succeeded=1,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cached_tokens=completion.cached_tokens,
        )
    return variant


@transaction.atomic
def variant_fail(
    *, variant_id: int, reason: str, from_status: str = Variant.Status.GENERATING
) -> bool:
    """Record a permanent failure and count it on the run; False if it was not `from_status`.

    Transient errors put a variant back to queued, so a task that gives up after its
    last retry fails it from there.
    """
    updated = Variant.objects.filter(pk=variant_id, status=from_status).update(
        status=Variant.Status.FAILED, error=reason[:2000], updated=timezone.now()
    )
    if updated:
        run_id = Variant.objects.filter(pk=variant_id).values_list("run_id", flat=True).first()
        _run_count(run_id, failed=1)
        logger.warning("variant %s failed: %s", variant_id, reason)
    return bool(updated)
