"""The review queue and the focus view of one variant, and the decisions made from
them: approve (with or without an edit), reject, regenerate, undo, and bulk."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Exists, OuterRef
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import push_url

from generation import languages, prompting
from generation.errors import ServiceError
from generation.models import GenerationRun, Prompt, Segment, Variant
from review import queue as q
from review import services
from review.experiments.allocation import MAX_ARMS
from review.forms import (
    ApproveForm,
    BulkForm,
    DecisionForm,
    ExperimentStartForm,
    QueueFilters,
    RegenerateForm,
    RejectForm,
    errors_text,
)
from review.models import ReviewerProfile, ReviewEvent
from review.permissions import is_lead, require_lead, require_reviewer
from review.services import experiments as experiment_services
from review.services.decisions import variant_approve_into_experiment
from review.setup import checklist
from review.views import VARIANT_RELATED, HtmxHttpRequest, partial


def _edit_diff(event: ReviewEvent) -> q.WordDiff | None:
    """What a decision changed in the text, word by word; None if it kept the text."""
    if not event.text_after or event.text_after == event.text_before:
        return None
    return q.word_diff(event.text_before, event.text_after)


def _last_decision(user) -> ReviewEvent | None:
    """The user's most recent decision, if nothing happened to its variant since."""
    event = (
        ReviewEvent.objects.filter(user=user, action__in=services.UNDOABLE)
        .annotate(
            moved_on=Exists(
                ReviewEvent.objects.filter(variant=OuterRef("variant"), pk__gt=OuterRef("pk"))
            )
        )
        .select_related("variant__product")
        .order_by("-id")
        .first()
    )
    return None if event is None or event.moved_on else event


def _filters(request: HtmxHttpRequest) -> tuple[QueueFilters, dict, list[str]]:
    """The queue's filters, the language resolved with the reviewer's own languages."""
    form = QueueFilters(request.GET)
    mine = ReviewerProfile.languages_of(request.user)
    return form, q.reviewer_languages(form.values(), mine), mine


def _queue_context(request: HtmxHttpRequest, **extra) -> dict:
    form, values, mine = _filters(request)
    counts = q.status_counts(values)
    mine_done = bool(values.get("mine_default")) and not counts.get(values["status"])
    if mine_done:
        # Their languages come first; with none of them left, the rest follow.
        values = q.every_language(values)
        counts = q.status_counts(values)
    variants = q.variants_filtered(values).select_related(*VARIANT_RELATED)
    after = q.Key.parse(request.GET.get("after"))
    before = q.Key.parse(request.GET.get("before"))
    page = q.page_fetch(variants, after=after, before=before)
    tabs = [
        {
            "status": status,
            "label": label,
            "count": counts.get(status, 0),
            "qs": q.querystring(values, status=status),
            "current": status == values["status"],
        }
        for status, label in Variant.Status.choices
        if counts.get(status) or status in (Variant.Status.IN_REVIEW, values["status"])
    ]
    runs = list(GenerationRun.objects.select_related("prompt_version__prompt")[:30])
    segments = list(Segment.objects.only("slug", "name", "rules", "summary").order_by("slug"))
    # The languages the audience speaks, from what the segments already hold (no
    # DISTINCT over the variants table on every page).
    # Base languages are offered beside their regional tags: "de" takes de-de and de-ch.
    tags = {tag for s in segments for tag in s.language_shares()}
    tags |= {languages.base_language(tag) for tag in tags}
    if values.get("language") not in (None, q.MINE, q.ALL):
        tags.add(values["language"])
    cursor = {"after": after and str(after), "before": before and str(before)}
    return {
        "form": form,
        "f": values,
        "qs": q.querystring(values),
        "page_qs": q.querystring(values, **cursor),
        "page": page,
        "entries": q.queue_entries(page.variants),
        "total": counts.get(values["status"], 0),
        "tabs": tabs,
        "next_qs": q.querystring(values, after=str(page.next_key)) if page.next_key else "",
        "previous_qs": (
            q.querystring(values, before=str(page.previous_key)) if page.previous_key else ""
        ),
        "runs": runs,
        "run_listed": any(r.pk == values.get("run") for r in runs),
        "prompts": list(Prompt.objects.only("slug", "name").order_by("slug")),
        "segments": segments,
        "languages": sorted(tags),
        "my_languages": mine,
        "mine_done": mine_done,
        "all_languages_qs": q.querystring(q.every_language(values)),
        "checks": q.CHECK_NAMES,
        "statuses": Variant.Status.choices,
        "reject_reasons": q.REJECT_REASONS,
        "last_decision": _last_decision(request.user),
        "target": "row",
        **extra,
    }


def _setup_context(*, asked: bool) -> dict:
    """The first-run checklist (review/setup.py): shown until every step is done, or
    when `asked` (the setup page). One query."""
    steps = checklist()
    return {"setup": steps, "setup_shown": asked or not steps.complete, "setup_asked": asked}


@login_required
@require_GET
@vary_on_headers("HX-Request")
def queue(request: HtmxHttpRequest) -> HttpResponse:
    require_reviewer(request)
    if not partial(request):
        context = _queue_context(request, **_setup_context(asked=False))
        return render(request, "review/queue.html", context)
    context = _queue_context(request)
    # The filter form sends every field, empty ones too; the address bar gets the
    # same page's tidy URL instead.
    return push_url(
        render(request, "review/queue.html#queue", context),
        f"{reverse('review:queue')}?{context['page_qs']}",
    )


def _experiment_panel(
    request: HtmxHttpRequest, variant: Variant, form: ExperimentStartForm | None = None
) -> dict | None:
    """The focus view's "Experiment" panel: the running experiment of the variant's
    slot, or (for a lead, on a published or testing variant) the form to start one.
    None for a customer's message. A variant in review whose slot has a live variant
    is offered "add to the experiment" beside "approve" (which replaces it): `running`
    says which experiment that is, if any."""
    if variant.segment_id is None:
        return None
    running = experiment_services.running_for(variant)
    panel: dict = {"running": running, "form": None}
    startable = variant.status in (Variant.Status.PUBLISHED, Variant.Status.TESTING)
    if running is None and startable and is_lead(request.user):
        candidates = experiment_services.slot_variants(variant)
        live = next((v for v in candidates if v.status == Variant.Status.PUBLISHED), None)
        form = form or ExperimentStartForm(candidates=candidates, live=live)
        chosen = form["variants"].value() or []
        panel["form"] = form
        # Each candidate with whether it is ticked and its share field, for the table.
        panel["rows"] = [
            (v, str(v.pk) in {str(pk) for pk in chosen}, form[f"share_v{v.pk}"]) for v in candidates
        ]
        panel["live"] = live
        panel["max_arms"] = MAX_ARMS
    return panel


@login_required
@require_GET
def setup(request: HtmxHttpRequest) -> HttpResponse:
    """The queue page with the first-run checklist shown, done or not: where a lead
    goes back to it once the queue stopped showing it."""
    require_reviewer(request)
    return render(
        request, "review/queue.html", _queue_context(request, **_setup_context(asked=True))
    )


def _focus_context(
    request: HtmxHttpRequest,
    variant: Variant,
    *,
    experiment_form: ExperimentStartForm | None = None,
    **extra,
) -> dict:
    _form, values, _mine = _filters(request)
    previous, following = q.neighbours(q.variants_filtered(values), variant)
    live = (
        Variant.objects.published()
        .for_slot(
            prompt=variant.prompt_id,
            product=variant.product_id,
            segment=variant.segment_id,
            customer=variant.customer_id,
            language=variant.language if variant.segment_id else None,
        )
        .exclude(pk=variant.pk)
        .select_related("prompt_version__prompt")
        .first()
    )
    events = [
        (event, _edit_diff(event))
        for event in variant.review_events.select_related("user").order_by("-id")
    ]
    whom = variant.audience
    if isinstance(whom, Segment):
        audience = q.segment_summary(whom.summary)
    else:
        attributes = prompting.allowed_attributes(variant.prompt_version.prompt, whom.attributes)
        audience = q.segment_summary({k: {str(v): 1} for k, v in attributes.items()})
    last = _last_decision(request.user)
    qs = q.querystring(values)
    _name, base_copy, base_language = variant.product.base_copy(variant.language)
    return {
        "variant": variant,
        "f": values,
        "qs": qs,
        "diff": q.word_diff(base_copy, variant.text),
        # The base copy shown is in the variant's language where the catalog has it;
        # otherwise the variant was written from the default-language copy.
        "base_language": base_language,
        # ...said only for a language other than the prompt's default.
        "base_fallback": bool(
            variant.language
            and not base_language
            and languages.base_language(variant.language)
            != languages.base_language(variant.prompt.default_language)
        ),
        "edit_diff": (
            q.word_diff(variant.original_text, variant.text)
            if variant.original_text and variant.original_text != variant.text
            else None
        ),
        "audience": audience,
        "live": live,
        "events": events,
        "previous": previous,
        "next": following,
        "queue_url": f"{reverse('review:queue')}?{qs}",
        "reject_reasons": q.REJECT_REASONS,
        "undo_event": last if last is not None and last.variant_id == variant.pk else None,
        "experiment_panel": _experiment_panel(request, variant, experiment_form),
        "target": "focus",
        **extra,
    }


@login_required
@require_GET
@vary_on_headers("HX-Request")
def variant_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    variant = get_object_or_404(Variant.objects.select_related(*VARIANT_RELATED), pk=pk)
    return focus_page(request, variant)


def focus_page(
    request: HtmxHttpRequest,
    variant: Variant,
    *,
    experiment_form: ExperimentStartForm | None = None,
) -> HttpResponse:
    """The focus view of `variant` (its region alone over HTMX), with the experiment
    form as a lead sent it when it was refused (review/views/experiments.py)."""
    variant = Variant.objects.select_related(*VARIANT_RELATED).get(pk=variant.pk)
    template = "review/variant.html#focus" if partial(request) else "review/variant.html"
    context = _focus_context(request, variant, experiment_form=experiment_form)
    return render(request, template, context)


def _decided(
    request: HtmxHttpRequest,
    form: DecisionForm,
    variant: Variant,
    *,
    error: str = "",
    kept_text: str = "",
    notice: str = "",
) -> HttpResponse:
    """Answer a decision: the updated row or focus region over HTMX; else a redirect.

    A refused decision without HTMX shows the focus page with the message (and the
    text the reviewer typed), rather than redirecting it away.
    """
    variant = Variant.objects.select_related(*VARIANT_RELATED).get(pk=variant.pk)
    view = form.cleaned_data.get("view") or "row"
    from_focus = view == "focus"
    if view == "queue" and partial(request):  # the queue's "last decision" bar
        context = _queue_context(request, queue_notice=notice, queue_error=error)
        return render(request, "review/queue.html#queue", context)
    undo_event = None
    if not error:
        latest = variant.review_events.order_by("-id").first()
        if latest and latest.user_id == request.user.pk and latest.action in services.UNDOABLE:
            undo_event = latest
    extra: dict[str, Any] = {"error": error, "kept_text": kept_text, "notice": notice}
    if request.htmx:
        if from_focus:
            context = _focus_context(request, variant, **extra)
            context["undo_event"] = undo_event
            return render(request, "review/variant.html#focus", context)
        context = {
            "variant": variant,
            "qs": q.querystring(QueueFilters(request.GET).values()),
            "reject_reasons": q.REJECT_REASONS,
            "undo_event": undo_event,
            "target": "row",
            **extra,
        }
        return render(request, "review/queue.html#variant-row", context)
    if error and view == "queue":
        messages.error(request, error)
    elif error:
        return render(request, "review/variant.html", _focus_context(request, variant, **extra))
    else:
        messages.success(request, notice or f"Variant {variant.pk}: {variant.get_status_display()}")
    qs = q.querystring(QueueFilters(request.GET).values())
    if from_focus:
        return redirect(f"{reverse('review:variant', args=[variant.pk])}?{qs}")
    return redirect(f"{reverse('review:queue')}?{qs}" if request.GET else reverse("review:queue"))


@login_required
@require_POST
def approve(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    variant = get_object_or_404(Variant, pk=pk)
    form = ApproveForm(request.POST)
    if not form.is_valid():
        kept = form["text"].value() or ""
        return _decided(request, form, variant, error=errors_text(form), kept_text=kept)
    text = form.cleaned_data["text"]
    try:
        variant = services.variant_approve(
            variant=variant, user=request.user, text=text, revision=form.cleaned_data["revision"]
        )
    except services.DecisionError as exc:
        return _decided(request, form, variant, error=str(exc), kept_text=text or "")
    return _decided(request, form, variant)


@login_required
@require_POST
def approve_into_experiment(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Approve a variant as one more arm of its slot's experiment (one is started with
    the live variant when none runs), instead of replacing the live variant. Steering
    traffic is a lead's decision."""
    require_lead(request)
    variant = get_object_or_404(Variant, pk=pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _decided(request, form, variant, error=errors_text(form))
    try:
        experiment = variant_approve_into_experiment(
            variant=variant, user=request.user, revision=form.cleaned_data["revision"]
        )
    except ServiceError as exc:
        return _decided(request, form, variant, error=exc.message)
    notice = f"Variant {variant.pk} approved into experiment {experiment.pk}"
    return _decided(request, form, variant, notice=notice)


@login_required
@require_POST
def regenerate(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    variant = get_object_or_404(Variant, pk=pk)
    form = RegenerateForm(request.POST)
    if not form.is_valid():
        return _decided(request, form, variant, error=errors_text(form))
    try:
        variant = services.variant_request_regeneration(
            variant=variant,
            user=request.user,
            note=form.cleaned_data["note"],
            revision=form.cleaned_data["revision"],
        )
    except services.DecisionError as exc:
        return _decided(request, form, variant, error=str(exc))
    notice = f"Variant {variant.pk} is being written again"
    return _decided(request, form, variant, notice=notice)


@login_required
@require_POST
def reject(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    variant = get_object_or_404(Variant, pk=pk)
    form = RejectForm(request.POST)
    if not form.is_valid():
        return _decided(request, form, variant, error=errors_text(form))
    try:
        variant = services.variant_reject(
            variant=variant,
            user=request.user,
            reason=form.cleaned_data["reason"],
            revision=form.cleaned_data["revision"],
        )
    except services.DecisionError as exc:
        return _decided(request, form, variant, error=str(exc))
    return _decided(request, form, variant)


@login_required
@require_POST
def undo(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    event = get_object_or_404(ReviewEvent, pk=pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _decided(request, form, event.variant, error=errors_text(form))
    try:
        variant = services.decision_undo(event=event, user=request.user)
    except services.DecisionError as exc:
        return _decided(request, form, event.variant, error=str(exc))
    notice = f"Undone: variant {variant.pk} is back in review"
    return _decided(request, form, variant, notice=notice)


@login_required
@require_POST
def bulk(request: HtmxHttpRequest) -> HttpResponse:
    """Approve or reject the selected variants; answer with the queue and what happened."""
    require_reviewer(request)
    form = BulkForm(request.POST)
    report: dict = {"error": "", "decided": [], "refused": []}
    if not form.is_valid():
        report["error"] = errors_text(form, labels=False)
    else:
        action = form.cleaned_data["action"]
        variants = list(Variant.objects.filter(pk__in=form.cleaned_data["ids"]).order_by("pk"))
        try:
            result = services.variants_decide(
                variants=variants,
                user=request.user,
                action=action,
                reason=form.cleaned_data["reason"],
                revisions=form.cleaned_data["revisions"],
            )
        except services.DecisionError as exc:
            report["error"] = str(exc)
        else:
            report["decided"] = result.decided
            report["refused"] = result.refused
            report["action"] = "approved" if action == "approve" else "rejected"
    if partial(request):
        return render(request, "review/queue.html#queue", _queue_context(request, bulk=report))
    if report["error"]:
        messages.error(request, report["error"])
    else:
        n = len(report["decided"])
        messages.success(request, f"{n} variant{'s' if n != 1 else ''} {report['action']}")
        for pk, why in report["refused"]:
            messages.error(request, f"Variant {pk} refused: {why}")
    return redirect(f"{reverse('review:queue')}?{request.GET.urlencode()}")
