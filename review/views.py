"""HTML and HTMX views of the review queue. Thin: permission, validate, service, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generation.models import GenerationRun, Variant
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
        .order_by("created", "id")
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
