"""The marketing lead's side: the brands (list, new, edit), the prompt list, a new
prompt from a starter template (generation/starters.py) or a copy of another, and the
prompt studio (preview, try on samples, impact, save, history and rollback).

Every view is for marketing leads and staff. Preview, try and impact write nothing;
save and rollback go through generation.services and regenerate the prompt's slots.
The studio's editor is one HTML form, read by review.forms: DraftForm, PreviewForm
(the slot Preview renders), SampleFormSet (the rows Try writes) and ExamplesForm.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max, OuterRef, Subquery
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from generation import pricing, services, starters
from generation.errors import ServiceError
from generation.models import Brand, Product, Prompt, PromptVersion, Segment, Variant
from generation.prompting import OUTPUT_RULES, PLACEHOLDERS, PromptTemplateError
from generation.prompting import template_placeholders as placeholders_in
from generation.services import prompts as prompt_services
from review import metrics
from review.forms import (
    BrandNameForm,
    DraftForm,
    ExamplesForm,
    PreviewForm,
    PromptDuplicateForm,
    PromptNewForm,
    SampleFormSet,
    add_service_error,
    errors_text,
)
from review.permissions import require_lead
from review.views import HtmxHttpRequest, partial

STUDIO_ERRORS = (PromptTemplateError, ServiceError)
# Products offered as suggestions beside the SKU fields; any SKU can be typed.
PRODUCT_SUGGESTIONS = 500
HISTORY_SIZE = 50
# Best performers offered as examples for the next version.
BEST_PERFORMERS = 8


# --- Brands -------------------------------------------------------------------------------


def _brand_form(brand: Brand) -> BrandNameForm:
    return BrandNameForm(
        initial={
            "name": brand.name,
            "voice": brand.voice,
            "banned_phrases": "\n".join(
                [
                    *brand.banned_phrases,
                    *(
                        f"[{tag}] {phrase}"
                        for tag, phrases in sorted((brand.banned_phrases_by_language or {}).items())
                        for phrase in phrases
                    ),
                ]
            ),
            "protected_terms": "\n".join(brand.protected_terms),
        }
    )


def _brand_url(brand: Brand) -> str:
    return f"{reverse('review:brand')}?brand={brand.pk}"


@login_required
@require_http_methods(["GET", "POST"])
def brand_edit(request: HtmxHttpRequest) -> HttpResponse:
    """Every brand, and the chosen one's name, voice and word lists to edit. An empty
    instance is sent to create its first brand."""
    require_lead(request)
    brands = list(Brand.objects.annotate(prompt_count=Count("prompts")).order_by("name"))
    if not brands:
        if request.method == "GET":
            return redirect("review:brand-new")
        raise Http404("No brand yet: create one first")
    chosen = request.POST.get("brand") or request.GET.get("brand")
    brand = next((b for b in brands if str(b.pk) == chosen), brands[0])
    saved = False
    if request.method == "POST":
        form = BrandNameForm(request.POST)
        old_name = brand.name
        if form.is_valid():
            try:
                services.brand_update(brand=brand, user=request.user, **form.cleaned_data)
            except services.BrandError as exc:
                add_service_error(form, exc)
            else:
                if not request.htmx or brand.name != old_name:
                    # A new name shows in the list too: the whole page, not the form.
                    messages.success(request, f"Saved the brand {brand.name}")
                    if request.htmx:
                        return HttpResponseClientRedirect(_brand_url(brand))
                    return redirect(_brand_url(brand))
                form, saved = _brand_form(brand), True
    else:
        form = _brand_form(brand)
    context = {
        "brand": brand,
        "brands": brands,
        "form": form,
        "saved": saved,
        "output_rules": OUTPUT_RULES,
        "prompts": brand.prompts.order_by("slug"),
    }
    template = "review/brand.html#brand-form" if request.htmx else "review/brand.html"
    return render(request, template, context)


@login_required
@require_http_methods(["GET", "POST"])
def brand_new(request: HtmxHttpRequest) -> HttpResponse:
    """A new brand: its name, voice and word lists; then its page."""
    require_lead(request)
    form = BrandNameForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            brand = prompt_services.brand_create(user=request.user, **form.cleaned_data)
        except services.BrandError as exc:
            add_service_error(form, exc)
        else:
            messages.success(
                request, f"Created the brand {brand.name}: its prompts now write in its voice"
            )
            return redirect(_brand_url(brand))
    context = {"form": form, "output_rules": OUTPUT_RULES, "has_brands": Brand.objects.exists()}
    return render(request, "review/brand_new.html", context, status=400 if form.is_bound else 200)


# --- Prompt list ------------------------------------------------------------------------


@login_required
@require_GET
def prompt_list(request: HtmxHttpRequest) -> HttpResponse:
    require_lead(request)
    current = PromptVersion.objects.filter(prompt=OuterRef("pk")).order_by("-number")
    prompts = list(
        Prompt.objects.select_related("brand")
        .annotate(
            current_number=Max("versions__number"),
            current_model=Subquery(current.values("model")[:1]),
        )
        .order_by("slug")
    )
    counts: dict[int, dict[str, int]] = {}
    for row in (
        Variant.objects.filter(status__in=[Variant.Status.IN_REVIEW, Variant.Status.PUBLISHED])
        .values("prompt_id", "status")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        counts.setdefault(row["prompt_id"], {})[row["status"]] = row["n"]
    listed = [(prompt, counts.get(prompt.pk, {})) for prompt in prompts]
    return render(request, "review/studio_list.html", {"prompts": listed})


# --- New prompts: from a starter, or a copy ------------------------------------------------


def _free_slug(base: str) -> str:
    """`base`, or `base-2`, `base-3`... whichever no prompt has yet (a suggestion: the
    service still refuses a slug taken by the time the form is sent)."""
    base = base[: prompt_services.PROMPT_SLUG_MAX - 4]
    taken = set(Prompt.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    taken |= prompt_services.RESERVED_PROMPT_SLUGS
    slug, number = base, 1
    while slug in taken:
        number += 1
        slug = f"{base}-{number}"
    return slug


def _starter_form(starter: starters.Starter, kept: dict) -> PromptNewForm:
    """The new prompt's form filled from a starter; the brand, model and languages the
    lead already chose (`kept`, from the query string) stay as they were."""
    brand = kept.get("brand") or Brand.objects.order_by("name").values_list("pk", flat=True).first()
    return PromptNewForm(
        initial={
            "starter": starter.key,
            "name": starter.name,
            "slug": _free_slug(starter.slug),
            "brand": brand,
            "channel": starter.channel,
            "max_length": starter.max_length,
            "model": kept.get("model") or settings.LLM_DEFAULT_MODEL,
            "languages": kept.get("languages", ""),
            "template": starter.template,
        }
    )


@login_required
@require_http_methods(["GET", "POST"])
def prompt_new(request: HtmxHttpRequest) -> HttpResponse:
    """Create a prompt from a starter template, then edit it in the studio.

    GET ?starter=<key> fills the form from that starter (HTMX swaps the form alone);
    POST creates the prompt and its v1 through the services, or shows why not beside
    the field, having written nothing.
    """
    require_lead(request)
    if request.method == "POST":
        form = PromptNewForm(request.POST)
        chosen = starters.starter(request.POST.get("starter", ""))
        if form.is_valid():
            data = dict(form.cleaned_data)
            data.pop("starter")
            try:
                prompt = prompt_services.prompt_create(
                    user=request.user,
                    note=f"From the starter '{chosen.title}'" if chosen else "",
                    **data,
                )
            except ServiceError as exc:
                add_service_error(form, exc)
            else:
                messages.success(
                    request,
                    f"Created {prompt.name} with its v1. Preview it on a sample, try it, "
                    "then start a run.",
                )
                return redirect("review:studio", slug=prompt.slug)
        status = 400
    else:
        chosen = starters.starter(request.GET.get("starter", "")) or starters.STARTERS[0]
        form, status = _starter_form(chosen, request.GET.dict()), 200
    context = {
        "form": form,
        "starters": starters.STARTERS,
        "chosen": chosen,
        "has_brands": Brand.objects.exists(),
        "models": sorted(settings.LLM_PRICES),
        "placeholders": list(PLACEHOLDERS.items()),
    }
    template = "review/prompt_new.html#prompt-new" if partial(request) else "review/prompt_new.html"
    return render(request, template, context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def prompt_copy(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Duplicate a prompt under a new name and slug: its settings and its current
    version's template, model and examples; none of its variants."""
    require_lead(request)
    prompt = _prompt(slug)
    if request.method == "POST":
        form = PromptDuplicateForm(request.POST)
        if form.is_valid():
            try:
                copy = prompt_services.prompt_duplicate(
                    prompt=prompt, user=request.user, **form.cleaned_data
                )
            except ServiceError as exc:
                add_service_error(form, exc)
            else:
                messages.success(request, f"Created {copy.name}, a copy of {prompt.name}")
                return redirect("review:studio", slug=copy.slug)
        status = 400
    else:
        initial = {"name": f"{prompt.name} (copy)", "slug": _free_slug(f"{prompt.slug}-copy")}
        form, status = PromptDuplicateForm(initial=initial), 200
    context = {"prompt": prompt, "current": prompt.current_version, "form": form}
    return render(request, "review/prompt_duplicate.html", context, status=status)


# --- Prompt studio -----------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEntry:
    version: PromptVersion
    previous: PromptVersion | None
    diff: list[tuple[str, str]]  # (kind, line): kind is add, del, hunk or same
    changes: list[str]  # model and temperature changes, in words
    can_roll_back: bool  # not the current version, nor the same as it


def version_diff(older: PromptVersion | None, newer: PromptVersion) -> list[tuple[str, str]]:
    """The template's unified diff from `older` to `newer`, line by line with its kind."""
    if older is None:
        return []
    kinds = {"+": "add", "-": "del", "@": "hunk", " ": "same"}
    lines = difflib.unified_diff(
        older.template.splitlines(), newer.template.splitlines(), lineterm="", n=2
    )
    return [(kinds.get(line[:1], "same"), line) for line in lines if line[:3] not in ("---", "+++")]


def _history(prompt: Prompt) -> list[HistoryEntry]:
    versions = list(
        prompt.versions.select_related("author").order_by("-number")[: HISTORY_SIZE + 1]
    )
    entries = []

    def writes(v: PromptVersion) -> tuple:
        return (v.template, v.model, v.temperature)

    for version, previous in zip(versions, [*versions[1:], None], strict=True):
        changes = []
        if previous is not None and previous.model != version.model:
            changes.append(f"model {previous.model} → {version.model}")
        if previous is not None and previous.temperature != version.temperature:
            changes.append(f"temperature {previous.temperature} → {version.temperature}")
        entries.append(
            HistoryEntry(
                version,
                previous,
                version_diff(previous, version),
                changes,
                can_roll_back=writes(version) != writes(versions[0]),
            )
        )
    return entries[:HISTORY_SIZE]


def _prompt(slug: str) -> Prompt:
    return get_object_or_404(Prompt.objects.select_related("brand"), slug=slug)


def _initial_form(prompt: Prompt) -> DraftForm:
    current = prompt.current_version
    return DraftForm(
        initial={
            "template": current.template if current else "",
            "model": current.model if current else settings.LLM_DEFAULT_MODEL,
            "temperature": current.temperature if current else 0.7,
            "note": "",
        }
    )


def _examples_context(prompt: Prompt, examples: ExamplesForm) -> dict:
    """The examples section: the current version's, and the best performers to add,
    ticked as `examples` has them."""
    old, kept, chosen = examples.current_examples, examples.kept(), examples.chosen()
    best = [
        (row, variant.text.strip() in old, str(variant.pk) in chosen)
        for row in metrics.best_performers(prompt=prompt, limit=BEST_PERFORMERS)
        if (variant := row.variant) is not None
    ]
    return {
        "examples_form": examples,
        "current_examples": [(i, text, str(i) in kept) for i, text in enumerate(old)],
        "best_performers": best,
        "examples_max": services.EXAMPLES_MAX,
        "metrics_min_impressions": metrics.min_impressions(),
    }


def _preview_initial(prompt: Prompt) -> dict:
    """A new page previews the first of the samples Try would pick."""
    first = services.prompt_sample_pairs(prompt=prompt, count=1)
    return (
        {"preview_product": first[0][0].sku, "preview_segment": first[0][1].slug} if first else {}
    )


def _studio_context(prompt: Prompt, form: DraftForm, read: dict) -> dict:
    """The whole page. The editor's forms are those the action read (in `read`); the
    others are bound to what was posted with the draft, so that the page shows what was
    typed, or fresh when the draft is."""
    data = form.data if form.is_bound else None
    if "preview_form" in read:
        preview = read["preview_form"]
    else:
        preview = PreviewForm(data, initial=None if form.is_bound else _preview_initial(prompt))
    samples = read["samples"] if "samples" in read else SampleFormSet(data)
    if "examples_form" in read:
        examples = read["examples_form"]
    else:
        examples = ExamplesForm(data, prompt=prompt)
    template = form["template"].value() or ""
    try:
        used = set(placeholders_in(template))
    except PromptTemplateError:
        used = set()
    history = _history(prompt)
    return {
        "prompt": prompt,
        "form": form,
        "current": history[0].version if history else None,
        "history": history,
        "placeholders": [(name, text, name in used) for name, text in PLACEHOLDERS.items()],
        "segments": Segment.objects.order_by("-member_count", "slug"),
        "products": Product.objects.order_by("sku").only("sku", "name")[:PRODUCT_SUGGESTIONS],
        "models": sorted(settings.LLM_PRICES),
        "preview_form": preview,
        "samples": samples,
        "max_samples": services.TRY_MAX_SAMPLES,
        **_examples_context(prompt, examples),
    }


def _respond(
    request: HtmxHttpRequest, prompt: Prompt, form: DraftForm, partial: str, context: dict
) -> HttpResponse:
    """The partial (named after its hx-target id) to HTMX, else the whole studio page."""
    if request.htmx:
        return render(
            request, f"review/studio.html#{partial}", {"prompt": prompt, "form": form, **context}
        )
    return render(
        request, "review/studio.html", {**_studio_context(prompt, form, context), **context}
    )


def _joined(*errors: str) -> str:
    """The errors of the forms an action read, in one line for the region it swaps."""
    return "; ".join(e for e in errors if e)


@login_required
@require_GET
def studio(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    require_lead(request)
    prompt = _prompt(slug)
    form = _initial_form(prompt)
    return render(request, "review/studio.html", _studio_context(prompt, form, {}))


@login_required
@require_POST
def studio_preview(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    require_lead(request)
    prompt = _prompt(slug)
    form = DraftForm(request.POST)  # not read: only shown again on the whole page
    preview = PreviewForm(request.POST)
    examples = ExamplesForm(request.POST, prompt=prompt)
    context: dict = {"preview_form": preview, "examples_form": examples}
    if not all([preview.is_valid(), examples.is_valid()]):
        context["preview_error"] = _joined(
            errors_text(preview, labels=False), errors_text(examples, labels=False)
        )
        return _respond(request, prompt, form, "preview", context)
    template, (product, segment) = preview.cleaned_data["template"], preview.cleaned_data["slot"]
    chosen = examples.cleaned_data["examples"]
    try:
        rendered = services.prompt_preview(
            prompt=prompt, template=template, product=product, segment=segment, examples=chosen
        )
        context |= {
            "rendered": rendered,
            "preview_slot": (product, segment),
            "preview_tokens": sum(pricing.estimate_tokens(m["content"]) for m in rendered.messages),
            "prefix": services.prompt_prefix_share(
                prompt=prompt, template=template, product=product, examples=chosen
            ),
        }
    except STUDIO_ERRORS as exc:
        context["preview_error"] = str(exc)
    return _respond(request, prompt, form, "preview", context)


@login_required
@require_POST
def studio_try(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    require_lead(request)
    prompt = _prompt(slug)
    form = DraftForm(request.POST)
    samples = SampleFormSet(request.POST)
    examples = ExamplesForm(request.POST, prompt=prompt)
    context: dict = {"samples": samples, "examples_form": examples}
    if not all([form.is_valid(), samples.is_valid(), examples.is_valid()]):
        context["try_error"] = _joined(
            errors_text(form), *samples.messages(), errors_text(examples, labels=False)
        )
        return _respond(request, prompt, form, "try-results", context)
    try:
        context["results"] = services.prompt_try(
            prompt=prompt,
            template=form.cleaned_data["template"],
            model=form.cleaned_data["model"],
            temperature=form.cleaned_data["temperature"],
            pairs=samples.pairs,
            examples=examples.cleaned_data["examples"],
        )
    except STUDIO_ERRORS as exc:
        context["try_error"] = str(exc)
    return _respond(request, prompt, form, "try-results", context)


@login_required
@require_POST
def studio_impact(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The first step of a save: what it would regenerate and cost, and the Save button."""
    require_lead(request)
    prompt = _prompt(slug)
    form = DraftForm(request.POST)
    examples = ExamplesForm(request.POST, prompt=prompt)
    context: dict = {"examples_form": examples}
    if not all([form.is_valid(), examples.is_valid()]):
        context["impact_error"] = _joined(errors_text(form), errors_text(examples, labels=False))
        return _respond(request, prompt, form, "impact", context)
    chosen = examples.cleaned_data["examples"]
    try:
        context["impact"] = services.prompt_impact(
            prompt=prompt,
            template=form.cleaned_data["template"],
            model=form.cleaned_data["model"],
            temperature=form.cleaned_data["temperature"],
            examples=chosen,
        )
    except STUDIO_ERRORS as exc:
        context["impact_error"] = str(exc)
    else:
        context["impact_examples"] = services.prompt_examples(prompt=prompt, examples=chosen)
    return _respond(request, prompt, form, "impact", context)


def _saved(request: HtmxHttpRequest, prompt: Prompt, version: PromptVersion) -> HttpResponse:
    """Off to the regeneration run, so the lead sees the new variants arrive."""
    run = version.runs.order_by("-pk").first()
    if run is not None:
        slots = f"{run.total} slot{'s' if run.total != 1 else ''}"
        messages.success(request, f"Saved {version}; run {run.pk} regenerates {slots}")
        url = reverse("review:run", args=[run.pk])
    else:
        messages.success(request, f"Saved {version}; there were no variants to regenerate")
        url = reverse("review:studio", args=[prompt.slug])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
@require_POST
def studio_save(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    require_lead(request)
    prompt = _prompt(slug)
    form = DraftForm(request.POST)
    examples = ExamplesForm(request.POST, prompt=prompt)
    context: dict = {"examples_form": examples}
    if not all([form.is_valid(), examples.is_valid()]):
        context["impact_error"] = _joined(errors_text(form), errors_text(examples, labels=False))
        return _respond(request, prompt, form, "impact", context)
    try:
        version = services.prompt_save(
            prompt=prompt,
            user=request.user,
            examples=examples.cleaned_data["examples"],
            **form.cleaned_data,
        )
    except STUDIO_ERRORS as exc:
        context["impact_error"] = str(exc)
        return _respond(request, prompt, form, "impact", context)
    return _saved(request, prompt, version)


@login_required
@require_POST
def studio_rollback(request: HtmxHttpRequest, slug: str, number: int) -> HttpResponse:
    """Roll back in two steps like a save: first the impact, then `confirm` saves."""
    require_lead(request)
    prompt = _prompt(slug)
    version = get_object_or_404(PromptVersion, prompt=prompt, number=number)
    # The editor keeps what was typed in it when it sent this; a history form sends nothing.
    form = DraftForm(request.POST) if "template" in request.POST else _initial_form(prompt)
    context: dict = {"rollback": version}
    try:
        if "confirm" in request.POST:
            new = services.prompt_rollback(prompt=prompt, version=version, user=request.user)
            return _saved(request, prompt, new)
        context["impact"] = services.prompt_impact(
            prompt=prompt,
            template=version.template,
            model=version.model,
            temperature=version.temperature,
            examples=list(version.examples),
        )
        context["impact_examples"] = list(version.examples)
    except STUDIO_ERRORS as exc:
        context["impact_error"] = str(exc)
    return _respond(request, prompt, form, "impact", context)
