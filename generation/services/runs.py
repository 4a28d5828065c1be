"""Runs: estimate, create, populate and dispatch, cancel, resume, retry, regenerate."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import openai
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone

from generation import (
    capabilities,
    engine,
    llm,
    pricing,
    prompting,
)
from generation.errors import ServiceError
from generation.models import (
    GenerationRun,
    Product,
    Prompt,
    PromptVersion,
    Segment,
    Variant,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

ANALYZE_AFTER = 10_000
# Slots a run queues when it is created; the rest are queued in the background, this
# many products a transaction (PostgreSQL: about 0.4 s for 20,000 slots).
QUEUE_NOW_SLOTS = 20_000
POPULATE_PRODUCTS = 1_000


class RunError(ServiceError):
    """A run that cannot be created, estimated, cancelled or resumed as asked."""

    default_field = "non_field_errors"


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
    per_language: Counter[str] | None = None,
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
    if known is not None and fresh and known.structured_output is not None:
        return
    try:
        capabilities.probe(model=model)
    except llm.EndpointConfigError as exc:
        raise RunError(
            f"The LLM endpoint at {settings.LLM_BASE_URL} refused: {exc}", field="endpoint"
        ) from exc


def _endpoint_models_check(*, model: str) -> None:
    client = llm.client()
    try:
        client.models.retrieve(model)
        return
    except openai.AuthenticationError as exc:
        raise RunError(
            f"The LLM endpoint at {settings.LLM_BASE_URL} refused the API key (HTTP 401): "
            f"{exc.message}. Check LLM_API_KEY.",
            field="endpoint",
        ) from exc
    except openai.NotFoundError:
        pass
    except openai.APIConnectionError as exc:
        raise RunError(
            f"Cannot reach the LLM endpoint at {settings.LLM_BASE_URL}: {exc}", field="endpoint"
        ) from exc
    except openai.APIStatusError:
        return  # the endpoint does not serve /models/{id}; the run will tell
    try:
        offered = [m.id for m in client.models.list()]
    except openai.APIError:
        return
    if model not in offered:
        raise RunError(
            f"The LLM endpoint at {settings.LLM_BASE_URL} has no model '{model}'. "
            f"It offers: {', '.join(offered[:20]) or 'none'}.",
            field="endpoint",
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


def queued_slots(
    version: PromptVersion, products: list[Product], segments: list[Segment]
) -> list[tuple[Product, Segment, str]]:
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
    user: User | None = None,
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
    version = prompt.require_version(RunError)
    products = list(Product.objects.all()) if products is None else products
    segments = list(Segment.objects.filter(member_count__gt=0)) if segments is None else segments
    if not products:
        raise RunError("The run covers no products; import products first", field="products")
    if not segments:
        raise RunError("The run covers no segments; build segments first", field="segments")
    if budget is not None:
        if budget <= 0:
            raise RunError("The budget must be more than $0", field="budget")
        try:
            pricing.price_for(version.model)
        except pricing.UnknownPrice as exc:
            raise RunError(f"A budget needs a price: {exc}", field="budget") from exc
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
    return len(products) * len(audiences) - int(done)


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
        params: list[Any] = [[p.pk for p in products], segment_ids, tags]
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
        return int(cursor.rowcount)


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
    return int(settings.GENERATION_TASKS_PER_RUN)


def runs_revive_stuck(*, idle_seconds: float | None = None) -> list[int]:
    """Start drain tasks again for running runs that still have work but have made no
    progress for `idle_seconds` (default GENERATION_LEASE_SECONDS): their tasks were
    lost (a broker restarted without persistence, a purged queue). Safe to run twice:
    drains claim variants by conditional UPDATE, and take over claims whose lease ran
    out. Returns the ids of the runs revived. Celery beat runs it every few minutes."""
    from generation.tasks import run_drain, run_populate

    idle = settings.GENERATION_LEASE_SECONDS if idle_seconds is None else idle_seconds
    cutoff = timezone.now() - timedelta(seconds=idle)
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
    updated = (
        GenerationRun.objects.unfinished()
        .filter(pk=run.pk)
        .update(status=GenerationRun.Status.CANCELLED, error="Cancelled")
    )
    run.refresh_from_db()
    if not updated:
        raise RunError(
            f"Run {run.pk} is {run.get_status_display().lower()}; nothing to cancel", field="status"
        )
    return run


@transaction.atomic
def run_resume(*, run: GenerationRun, budget: Decimal | None = None) -> GenerationRun:
    """Continue a cancelled, paused or failed run from where it stopped."""
    run = GenerationRun.objects.select_for_update().get(pk=run.pk)
    if run.is_active or run.status == GenerationRun.Status.FINISHED:
        raise RunError(
            f"Run {run.pk} is {run.get_status_display().lower()}; nothing to resume", field="status"
        )
    if budget is not None:
        run.budget = budget
    if run.budget is not None and run.cost >= run.budget:
        raise RunError(
            f"Run {run.pk} has spent ${run.cost:.4f} of its ${run.budget:.4f} budget; "
            "raise the budget to resume",
            field="budget",
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


def prompt_regenerate(*, prompt: Prompt, user: User | None = None) -> GenerationRun | None:
    """Regenerate every slot of a prompt with its current version (after a new version).

    Older versions' variants still queued or in review become superseded; published
    ones stay live until the new version's replacement is approved.
    """
    version = prompt.current_version
    GenerationRun.objects.unfinished().filter(
        prompt_version__prompt=prompt,
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
    version = prompt.require_version(RunError)
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
