"""Generation runs: the list, the run builder (scope, live estimate, budget, start),
following a run's progress, and steering it (cancel, resume, retry). Reviewers watch;
leads build, start and steer."""

from __future__ import annotations

import itertools
from collections import Counter
from decimal import Decimal
from typing import Any

import redis
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from generation import pricing, prompting
from generation import services as generation_services
from generation.errors import ServiceError
from generation.limiter import endpoint_limiter
from generation.models import Customer, GenerationRun, Product, Prompt, Segment, Variant
from generation.services import messages as gen_messages
from review.forms import (
    Audience,
    BudgetForm,
    RetryVariantForm,
    RunForm,
    add_service_error,
    errors_text,
)
from review.permissions import is_lead, require_lead, require_reviewer
from review.views import HtmxHttpRequest, partial


@login_required
@require_GET
def runs(request: HtmxHttpRequest) -> HttpResponse:
    require_reviewer(request)
    return render(
        request,
        "review/runs.html",
        {"runs": GenerationRun.objects.select_related("prompt_version__prompt")[:50]},
    )


# --- the run builder -----------------------------------------------------------------

# The fields whose errors the builder shows beside them; an estimate's answer swaps
# each one's region (hx-swap-oob), so a refusal appears where the lead is looking.
BUILDER_FIELDS = (
    "prompt",
    "audience",
    "category",
    "subcategory",
    "search",
    "products",
    "segments",
    "product",
    "purpose",
    "customers",
    "customer_segment",
    "budget",
    "__all__",  # a refusal about the run as a whole (the endpoint's)
)


def _builder_choices() -> dict:
    """What the builder offers: prompts (with their current version), categories and
    subcategories with their product counts, segments with their member counts. Three
    GROUP BYs and a list, whatever the catalog's size."""
    categories = (
        Product.objects.order_by("category").values_list("category").annotate(n=Count("id"))
    )
    subcategories = (
        Product.objects.exclude(subcategory="")
        .order_by("subcategory")
        .values_list("subcategory")
        .annotate(n=Count("id"))
    )
    return {
        "prompts": Prompt.objects.annotate(version=Max("versions__number")).order_by("name"),
        "categories": [(c, n) for c, n in categories if c],
        "subcategories": list(subcategories),
        "segments": Segment.objects.order_by("name").only("slug", "name", "member_count"),
        "audiences": Audience.choices,
    }


def _matches(form: RunForm) -> tuple[int, bool] | None:
    """How many products the builder's product fields pick, and whether they are a
    listed set (True) or the filters' matches; None when those fields are in error."""
    if not form.is_bound:
        return Product.objects.count(), False
    cleaned = form.cleaned_data
    if isinstance(cleaned.get("products"), list):
        return len(cleaned["products"]), bool(cleaned.get("listed"))
    if {"category", "subcategory", "search", "products"} & set(form.errors):
        return None
    if cleaned.get("products"):
        return None  # listed SKUs, not read (a one-to-one run): nothing to count
    return form.matching_products().count(), False


def _estimate(form: RunForm) -> generation_services.RunEstimate:
    """The estimate of the run a valid builder form describes. Segment runs take the
    run service's own estimate (generation.services.run_estimate, as the REST API's
    /runs/estimate/); one-to-one runs, which that service does not estimate, sample
    their customers' messages the same way (_message_estimate)."""
    cleaned = form.cleaned_data
    version, prompt = cleaned["version"], cleaned["prompt"]
    if cleaned["audience"] == Audience.CUSTOMERS:
        return _message_estimate(form)
    products, segments = cleaned["products"], cleaned["segments"]
    todo = generation_services.queued_slots(version, products, segments)
    return generation_services.run_estimate(
        version=version,
        products=products,
        audiences=generation_services.segment_slots(prompt, segments),
        slots=len(todo),
        per_language=Counter(language for _p, _s, language in todo),
    )


# Customers of a segment read to sample its messages: a segment's members are known
# only by reading customers (segment_members reads them all when the run starts).
MESSAGE_SAMPLE_SCAN = 2000


def _message_estimate(form: RunForm) -> generation_services.RunEstimate:
    """A one-to-one run's estimate: one message per customer who has none for this
    version, product and purpose (a segment's: its member count, an upper bound),
    the prompt tokens of a sample of them rendered, the completion at the length
    limit, priced as a segment run's."""
    cleaned = form.cleaned_data
    version, prompt, product = cleaned["version"], cleaned["prompt"], cleaned["product"]
    purpose = " ".join(cleaned["purpose"].split())  # as the service keeps it
    customers: list[Customer] | None = cleaned["customers"]
    if customers is not None:
        done = set(
            Variant.objects.filter(
                prompt_version=version, product=product, purpose=purpose, customer__isnull=False
            ).values_list("customer_id", flat=True)
        )
        todo = [c for c in customers if c.pk not in done]
        slots, sample = len(todo), todo[: generation_services.ESTIMATE_SAMPLES]
        per_language = Counter(c.language for c in todo)
    else:
        segment: Segment = cleaned["customer_segment"]
        slots = segment.member_count
        read = Customer.objects.only("id", "external_id", "language", "attributes")
        members = (c for c in read[:MESSAGE_SAMPLE_SCAN] if segment.matches(c.segment_attributes()))
        sample = list(itertools.islice(members, generation_services.ESTIMATE_SAMPLES))
        per_language = Counter(
            {tag: round(share * slots) for tag, share in segment.language_shares().items()}
        )
    languages = tuple(sorted(per_language.items(), key=lambda t: -t[1]))
    if not slots or not sample:
        return generation_services.RunEstimate(
            slots, 0, 0, None if slots else Decimal(0), languages
        )
    per_message = sum(
        pricing.estimate_tokens(m["content"])
        for customer in sample
        for m in prompting.render(
            version=version,
            prompt=prompt,
            brand=prompt.brand,
            product=product,
            customer=customer,
            purpose=purpose,
        ).messages
    ) / len(sample)
    prompt_tokens = round(per_message * slots)
    completion_tokens = pricing.estimate_completion_tokens(prompt.max_length) * slots
    cost = pricing.cost(
        model=version.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
    )
    return generation_services.RunEstimate(slots, prompt_tokens, completion_tokens, cost, languages)


def _builder_context(form: RunForm, *, estimate: bool) -> dict:
    """The builder's page or regions: the form, what it offers, how many products
    match, and (`estimate`, a valid form) the estimate or the service's refusal."""
    valid = form.is_valid()  # False for an unbound form, which shows no errors
    context: dict[str, Any] = {
        "form": form,
        "matches": _matches(form),
        "field_errors": [(name, form.errors.get(name, [])) for name in BUILDER_FIELDS],
        "estimate": None,
    }
    if estimate and valid:
        try:
            context["estimate"] = _estimate(form)
        except ServiceError as exc:
            add_service_error(form, exc)
            context["field_errors"] = [(name, form.errors.get(name, [])) for name in BUILDER_FIELDS]
    return context


def _start(form: RunForm, user) -> GenerationRun:
    """Start the run the valid form describes, through the run or message service."""
    cleaned = form.cleaned_data
    if cleaned["audience"] == Audience.CUSTOMERS:
        return gen_messages.message_run_create(
            prompt=cleaned["prompt"],
            product=cleaned["product"],
            purpose=cleaned["purpose"],
            customers=cleaned["customers"],
            segment=None if cleaned["customers"] is not None else cleaned["customer_segment"],
            user=user,
        )
    return generation_services.run_create(
        prompt=cleaned["prompt"],
        products=cleaned["products"],
        segments=cleaned["segments"],
        budget=cleaned["budget"],
        user=user,
    )


@login_required
@require_http_methods(["GET", "POST"])
def run_new(request: HtmxHttpRequest) -> HttpResponse:
    """The run builder. GET: the empty builder (?prompt=<slug> picks the prompt).
    POST: with `confirm`, start the run and go to its page; without (the page's
    Estimate button, for browsers without scripts), show the estimate. A refused
    start writes nothing and shows why beside the field."""
    require_lead(request)
    if request.method == "GET":
        form = RunForm(initial={"prompt": request.GET.get("prompt", ""), "audience": "segments"})
        context = _builder_context(form, estimate=False)
    else:
        form = RunForm(request.POST)
        if form.is_valid() and form.cleaned_data["confirm"]:
            try:
                run = _start(form, request.user)
            except ServiceError as exc:
                add_service_error(form, exc)
            else:
                url = reverse("review:run", args=[run.pk])
                return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
        context = _builder_context(form, estimate=not form.errors)
    context.update(_builder_choices())
    template = (
        "review/run_builder.html#run-builder" if partial(request) else "review/run_builder.html"
    )
    return render(request, template, context)


@login_required
@require_GET
def run_estimate(request: HtmxHttpRequest) -> HttpResponse:
    """The builder's live estimate, asked as the scope changes: the estimate region,
    the products' match count and each field's errors (out of band). Writes nothing."""
    require_lead(request)
    form = RunForm(request.GET)
    return render(
        request, "review/run_builder.html#estimate-answer", _builder_context(form, estimate=True)
    )


@login_required
@require_GET
def run_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    run = get_object_or_404(GenerationRun.objects.select_related("prompt_version__prompt"), pk=pk)
    failures = (
        Variant.objects.filter(run=run, status=Variant.Status.FAILED)
        .select_related("product", "segment")
        .order_by("pk")[:50]
    )
    # Where the run's variants are now (in review, published, rejected...): one GROUP BY.
    by_status = dict(
        Variant.objects.filter(run=run).order_by().values_list("status").annotate(n=Count("id"))
    )
    statuses = [
        (label, by_status[value]) for value, label in Variant.Status.choices if value in by_status
    ]
    by_reason = dict(
        Variant.objects.filter(run=run, status=Variant.Status.FAILED)
        .order_by()
        .values_list("failure_reason")
        .annotate(n=Count("id"))
    )
    reasons = [
        (value, Variant.FailureReason(value).label if value in Variant.FailureReason else value, n)
        for value, n in sorted(by_reason.items(), key=lambda kv: -kv[1])
    ]
    template = "review/run.html#run-progress" if request.htmx else "review/run.html"
    lead = is_lead(request.user)
    return render(
        request,
        template,
        {
            "run": run,
            "failures": failures,
            "is_lead": lead,
            "statuses": statuses,
            "reasons": reasons,
            "concurrency": _concurrency_line(),
        },
    )


def _concurrency_line() -> str:
    """The endpoint's concurrency cap in force and why (shared by all workers, in Redis)."""
    try:
        return str(endpoint_limiter().state())
    except redis.RedisError as exc:
        return f"unknown: Redis is unreachable ({exc.__class__.__name__})"


RUN_ACTIONS = ("cancel", "resume", "retry-failed", "retry-variant")


def _action_form(action: str, data: QueryDict, run: GenerationRun) -> forms.Form:
    if action == "resume":
        return BudgetForm(data)
    if action == "retry-variant":
        return RetryVariantForm(data, run=run)
    return forms.Form(data)  # cancel and retry-failed send nothing


@login_required
@require_POST
def run_action(request: HtmxHttpRequest, pk: int, action: str) -> HttpResponse:
    """Cancel, resume (with a new budget), retry the failed variants, or one of them.
    The run page shows what happened as a message."""
    require_lead(request)
    run = get_object_or_404(GenerationRun, pk=pk)
    if action not in RUN_ACTIONS:
        raise Http404(f"No run action '{action}'")
    form = _action_form(action, request.POST, run)
    if not form.is_valid():
        messages.error(request, errors_text(form, labels=False))
        return redirect("review:run", pk=run.pk)
    try:
        if action == "cancel":
            generation_services.run_cancel(run=run)
            messages.success(request, f"Run {run.pk} cancelled; queued slots wait for a resume")
        elif action == "resume":
            generation_services.run_resume(run=run, budget=form.cleaned_data["budget"])
            messages.success(request, f"Run {run.pk} resumed")
        elif action == "retry-failed":
            n = generation_services.run_retry_failed(run=run)
            messages.success(request, f"{n} failed variant{'s' if n != 1 else ''} queued again")
        else:
            variant = form.cleaned_data["variant"]
            generation_services.variant_retry(variant=variant)
            messages.success(request, f"Variant {variant.pk} queued again")
    except ServiceError as exc:
        messages.error(request, str(exc))
    return redirect("review:run", pk=run.pk)
