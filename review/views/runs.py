"""Generation runs: the list, starting one after its estimate, following its progress,
and steering it (cancel, resume, retry). Reviewers watch; leads start and steer."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import redis
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generation import services as generation_services
from generation.limiter import endpoint_limiter
from generation.models import GenerationRun, Prompt, Variant
from generation.services import RunError
from hyperpers.errors import ascii_int
from review.permissions import is_lead, require_lead, require_reviewer
from review.views import HtmxHttpRequest


@login_required
@require_GET
def runs(request: HttpRequest) -> HttpResponse:
    require_reviewer(request)
    return render(
        request,
        "review/runs.html",
        {
            "runs": GenerationRun.objects.select_related("prompt_version__prompt")[:50],
            "prompts": Prompt.objects.order_by("slug"),
        },
    )


@login_required
@require_POST
def run_new(request: HtmxHttpRequest) -> HttpResponse:
    """Start a run after showing its estimate: the first POST previews, `confirm` starts."""
    require_lead(request)
    context = {
        "runs": GenerationRun.objects.select_related("prompt_version__prompt")[:50],
        "prompts": Prompt.objects.order_by("slug"),
        "form": request.POST,
    }
    prompt = Prompt.objects.filter(slug=request.POST.get("prompt", "")).first()
    budget_text = request.POST.get("budget", "").strip()
    try:
        if prompt is None:
            raise RunError(f"Unknown prompt '{request.POST.get('prompt', '')}'")
        budget = Decimal(budget_text) if budget_text else None
        if "confirm" in request.POST:
            run = generation_services.run_create(prompt=prompt, budget=budget, user=request.user)
            return redirect("review:run", pk=run.pk)
        context["estimate"] = generation_services.run_estimate_for(prompt=prompt)
    except InvalidOperation:
        context["error"] = f"The budget must be a number of dollars, not '{budget_text}'"
    except RunError as exc:
        context["error"] = str(exc)
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


@login_required
@require_POST
def run_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    require_lead(request)
    run = get_object_or_404(GenerationRun, pk=pk)
    try:
        if action == "cancel":
            generation_services.run_cancel(run=run)
            messages.success(request, f"Run {run.pk} cancelled; queued slots wait for a resume")
        elif action == "resume":
            budget_text = request.POST.get("budget", "").strip()
            budget = Decimal(budget_text) if budget_text else None
            generation_services.run_resume(run=run, budget=budget)
            messages.success(request, f"Run {run.pk} resumed")
        elif action == "retry-failed":
            n = generation_services.run_retry_failed(run=run)
            messages.success(request, f"{n} failed variant{'s' if n != 1 else ''} queued again")
        elif action == "retry-variant":
            pk = ascii_int(request.POST.get("variant", ""), "variant")
            variant = get_object_or_404(Variant, pk=pk, run=run)
            generation_services.variant_retry(variant=variant)
            messages.success(request, f"Variant {variant.pk} queued again")
        else:
            raise Http404(f"No run action '{action}'")
    except InvalidOperation:
        messages.error(request, "The budget must be a number of dollars")
    except RunError as exc:
        messages.error(request, str(exc))
    return redirect("review:run", pk=run.pk)
