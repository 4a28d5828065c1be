"""Prompts: versions and examples, the brand voice editor and the prompt studio
(preview, try on samples, impact, save, rollback)."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.utils.text import slugify

from generation import (
    capabilities,
    checks,
    engine,
    languages,
    prompting,
)
from generation.errors import ServiceError
from generation.limiter import EndpointLimiter, endpoint_limiter
from generation.models import (
    Brand,
    GenerationRun,
    Product,
    Prompt,
    PromptVersion,
    Segment,
    Variant,
)
from generation.services.messages import LANGUAGES_MAX
from generation.services.runs import RunEstimate, endpoint_check, prompt_regenerate, run_estimate

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

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
    author: User | None = None,
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


# --- The brand voice editor and the prompt studio ----------------------------------
# Everything a marketing lead does before a save (preview, try, impact) writes nothing.

TRY_MAX_SAMPLES = 5
# A person waits for a try in the browser: stop retrying after this long, and give up
# on a request slot of the shared limiter sooner than a worker would.
TRY_DEADLINE_SECONDS = 20
TRY_SLOT_SECONDS = 15


class StudioError(ServiceError):
    """A studio request that cannot be done as asked; the message says why."""


class BrandError(ServiceError):
    """A brand voice that cannot be saved as written."""


def _unique_lines(values: list[str], *, key: Callable[[str], str]) -> list[str]:
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


BRAND_NAME_MAX = Brand._meta.get_field("name").max_length or 120


def _brand_name(name: str, *, brand: Brand | None = None) -> str:
    """The name trimmed; BrandError when it is empty, too long or another brand's
    (whatever its case: "northpace" beside "Northpace" would be one brand twice)."""
    name = name.strip()
    if not name:
        raise BrandError("A brand needs a name", field="name")
    if len(name) > BRAND_NAME_MAX:
        raise BrandError(f"A brand's name is at most {BRAND_NAME_MAX} characters", field="name")
    others = Brand.objects.filter(name__iexact=name)
    if brand is not None:
        others = others.exclude(pk=brand.pk)
    taken = others.values_list("name", flat=True).first()
    if taken is not None:
        raise BrandError(f"There is a brand '{taken}' already: choose another name", field="name")
    return name


@dataclass(frozen=True)
class _BrandFields:
    voice: str
    banned: list[str]
    by_language: dict[str, list[str]]
    protected: list[str]


def _brand_fields(
    *, voice: str, banned_phrases: list[str], protected_terms: list[str]
) -> _BrandFields:
    """Steps 1 and 2 of brand_update: the voice and word lists cleaned, or BrandError
    naming the field."""
    voice = voice.strip()
    if not voice:
        raise BrandError(
            "The brand voice cannot be empty: it is the system prompt of every prompt",
            field="voice",
        )
    try:
        banned, by_language = _banned_by_language(_unique_lines(banned_phrases, key=str.casefold))
    except BrandError as exc:
        raise BrandError(exc.message, field="banned_phrases") from None
    protected = _unique_lines(protected_terms, key=str)
    every = [*banned, *(p for phrases in by_language.values() for p in phrases)]
    clashes = [t for t in protected if not checks.check_banned_phrases(t, phrases=every).passed]
    if clashes:
        raise BrandError(
            "A protected term cannot contain a banned phrase: "
            + ", ".join(f"'{t}'" for t in clashes),
            field="protected_terms",
        )
    return _BrandFields(voice, banned, by_language, protected)


def _saved_brand(brand: Brand, fields: list[str]) -> Brand:
    """Save; a name another request took since it was checked is refused by name too."""
    try:
        with transaction.atomic():
            if brand.pk is None:
                brand.save()
            else:
                brand.save(update_fields=fields)
    except IntegrityError:
        raise BrandError(
            f"There is a brand '{brand.name}' already: choose another name", field="name"
        ) from None
    return brand


def brand_create(
    *,
    name: str,
    voice: str,
    banned_phrases: list[str],
    protected_terms: list[str],
    user: User | None,
) -> Brand:
    """A new brand: its name (unique whatever its case), voice and word lists, cleaned
    and checked as brand_update does. BrandError names the field; nothing is written."""
    cleaned = _brand_fields(
        voice=voice, banned_phrases=banned_phrases, protected_terms=protected_terms
    )
    brand = Brand(
        name=_brand_name(name),
        voice=cleaned.voice,
        banned_phrases=cleaned.banned,
        banned_phrases_by_language=cleaned.by_language,
        protected_terms=cleaned.protected,
    )
    _saved_brand(brand, [])
    logger.info("brand %s (%s) created by %s", brand.pk, brand.name, user)
    return brand


def brand_update(
    *,
    brand: Brand,
    voice: str,
    banned_phrases: list[str],
    protected_terms: list[str],
    user: User | None,
    name: str | None = None,
) -> Brand:
    """Change the brand's voice (the system prompt of all its prompts), its word lists,
    and its name when `name` is given.

    1. Trim every line and drop empty ones and repeats: banned phrases whatever their
       case (the check ignores case), protected terms exactly (they are kept verbatim).
    2. Refuse an empty voice, and a protected term that contains a banned phrase: no
       copy could pass both checks; and an empty name, or another brand's.
    3. Save. Variants already written keep their text; the next run or regeneration
       uses the new voice, lists and name.
    """
    cleaned = _brand_fields(
        voice=voice, banned_phrases=banned_phrases, protected_terms=protected_terms
    )
    fields = ["voice", "banned_phrases", "banned_phrases_by_language", "protected_terms"]
    if name is not None:
        brand.name = _brand_name(name, brand=brand)
        fields.append("name")
    brand.voice, brand.banned_phrases, brand.protected_terms = (
        cleaned.voice,
        cleaned.banned,
        cleaned.protected,
    )
    brand.banned_phrases_by_language = cleaned.by_language
    _saved_brand(brand, [*fields, "updated"])
    logger.info("brand %s (%s) updated by %s", brand.pk, brand.name, user)
    return brand


def _draft(
    *,
    prompt: Prompt,
    template: str,
    model: str = "",
    temperature: float = 0.7,
    examples: list[str] | None = None,
) -> PromptVersion:
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
) -> PromptVersion:
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
    checks: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int | None = None
    cost: Decimal | None = None
    error: str = ""

    @property
    def checks_failed(self) -> int:
        return sum(not c["passed"] for c in self.checks)


class _Impatient:
    """The shared limiter, for a caller who cannot wait as long as a worker can: a
    request slot is given up after TRY_SLOT_SECONDS (a CallLimiter, as engine.call
    takes)."""

    def __init__(self, limiter: EndpointLimiter) -> None:
        self._limiter = limiter

    def slot(self, *, tokens: int = 0) -> AbstractContextManager[None]:
        return self._limiter.slot(tokens=tokens, timeout=TRY_SLOT_SECONDS)

    def succeeded(self) -> int:
        return self._limiter.succeeded()

    def rate_limited(self) -> int:
        return self._limiter.rate_limited()

    def observe(self, headers: Mapping[str, str]) -> None:
        self._limiter.observe(headers)


def _try_result(outcome: engine.Outcome) -> TryResult:
    variant = outcome.job.variant
    product, segment = variant.product, variant.segment
    assert segment is not None  # a try writes for segments
    completion = outcome.completion
    if outcome.kind == "done" and completion is not None:
        return TryResult(
            product=product,
            segment=segment,
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
    return TryResult(product=product, segment=segment, error=error)


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
        runs_cancelled=GenerationRun.objects.unfinished()
        .filter(prompt_version__prompt=prompt)
        .count(),
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
    user: User | None = None,
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


def prompt_rollback(*, prompt: Prompt, version: PromptVersion, user: User | None) -> PromptVersion:
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


# --- New prompts: from a starter template, or a copy of another ---------------------------

PROMPT_NAME_MAX = Prompt._meta.get_field("name").max_length or 200
PROMPT_SLUG_MAX = Prompt._meta.get_field("slug").max_length or 100
# /review/prompts/new/ would shadow the studio of a prompt of this slug.
RESERVED_PROMPT_SLUGS = frozenset({"new"})
COPY_LENGTH_MAX = 10_000
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")


def _prompt_identity(*, name: str, slug: str) -> tuple[str, str]:
    """(name, slug) of a new prompt, the slug made from the name when none is given;
    StudioError naming the field when either cannot be used (a slug in use too)."""
    name = name.strip()
    if not name:
        raise StudioError("A prompt needs a name", field="name")
    if len(name) > PROMPT_NAME_MAX:
        raise StudioError(f"A prompt's name is at most {PROMPT_NAME_MAX} characters", field="name")
    slug = slug.strip()
    if not slug:
        slug = slugify(name)[:PROMPT_SLUG_MAX].strip("-")
        if not slug:
            raise StudioError(
                "Give the prompt a slug: its name has no letters or digits to make one from",
                field="slug",
            )
    elif len(slug) > PROMPT_SLUG_MAX or not _SLUG.fullmatch(slug):
        raise StudioError(
            f"'{slug[:PROMPT_SLUG_MAX]}' is not a slug: use at most {PROMPT_SLUG_MAX} letters, "
            "digits, hyphens and underscores, as in 'summer-sms'",
            field="slug",
        )
    if slug in RESERVED_PROMPT_SLUGS:
        raise StudioError(f"'{slug}' is reserved; choose another slug", field="slug")
    if Prompt.objects.filter(slug=slug).exists():
        raise StudioError(
            f"There is a prompt with the slug '{slug}' already: choose another", field="slug"
        )
    return name, slug


def _prompt_languages(tags: list[str]) -> list[str]:
    """BCP 47 tags as stored, without repeats; StudioError naming a bad one."""
    if len(tags) > LANGUAGES_MAX:
        raise StudioError(f"At most {LANGUAGES_MAX} languages a prompt", field="languages")
    try:
        return list(dict.fromkeys(languages.language_tag(tag) for tag in tags))
    except languages.LanguageTagError as exc:
        raise StudioError(exc.message, field="languages") from None


def _inserted(prompt: Prompt) -> Prompt:
    """Insert the prompt; a slug another request took since it was checked is refused
    by name, as _prompt_identity refuses one taken before."""
    try:
        with transaction.atomic():
            prompt.save()
    except IntegrityError:
        raise StudioError(
            f"There is a prompt with the slug '{prompt.slug}' already: choose another",
            field="slug",
        ) from None
    return prompt


def prompt_create(
    *,
    name: str,
    slug: str,
    brand: Brand,
    channel: str,
    max_length: int,
    model: str,
    template: str,
    languages: list[str] | None = None,
    temperature: float = 0.7,
    note: str = "",
    user: User | None = None,
) -> Prompt:
    """A new prompt and its first version, which writes nothing until a run is started.

    1. Check everything before writing: the name and slug (unique, made from the name
       when empty), the channel, the length limit, the languages (BCP 47), and the
       template and model as a studio save checks them (_draft_with_model: an unknown
       placeholder, an empty template, a template that cannot render are refused by
       name).
    2. Ask the endpoint about the model, as a save with a new model does.
    3. In one transaction: the prompt, then v1 through prompt_version_create.
    StudioError names the field; on any refusal nothing is written.
    """
    name, slug = _prompt_identity(name=name, slug=slug)
    if channel not in Prompt.Channel.values:
        raise StudioError(
            f"'{channel}' is not a channel; choose one of "
            + ", ".join(label for _value, label in Prompt.Channel.choices),
            field="channel",
        )
    if not 1 <= max_length <= COPY_LENGTH_MAX:
        raise StudioError(
            f"The length limit is 1 to {COPY_LENGTH_MAX:,} characters", field="max_length"
        )
    if not model.strip():
        raise StudioError("Name the model to write with", field="model")
    prompt = Prompt(
        name=name,
        slug=slug,
        brand=brand,
        channel=channel,
        max_length=max_length,
        languages=_prompt_languages(languages or []),
    )
    try:
        # Examples: none (the prompt has no variants yet); None would read the versions
        # of a prompt that is not saved.
        draft = _draft_with_model(
            prompt=prompt, template=template, model=model, temperature=temperature, examples=[]
        )
    except prompting.PromptTemplateError as exc:
        raise StudioError(str(exc), field="template") from None
    endpoint_check(model=draft.model)
    with transaction.atomic():
        _inserted(prompt)
        prompt_version_create(
            prompt=prompt,
            template=draft.template,
            model=draft.model,
            temperature=draft.temperature,
            author=user,
            note=note.strip(),
            regenerate=False,
            examples=[],
        )
    logger.info("prompt %s (%s) created by %s", prompt.pk, prompt.slug, user)
    return prompt


# What a copy of a prompt takes from it besides its current version.
COPIED_SETTINGS = (
    "brand",
    "channel",
    "max_length",
    "copy_format",
    "allowed_attributes",
    "languages",
    "language_min_share",
    "holdout_percent",
    "review_policy",
    "review_sample_percent",
)


def prompt_duplicate(*, prompt: Prompt, name: str, slug: str, user: User | None = None) -> Prompt:
    """A new prompt with `prompt`'s settings (COPIED_SETTINGS) and, as its v1, the
    template, model, temperature and examples of `prompt`'s current version; none of
    its variants, runs or history. StudioError names the field; nothing is written."""
    name, slug = _prompt_identity(name=name, slug=slug)
    copy = Prompt(name=name, slug=slug, **{f: getattr(prompt, f) for f in COPIED_SETTINGS})
    source = prompt.current_version
    with transaction.atomic():
        _inserted(copy)
        if source is not None:
            prompt_version_create(
                prompt=copy,
                template=source.template,
                model=source.model,
                temperature=source.temperature,
                author=user,
                note=f"Copied from {source}",
                regenerate=False,
                examples=list(source.examples),
            )
    logger.info("prompt %s (%s) copied from %s by %s", copy.pk, copy.slug, prompt.slug, user)
    return copy
