"""HTML and HTMX views of the review queue. Thin: permission, validate, service, render."""

from __future__ import annotations

import csv
from decimal import Decimal, InvalidOperation

import redis
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Exists, OuterRef
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import push_url

from generation import languages, prompting
from generation import services as generation_services
from generation.limiter import endpoint_limiter
from generation.models import GenerationRun, Prompt, Segment, Variant
from generation.services import RunError
from hyperpers.errors import ascii_int
from review import metrics, services
from review import queue as q
from review.models import ReviewerProfile, ReviewEvent
from review.permissions import is_lead, require_lead, require_reviewer

PAGE_SIZE = q.PAGE_SIZE
BULK_MAX = 100  # a page holds 20; this only bounds what a hand-made request can ask
# Every join costs PostgreSQL planning time (eight tables made the queue page's plan
# take 30 ms for a 0.6 ms query): join only what the templates show.
VARIANT_RELATED = ("product", "segment", "customer", "prompt_version__prompt")


def _partial(request: HttpRequest) -> bool:
    # A history restore (back button, cache miss) asks for the whole page.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _prepare(variant: Variant) -> Variant:
    """Split the checks for display: failed ones are flagged and shown first."""
    checks = q.checks_failed_first(variant.checks)
    variant.failed_checks = [c for c in checks if not c.get("passed", True)]
    variant.passed_checks = [c for c in checks if c.get("passed", True)]
    variant.sorted_checks = checks
    return variant


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


def _filters(request: HttpRequest) -> tuple[q.QueueFilters, dict, list[str]]:
    """The queue's filters, the language resolved with the reviewer's own languages."""
    form = q.QueueFilters(request.GET)
    mine = ReviewerProfile.languages_of(request.user)
    return form, q.reviewer_languages(form.values(), mine), mine


def _queue_context(request: HttpRequest, **extra) -> dict:
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
    for variant in page.variants:
        _prepare(variant)
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


@login_required
@require_GET
@vary_on_headers("HX-Request")
def queue(request: HttpRequest) -> HttpResponse:
    require_reviewer(request)
    context = _queue_context(request)
    if not _partial(request):
        return render(request, "review/queue.html", context)
    # The filter form sends every field, empty ones too; the address bar gets the
    # same page's tidy URL instead.
    return push_url(
        render(request, "review/queue.html#queue", context),
        f"{reverse('review:queue')}?{context['page_qs']}",
    )


def _focus_context(request: HttpRequest, variant: Variant, **extra) -> dict:
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
    events = list(variant.review_events.select_related("user").order_by("-id"))
    for event in events:
        changed = event.text_after and event.text_after != event.text_before
        event.diff = q.word_diff(event.text_before, event.text_after) if changed else None
    if variant.segment is not None:
        audience = q.segment_summary(variant.segment.summary)
    else:
        attributes = prompting.allowed_attributes(
            variant.prompt_version.prompt, variant.customer.attributes
        )
        audience = q.segment_summary({k: {str(v): 1} for k, v in attributes.items()})
    last = _last_decision(request.user)
    qs = q.querystring(values)
    _name, base_copy, base_language = variant.product.base_copy(variant.language)
    return {
        "variant": _prepare(variant),
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
        "target": "focus",
        **extra,
    }


@login_required
@require_GET
@vary_on_headers("HX-Request")
def variant_detail(request: HttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    variant = get_object_or_404(Variant.objects.select_related(*VARIANT_RELATED), pk=pk)
    template = "review/variant.html#focus" if _partial(request) else "review/variant.html"
    return render(request, template, _focus_context(request, variant))


def _decided(
    request: HttpRequest,
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
    view = request.POST.get("view")
    from_focus = view == "focus"
    if view == "queue" and _partial(request):  # the queue's "last decision" bar
        context = _queue_context(request, queue_notice=notice, queue_error=error)
        return render(request, "review/queue.html#queue", context)
    undo_event = None
    if not error:
        latest = variant.review_events.order_by("-id").first()
        if latest and latest.user_id == request.user.pk and latest.action in services.UNDOABLE:
            undo_event = latest
    extra = {"error": error, "kept_text": kept_text, "notice": notice}
    if request.htmx:
        if from_focus:
            context = _focus_context(request, variant, **extra)
            context["undo_event"] = undo_event
            return render(request, "review/variant.html#focus", context)
        context = {
            "variant": _prepare(variant),
            "qs": q.querystring(q.QueueFilters(request.GET).values()),
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
    qs = q.querystring(q.QueueFilters(request.GET).values())
    if from_focus:
        return redirect(f"{reverse('review:variant', args=[variant.pk])}?{qs}")
    return redirect(f"{reverse('review:queue')}?{qs}" if request.GET else reverse("review:queue"))


def _revision(request: HttpRequest) -> int | None:
    """The revision the reviewer saw; None (no check) when the form did not send one."""
    try:
        return int(request.POST["revision"])
    except (KeyError, ValueError):
        return None


@login_required
@require_POST
def approve(request: HttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    variant = get_object_or_404(Variant, pk=pk)
    text = request.POST.get("text")
    try:
        variant = services.variant_approve(
            variant=variant, user=request.user, text=text, revision=_revision(request)
        )
    except services.DecisionError as exc:
        return _decided(request, variant, error=str(exc), kept_text=text or "")
    return _decided(request, variant)


@login_required
@require_POST
def regenerate(request: HttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    variant = get_object_or_404(Variant, pk=pk)
    try:
        variant = services.variant_request_regeneration(
            variant=variant,
            user=request.user,
            note=request.POST.get("note", ""),
            revision=_revision(request),
        )
    except services.DecisionError as exc:
        return _decided(request, variant, error=str(exc))
    return _decided(request, variant, notice=f"Variant {variant.pk} is being written again")


@login_required
@require_POST
def reject(request: HttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    variant = get_object_or_404(Variant, pk=pk)
    reason = q.reject_reason(request.POST.get("reason", ""), request.POST.get("detail", ""))
    try:
        variant = services.variant_reject(
            variant=variant, user=request.user, reason=reason, revision=_revision(request)
        )
    except services.DecisionError as exc:
        return _decided(request, variant, error=str(exc))
    return _decided(request, variant)


@login_required
@require_POST
def undo(request: HttpRequest, pk: int) -> HttpResponse:
    require_reviewer(request)
    event = get_object_or_404(ReviewEvent, pk=pk)
    try:
        variant = services.decision_undo(event=event, user=request.user)
    except services.DecisionError as exc:
        return _decided(request, event.variant, error=str(exc))
    return _decided(request, variant, notice=f"Undone: variant {variant.pk} is back in review")


@login_required
@require_POST
def bulk(request: HttpRequest) -> HttpResponse:
    """Approve or reject the selected variants; answer with the queue and what happened."""
    require_reviewer(request)
    ids = [ascii_int(i, "ids") for i in request.POST.getlist("ids")]
    revisions = {}
    for pk in ids:
        raw = request.POST.get(f"rev-{pk}", "")
        if raw:
            revisions[pk] = ascii_int(raw, f"rev-{pk}")
    action = request.POST.get("action", "")
    reason = q.reject_reason(request.POST.get("reason", ""), request.POST.get("detail", ""))
    report: dict = {"error": "", "decided": [], "refused": []}
    if not ids:
        report["error"] = "Select at least one variant first"
    elif len(ids) > BULK_MAX:
        report["error"] = f"Decide at most {BULK_MAX} variants at once"
    else:
        variants = list(Variant.objects.filter(pk__in=ids).order_by("pk"))
        try:
            result = services.variants_decide(
                variants=variants,
                user=request.user,
                action=action,
                reason=reason,
                revisions=revisions,
            )
        except services.DecisionError as exc:
            report["error"] = str(exc)
        else:
            report["decided"] = result.decided
            report["refused"] = result.refused
            report["action"] = "approved" if action == "approve" else "rejected"
    if _partial(request):
        return render(request, "review/queue.html#queue", _queue_context(request, bulk=report))
    if report["error"]:
        messages.error(request, report["error"])
    else:
        n = len(report["decided"])
        messages.success(request, f"{n} variant{'s' if n != 1 else ''} {report['action']}")
        for pk, why in report["refused"]:
            messages.error(request, f"Variant {pk} refused: {why}")
    return redirect(f"{reverse('review:queue')}?{request.GET.urlencode()}")


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


# --- Engagement metrics (review/metrics.py) --------------------------------------------


def _metrics_context(request: HttpRequest) -> dict:
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
    }


@login_required
@require_GET
@vary_on_headers("HX-Request")
def metrics_dashboard(request: HttpRequest) -> HttpResponse:
    """Engagement against the base copy; read-only for every reviewer."""
    require_reviewer(request)
    context = _metrics_context(request)
    if _partial(request):
        return render(request, "review/metrics.html#metrics", context)
    return render(request, "review/metrics.html", context)


@login_required
@require_GET
def metrics_csv(request: HttpRequest) -> HttpResponse:
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
def metrics_flag(request: HttpRequest) -> HttpResponse:
    """Flag the prompt's underperforming variants now (a task also does it on schedule)."""
    require_lead(request)
    prompt = get_object_or_404(Prompt, slug=request.POST.get("prompt", ""))
    n = metrics.metrics_flag_underperformers(prompt=prompt)
    messages.success(
        request,
        f"{n} variant{'s' if n != 1 else ''} of {prompt.name} flagged as underperforming",
    )
    return redirect(f"{reverse('review:metrics')}?prompt={prompt.slug}")


PROFILE_LANGUAGES_MAX = 20


class ProfileForm(forms.Form):
    languages = forms.CharField(
        required=False,
        max_length=400,
        help_text="BCP 47 tags, separated by commas: de, fr-CA. A language is reviewed "
        "whole: fr-CA takes fr and every regional fr. Empty: every language.",
    )

    def clean_languages(self) -> list[str]:
        raw = [t.strip() for t in self.cleaned_data["languages"].replace(";", ",").split(",")]
        tags = [t for t in raw if t]
        if len(tags) > PROFILE_LANGUAGES_MAX:
            raise forms.ValidationError(f"At most {PROFILE_LANGUAGES_MAX} languages")
        try:
            return list(dict.fromkeys(languages.language_tag(t) for t in tags))
        except languages.LanguageTagError as exc:
            raise forms.ValidationError(str(exc)) from None


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    """A reviewer names the languages they review; their default queue shows those first."""
    profile, _ = ReviewerProfile.objects.get_or_create(user=request.user)
    saved = False
    if request.method == "POST":
        form = ProfileForm(request.POST)
        if form.is_valid():
            profile.languages = form.cleaned_data["languages"]
            profile.save(update_fields=["languages"])
            saved = True
    else:
        form = ProfileForm(initial={"languages": ", ".join(profile.languages)})
    status = 400 if form.is_bound and not form.is_valid() else 200
    context = {"form": form, "profile": profile, "saved": saved}
    return render(request, "review/profile.html", context, status=status)
