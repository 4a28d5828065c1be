"""Experiments: the list, one experiment's page (arms, comparisons with the control,
the sample-ratio check, decisions, wear-out, the share history, what each method
means), and the lead's actions: start one from a variant's focus view, pause or resume
an arm, stop (publishing a variant or keeping the live one).

Reviewers read; leads act. The numbers come from review/services/experiments.py
(experiment_report), the words from review/experiments/explain.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from generation.errors import ServiceError
from generation.models import Prompt, Variant
from review.experiments import explain, stats
from review.forms import (
    ArmActionForm,
    BudgetForm,
    ExperimentStartForm,
    ExperimentStopForm,
    add_service_error,
    errors_text,
)
from review.models import Experiment, ReviewEvent
from review.permissions import is_lead, require_lead, require_reviewer
from review.services import experiments as svc
from review.views import HtmxHttpRequest
from review.views.queue import focus_page

ARM_ACTIONS = ("pause", "resume")
EXPERIMENT_ACTIONS = [a for a in ReviewEvent.Action.values if a.startswith("exp_")]


@login_required
@require_GET
def experiment_list(request: HtmxHttpRequest) -> HttpResponse:
    """Every experiment, running first, newest first; ?prompt=<slug> narrows."""
    require_reviewer(request)
    experiments = Experiment.objects.select_related(
        "prompt", "product", "segment", "started_by"
    ).order_by("status", "-started", "-id")  # "running" sorts before "stopped"
    slug = request.GET.get("prompt", "")
    prompt = Prompt.objects.filter(slug=slug).first() if slug else None
    if slug and prompt is None:
        raise Http404(f"No prompt '{slug}'")
    if prompt is not None:
        experiments = experiments.filter(prompt=prompt)
    return render(
        request,
        "review/experiments.html",
        {"experiments": experiments[:200], "prompt": prompt},
    )


@dataclass(frozen=True)
class Bar:
    """Where an interval sits on the page's common scale, in percent of the width."""

    left: float
    width: float
    estimate: float


def _scale(rows: list[svc.ArmReport]) -> tuple[float, float]:
    """One scale for every interval on the page, 0 included, so bars compare."""
    ends = [0.0]
    for row in rows:
        c = row.comparison
        if c is not None and c.low is not None and c.high is not None:
            ends += [c.low, c.high]
    low, high = min(ends), max(ends)
    margin = (high - low) * 0.05 or 0.01
    return low - margin, high + margin


def _bar(low: float, high: float, estimate: float, scale: tuple[float, float]) -> Bar:
    start, end = scale

    def at(x: float) -> float:
        return round(min(100.0, max(0.0, (x - start) / (end - start) * 100)), 2)

    return Bar(at(low), max(0.5, at(high) - at(low)), at(estimate))


def _explanations(experiment: Experiment) -> list[tuple[str, str]]:
    """The methods this experiment uses, each in two sentences, in the page's order."""
    thompson = experiment.allocation == Experiment.Allocation.THOMPSON
    names = [
        ("Randomization", "randomization"),
        ("Thompson sampling", "thompson") if thompson else ("Fixed split", "fixed_split"),
        ("Sequential interval and p-value", "sequential"),
        *([("When traffic follows the results", "adaptive")] if thompson else []),
        (
            ("Benjamini-Hochberg correction", "fdr_bh")
            if experiment.correction == Experiment.Correction.BENJAMINI_HOCHBERG
            else ("Holm correction", "holm")
        ),
        ("Fixed-horizon test (for reference)", "fixed_horizon"),
        ("Probability of being best", "probability_best"),
        ("Expected loss", "expected_loss"),
        ("Sample-ratio check", "sample_ratio"),
        ("Losers", "loser"),
        ("Winners", "winner"),
        ("Wear-out", "wear_out"),
    ]
    return [(title, explain.EXPLANATIONS[key]) for title, key in names]


def _detail_context(request: HtmxHttpRequest, experiment: Experiment) -> dict:
    report = svc.experiment_report(experiment)
    _name, base_copy, _language = experiment.product.base_copy(experiment.language)
    scale = _scale(report.arms)
    wear = svc.experiment_wear_out(experiment)
    rows = []
    for row in report.arms:
        c = row.comparison
        bar = None
        if c is not None and c.low is not None and c.high is not None:
            bar = _bar(c.low, c.high, c.difference or 0.0, scale)
        rows.append(
            {
                "r": row,
                "text": row.arm.variant.text if row.arm.variant is not None else base_copy,
                "bar": bar,
                "wear": wear.get(row.key),
            }
        )
    variants = [row.arm.variant for row in report.arms if row.arm.variant is not None]
    lead = is_lead(request.user)
    return {
        "experiment": experiment,
        "report": report,
        "rows": rows,
        "zero": _bar(0, 0, 0, scale).left,
        "ratio": report.analysis.sample_ratio if report.analysis else None,
        "history": list(experiment.weights.order_by("-effective_from", "-id")[:50]),
        "events": ReviewEvent.objects.filter(variant__in=variants, action__in=EXPERIMENT_ACTIONS)
        .select_related("user", "variant")
        .order_by("-id")[:50],
        "explanations": _explanations(experiment),
        "alpha_pct": f"{stats.DEFAULT_ALPHA * 100:g}%",
        "is_lead": lead,
        "stop_form": ExperimentStopForm(variants=variants) if lead else None,
    }


@login_required
@require_GET
def experiment_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    experiment = get_object_or_404(
        Experiment.objects.select_related(
            "prompt", "product", "segment", "started_by", "stopped_by", "winner", "proposed"
        ),
        pk=pk,
    )
    return render(request, "review/experiment.html", _detail_context(request, experiment))


@login_required
@require_POST
def experiment_stop(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Stop, publishing one of the arms' variants or keeping the live one; the page
    says what happened as a message."""
    require_lead(request)
    experiment = get_object_or_404(Experiment, pk=pk)
    variants = [a.variant for a in experiment.arms.select_related("variant") if a.variant]
    form = ExperimentStopForm(request.POST, variants=variants)
    if not form.is_valid():
        messages.error(request, errors_text(form, labels=False))
        return redirect("review:experiment", pk=pk)
    promote_id = form.cleaned_data["promote"]
    promote = next((v for v in variants if v.pk == promote_id), None)
    try:
        svc.experiment_stop(
            experiment=experiment,
            user=request.user,
            reason=form.cleaned_data["reason"],
            promote=promote,
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        if promote is not None:
            messages.success(request, f"Experiment {pk} stopped: variant {promote.pk} is live")
        else:
            messages.success(request, f"Experiment {pk} stopped: the live variant stays")
    return redirect("review:experiment", pk=pk)


@login_required
@require_POST
def experiment_arm(request: HtmxHttpRequest, pk: int, key: str, action: str) -> HttpResponse:
    """Pause or resume one arm of a running experiment."""
    require_lead(request)
    if action not in ARM_ACTIONS:
        raise Http404(f"No arm action '{action}'")
    experiment = get_object_or_404(Experiment, pk=pk)
    arm = next((a for a in experiment.arms.all() if a.key == key), None)
    if arm is None:
        raise Http404(f"Experiment {pk} has no arm '{key}'")
    form = ArmActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, errors_text(form, labels=False))
        return redirect("review:experiment", pk=pk)
    try:
        if action == "pause":
            reason = form.cleaned_data["reason"] or f"Paused by {request.user.get_username()}"
            svc.experiment_arm_pause(arm=arm, user=request.user, reason=reason)
            messages.success(request, f"{key} paused: its visitors go to the other arms")
        else:
            svc.experiment_arm_resume(arm=arm, user=request.user)
            messages.success(request, f"{key} serves again")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("review:experiment", pk=pk)


@login_required
@require_POST
def experiment_challengers(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One action: a new prompt version learning from the experiment's best arm writes
    a challenger for this slot (services.experiment_challengers); it waits in review,
    and approving it offers to add it to the experiment."""
    require_lead(request)
    experiment = get_object_or_404(Experiment, pk=pk)
    form = BudgetForm(request.POST)
    if not form.is_valid():
        messages.error(request, errors_text(form, labels=False))
        return redirect("review:experiment", pk=pk)
    try:
        made = svc.experiment_challengers(
            user=request.user, experiment=experiment, budget=form.cleaned_data["budget"]
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Version {made.version.number} learns from variant {made.example.pk}; run "
            f"{made.run.pk} writes its challenger for this slot, which then waits in review",
        )
    return redirect("review:experiment", pk=pk)


# --- starting one from the focus view -------------------------------------------------


@login_required
@require_POST
def experiment_new(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Start an experiment on the slot of variant `pk`; the experiment's page follows.
    A refusal shows the focus view again, the error beside its field."""
    require_lead(request)
    variant = get_object_or_404(Variant, pk=pk)
    candidates = svc.slot_variants(variant)
    live = next((v for v in candidates if v.status == Variant.Status.PUBLISHED), None)
    form = ExperimentStartForm(request.POST, candidates=candidates, live=live)
    if form.is_valid():
        try:
            experiment = svc.experiment_start(
                variant_ids=form.cleaned_data["variants"],
                user=request.user,
                settings=form.settings(),
                shares=form.shares(),
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"Experiment {experiment.pk} started")
            url = reverse("review:experiment", args=[experiment.pk])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    # The focus view, with the form as it was sent and its errors.
    return focus_page(request, variant, experiment_form=form)
