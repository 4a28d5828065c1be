"""HTML and HTMX views of the review queue. Thin: permission, validate, service, render."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generation import services as generation_services
from generation.models import GenerationRun, Prompt, Variant
from generation.services import RunError
from review import services

REVIEWER_GROUPS = ("copywriter", "marketing lead")
PAGE_SIZE = 20


def require_reviewer(request: HttpRequest) -> None:
    user = request.user
    if user.is_staff or user.groups.filter(name__in=REVIEWER_GROUPS).exists():
        return
    raise PermissionDenied("Only copywriters, marketing leads and staff review variants")


@login_required
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    require_reviewer(request)
    variants = (
        Variant.objects.in_review()
        .select_related("product", "segment", "customer", "prompt", "prompt_version__prompt")
        .order_by("-checks_failed", "created", "id")
    )
    page = Paginator(variants, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "review/queue.html",
        {
            "page": page,
            "in_review_count": page.paginator.count,
            "runs": GenerationRun.objects.select_related("prompt_version__prompt")[:3],
        },
    )


def _decided(request: HttpRequest, variant: Variant, error: str = "") -> HttpResponse:
    if request.htmx:
        return render(
            request, "review/queue.html#variant-row", {"variant": variant, "error": error}
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"Variant {variant.pk}: {variant.get_status_display()}")
    return redirect("review:queue")


@login_required
@require_POST
def approve(request: HttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    variant = get_object_or_404(Variant, pk=pk)
    text = request.POST.get("text")
    try:
        variant = services.variant_approve(variant=variant, user=request.user, text=text)
    except services.DecisionError as exc:
        variant.refresh_from_db()
        return _decided(request, variant, str(exc))
    return _decided(request, variant)


@login_required
@require_POST
def regenerate(request: HttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    variant = get_object_or_404(Variant, pk=pk)
    try:
        variant = services.variant_request_regeneration(
            variant=variant, user=request.user, note=request.POST.get("note", "")
        )
    except services.DecisionError as exc:
        variant.refresh_from_db()
        return _decided(request, variant, str(exc))
    return _decided(request, variant)


@login_required
@require_POST
def reject(request: HttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    variant = get_object_or_404(Variant, pk=pk)
    try:
        variant = services.variant_reject(
            variant=variant, user=request.user, reason=request.POST.get("reason", "")
        )
    except services.DecisionError as exc:
        variant.refresh_from_db()
        return _decided(request, variant, str(exc))
    return _decided(request, variant)


def require_lead(request: HttpRequest) -> None:
    user = request.user
    if user.is_staff or user.groups.filter(name="marketing lead").exists():
        return
    raise PermissionDenied("Only marketing leads and staff start and steer runs")


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
def run_new(request: HttpRequest) -> HttpResponse:
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
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    run = get_object_or_404(GenerationRun.objects.select_related("prompt_version__prompt"), pk=pk)
    failures = (
        Variant.objects.filter(run=run, status=Variant.Status.FAILED)
        .select_related("product", "segment")
        .order_by("pk")[:50]
    )
    template = "review/run.html#run-progress" if request.htmx else "review/run.html"
    is_lead = request.user.is_staff or request.user.groups.filter(name="marketing lead").exists()
    return render(request, template, {"run": run, "failures": failures, "is_lead": is_lead})


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
            variant = get_object_or_404(Variant, pk=request.POST.get("variant"), run=run)
            generation_services.variant_retry(variant=variant)
            messages.success(request, f"Variant {variant.pk} queued again")
        else:
            raise Http404(f"No run action '{action}'")
    except InvalidOperation:
        messages.error(request, "The budget must be a number of dollars")
    except RunError as exc:
        messages.error(request, str(exc))
    return redirect("review:run", pk=run.pk)
