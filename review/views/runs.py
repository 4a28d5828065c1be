"""Generation runs: the list, starting one after its estimate, following its progress,
and steering it (cancel, resume, retry). Reviewers watch; leads start and steer."""

from __future__ import annotations

import redis
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generation import services as generation_services
from generation.errors import ServiceError
from generation.limiter import endpoint_limiter
from generation.models import GenerationRun, Prompt, Variant
from review.forms import BudgetForm, RetryVariantForm, RunForm, add_service_error, errors_text
from review.permissions import is_lead, require_lead, require_reviewer
from review.views import HtmxHttpRequest


def _runs_context(form: RunForm) -> dict:
    return {
        "runs": GenerationRun.objects.select_related("prompt_version__prompt")[:50],
        "prompts": Prompt.objects.order_by("slug"),
        "form": form,
    }


@login_required
@require_GET
def runs(request: HtmxHttpRequest) -> HttpResponse:
    require_reviewer(request)
    return render(request, "review/runs.html", _runs_context(RunForm()))


@login_required
@require_POST
def run_new(request: HtmxHttpRequest) -> HttpResponse:
    """Start a run after showing its estimate: the first POST previews, `confirm` starts."""
    require_lead(request)
    form = RunForm(request.POST)
    context = _runs_context(form)
    if form.is_valid():
        prompt, budget = form.cleaned_data["prompt"], form.cleaned_data["budget"]
        try:
            if form.cleaned_data["confirm"]:
                run = generation_services.run_create(
                    prompt=prompt, budget=budget, user=request.user
                )
                return redirect("review:run", pk=run.pk)
            context["estimate"] = generation_services.run_estimate_for(prompt=prompt)
        except ServiceError as exc:
            add_service_error(form, exc)
    template = "review/runs.html#new-run" if request.htmx else "review/runs.html"
    return render(request, template, context)


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
