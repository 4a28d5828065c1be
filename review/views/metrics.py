"""The engagement metrics of a prompt's variants against the base copy (the statistics
are review/metrics.py's): the dashboard, one table as CSV, and flagging the
underperformers now."""

from __future__ import annotations

import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from generation.models import Prompt, Variant
from review import metrics
from review.forms import FlagForm, errors_text
from review.models import Experiment
from review.permissions import is_lead, require_lead, require_reviewer
from review.services import experiments as experiment_services
from review.views import HtmxHttpRequest, partial

# The live slots listed with their experiment on the metrics page; the experiments
# page lists every experiment.
LIVE_SLOTS_SHOWN = 50


def _live_slots(prompt: Prompt) -> list[dict]:
    """The prompt's live segment slots (their published variant), each with the
    experiment running on it, if any: two queries."""
    live = list(
        Variant.objects.published()
        .filter(prompt=prompt, segment__isnull=False, customer__isnull=True)
        .select_related("product", "segment")
        .order_by("product__sku", "segment__slug", "language")[:LIVE_SLOTS_SHOWN]
    )
    running = {
        (e.product_id, e.segment_id, e.language): e
        for e in Experiment.objects.filter(prompt=prompt, status=Experiment.Status.RUNNING)
    }
    return [
        {"variant": v, "experiment": running.get((v.product_id, v.segment_id, v.language))}
        for v in live
    ]


# Running experiments summarised on the metrics page (each costs a few queries and
# its statistics); their own pages show every detail.
EXPERIMENTS_SHOWN = 10


def _experiment_summaries(prompt: Prompt) -> list[experiment_services.Report]:
    """The prompt's running experiments, newest first, each with its analysis."""
    running = Experiment.objects.filter(prompt=prompt, status=Experiment.Status.RUNNING)
    return [
        experiment_services.experiment_report(e)
        for e in running.select_related("product", "segment").order_by("-started", "-id")[
            :EXPERIMENTS_SHOWN
        ]
    ]


def _metrics_context(request: HtmxHttpRequest) -> dict:
    """The chosen prompt's metrics (the first prompt when none is named)."""
    prompts = list(Prompt.objects.only("slug", "name", "holdout_percent").order_by("slug"))
    slug = request.GET.get("prompt", "")
    prompt = next((p for p in prompts if p.slug == slug), None) if slug else None
    if slug and prompt is None:
        raise Http404(f"No prompt '{slug}'")
    prompt = prompt or (prompts[0] if prompts else None)
    data = metrics.prompt_metrics(prompt=prompt) if prompt is not None else None
    return {
        "prompts": prompts,
        "prompt": prompt,
        "m": data,
        "chart": metrics.chart_data(data) if data is not None else None,
        "exports": metrics.EXPORTS,
        "confidence_pct": f"{metrics.confidence_level() * 100:g}%",
        "alpha_pct": f"{(1 - metrics.confidence_level()) * 100:g}%",
        "is_lead": is_lead(request.user),
        "live_slots": _live_slots(prompt) if prompt is not None else [],
        "live_slots_max": LIVE_SLOTS_SHOWN,
        "experiment_reports": _experiment_summaries(prompt) if prompt is not None else [],
    }


@login_required
@require_GET
@vary_on_headers("HX-Request")
def metrics_dashboard(request: HtmxHttpRequest) -> HttpResponse:
    """Engagement against the base copy; read-only for every reviewer."""
    require_reviewer(request)
    context = _metrics_context(request)
    if partial(request):
        return render(request, "review/metrics.html#metrics", context)
    return render(request, "review/metrics.html", context)


@login_required
@require_GET
def metrics_csv(request: HtmxHttpRequest) -> HttpResponse:
    """One table of the dashboard as CSV: ?prompt=<slug>&by=<one of metrics.EXPORTS>."""
    require_reviewer(request)
    by = request.GET.get("by", "variant")
    if by not in metrics.EXPORTS:
        return HttpResponseBadRequest(
            f"Unknown by '{by}': use one of {', '.join(metrics.EXPORTS)}",
            content_type="text/plain; charset=utf-8",
        )
    slug = request.GET.get("prompt", "")
    prompt = Prompt.objects.filter(slug=slug).first() if slug else None
    if prompt is None:
        return HttpResponseBadRequest(
            f"Unknown prompt '{slug}'" if slug else "Name a prompt: ?prompt=<slug>",
            content_type="text/plain; charset=utf-8",
        )
    columns = metrics.export_columns(by)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="metrics-{prompt.slug}-{by}.csv"'
    writer = csv.writer(response)
    writer.writerow(columns)
    for row in metrics.export_rows(metrics.prompt_metrics(prompt=prompt), by):
        writer.writerow([metrics.csv_safe(row.get(c)) for c in columns])
    return response


@login_required
@require_POST
def metrics_flag(request: HtmxHttpRequest) -> HttpResponse:
    """Flag the prompt's underperforming variants now (a task also does it on schedule)."""
    require_lead(request)
    form = FlagForm(request.POST)
    if not form.is_valid():
        raise Http404(errors_text(form))
    prompt = form.cleaned_data["prompt"]
    n = metrics.metrics_flag_underperformers(prompt=prompt)
    messages.success(
        request,
        f"{n} variant{'s' if n != 1 else ''} of {prompt.name} flagged as underperforming",
    )
    return redirect(f"{reverse('review:metrics')}?prompt={prompt.slug}")
