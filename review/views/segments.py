"""The audience, for marketing leads and staff: the segment builder (rules over
customer attributes, a member count before saving, every combination of chosen
attributes), and a prompt's privacy page: exactly which of the audience's attributes
reach the endpoint, in which languages the prompt writes, and its review policy. The
two share the attribute names the builder offers (known_attributes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from generation import languages, prompting, services
from generation.models import Customer, CustomerSource, Product, Prompt, Segment, describe_rules
from generation.services import messages as gen_messages
from review import queue as q
from review.forms import (
    OPERATORS,
    BaseRuleFormSet,
    PromptAllowlistForm,
    PromptLanguagesForm,
    PromptPolicyForm,
    RuleFormSet,
    SegmentForm,
    SegmentsGenerateForm,
    add_service_error,
    errors_text,
)
from review.permissions import require_lead
from review.views import HtmxHttpRequest

# Customers read to offer attribute names in the builder (a hint; any name can be typed).
ATTRIBUTE_SAMPLE = 1000


def known_attributes(*, also: Iterable[str] = ()) -> list[str]:
    """Attribute names of the first customers, of every source's mapping, and `also`
    (a prompt's allowlist, so that saving the page never drops a name from it)."""
    names = {"language", *also}
    for attributes in Customer.objects.values_list("attributes", flat=True)[:ATTRIBUTE_SAMPLE]:
        names.update(attributes)
    names.update(CustomerSource.mapped_attributes())
    return sorted(names)


def _listed_segments() -> list[dict]:
    return [
        {"segment": s, "rules": describe_rules(s.rules), "summary": q.segment_summary(s.summary)}
        for s in Segment.objects.order_by("slug")
    ]


def _builder_context(
    *,
    segment: Segment | None = None,
    form: SegmentForm | None = None,
    rules: BaseRuleFormSet | None = None,
) -> dict:
    """The builder: a segment's name and rules (a new one's when `segment` is None), or
    the forms as posted."""
    if form is None:
        form = SegmentForm(initial={"name": segment.name} if segment else None)
    if rules is None:
        rules = RuleFormSet.for_rules(segment.rules if segment else {})
    return {
        "segment": segment,
        "form": form,
        "rules": rules,
        "operators": OPERATORS,
        "attributes": known_attributes(),
    }


@login_required
@require_GET
def segments(request: HtmxHttpRequest) -> HttpResponse:
    require_lead(request)
    context = _builder_context() | {"segments": _listed_segments()}
    return render(request, "review/segments.html", context)


@login_required
@require_POST
def segment_preview(request: HtmxHttpRequest) -> HttpResponse:
    """The builder's "count members": the members and summary of the rules as typed."""
    require_lead(request)
    rules = RuleFormSet(request.POST)
    preview, errors = None, []
    if not rules.is_valid():
        errors = rules.messages()
    else:
        try:
            members, summary = services.segment_preview(rules=rules.rules)
        except services.SegmentError as exc:
            errors = [str(exc)]
        else:
            preview = {
                "members": members,
                "rules": describe_rules(rules.rules),
                "summary": q.segment_summary(summary, top=4),
            }
    context = {"preview": preview, "errors": errors}
    return render(request, "review/segments.html#segment-preview", context)


@login_required
@require_http_methods(["GET", "POST"])
def segment_edit(request: HtmxHttpRequest, slug: str | None = None) -> HttpResponse:
    """Create (no slug) or change a segment; an invalid form is shown again with why."""
    require_lead(request)
    segment = get_object_or_404(Segment, slug=slug) if slug else None
    if request.method == "GET":
        if segment is None:
            return redirect("review:segments")
        return render(request, "review/segment.html", _builder_context(segment=segment))
    form, rules = SegmentForm(request.POST), RuleFormSet(request.POST)
    if all([form.is_valid(), rules.is_valid()]):  # both, so that both show their errors
        try:
            saved = services.segment_save(
                segment=segment, name=form.cleaned_data["name"], rules=rules.rules
            )
        except services.SegmentError as exc:
            add_service_error(form, exc)
        else:
            verb = "Saved" if segment else "Created"
            messages.success(
                request, f"{verb} segment {saved.name}: {saved.member_count:,} members"
            )
            return redirect("review:segments")
    context = _builder_context(segment=segment, form=form, rules=rules)
    if segment is None:
        context["segments"] = _listed_segments()
        return render(request, "review/segments.html", context, status=400)
    return render(request, "review/segment.html", context, status=400)


@login_required
@require_POST
def segment_delete(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    require_lead(request)
    segment = get_object_or_404(Segment, slug=slug)
    try:
        services.segment_delete(segment=segment)
    except services.SegmentError as exc:
        messages.error(request, str(exc))
        return redirect("review:segment", slug=slug)
    messages.success(request, f"Deleted segment {segment.name}")
    return redirect("review:segments")


@login_required
@require_POST
def segments_generate(request: HtmxHttpRequest) -> HttpResponse:
    """One segment per combination of the chosen attributes' values."""
    require_lead(request)
    form = SegmentsGenerateForm(request.POST)
    if not form.is_valid():
        messages.error(request, errors_text(form))
        return redirect("review:segments")
    try:
        built = services.segments_build(by=form.cleaned_data["by"])
    except services.SegmentError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{len(built)} segments from every combination present")
    return redirect("review:segments")


# --- What reaches the endpoint ----------------------------------------------------------


# The privacy page's three forms, told apart by their `form` field (any other value:
# the allowlist, the page's first).
PRIVACY_FORMS: dict[str, type[forms.Form]] = {
    "languages": PromptLanguagesForm,
    "policy": PromptPolicyForm,
    "allowlist": PromptAllowlistForm,
}


def _prompt_settings_save(prompt: Prompt, form: forms.Form) -> str:
    """Save what one of the privacy page's forms holds; say what the prompt does now."""
    data = form.cleaned_data
    if isinstance(form, PromptLanguagesForm):
        gen_messages.prompt_languages_save(
            prompt=prompt, languages=data["languages"], min_share=data["language_min_share"]
        )
        written = ", ".join(prompt.languages) or (
            f"every language {prompt.language_min_share}% of a segment's members read"
        )
        return f"The prompt writes in: {written}"
    if isinstance(form, PromptPolicyForm):
        gen_messages.prompt_policy_save(
            prompt=prompt,
            policy=data["review_policy"],
            sample_percent=data["review_sample_percent"],
        )
        return f"Review policy: {prompt.get_review_policy_display()}"
    gen_messages.prompt_allowlist_save(prompt=prompt, attributes=data["allowed"])
    listed = ", ".join(prompt.allowed_attributes) or "every attribute not personal"
    return f"The prompt now sends: {listed}"


@login_required
@require_http_methods(["GET", "POST"])
def prompt_privacy(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """For one prompt: which customer attributes are sent and which are held back, the
    exact messages one customer's prompt would send, the languages it writes in, and
    its review policy. POST saves the allowlist (`form=allowlist`), the policy
    (`form=policy`) or the languages (`form=languages`)."""
    require_lead(request)
    prompt = get_object_or_404(Prompt.objects.select_related("brand"), slug=slug)
    if request.method == "POST":
        form = PRIVACY_FORMS.get(request.POST.get("form", ""), PromptAllowlistForm)(request.POST)
        if not form.is_valid():
            messages.error(request, errors_text(form))
        else:
            try:
                messages.success(request, _prompt_settings_save(prompt, form))
            except gen_messages.MessageError as exc:
                messages.error(request, str(exc))
        return redirect("review:privacy", slug=prompt.slug)
    version = prompt.current_version
    customer = (
        Customer.objects.filter(external_id=request.GET.get("customer", "")).first()
        or Customer.objects.order_by("pk").first()
    )
    product = Product.objects.order_by("pk").first()
    personal = prompting.personal_attributes()
    attributes = known_attributes(also=prompt.allowed_attributes or [])
    sent = set(prompting.allowed_attributes(prompt, dict.fromkeys(attributes, ""), personal))
    fields = [
        {
            "attribute": a,
            "sent": a in sent,
            "why": (
                "personal: never sent"
                if a.lower() in personal
                else "on the allowlist"
                if a in sent and prompt.allowed_attributes
                else "not personal (no allowlist)"
                if a in sent
                else "not on the allowlist"
            ),
        }
        for a in attributes
    ]
    messages_sent = None
    if version is not None and customer is not None and product is not None:
        rendered = prompting.render(
            version=version,
            prompt=prompt,
            brand=prompt.brand,
            product=product,
            customer=customer,
            purpose="(the message's purpose)",
            personal=personal,
        )
        messages_sent = [{"role": m["role"], "content": m["content"]} for m in rendered.messages]
    context = {
        "prompt": prompt,
        "fields": fields,
        "customer": customer,
        "product": product,
        "messages_sent": messages_sent,
        "allowlist": json.dumps(prompt.allowed_attributes),
        "studio_url": reverse("review:studio", args=[prompt.slug]),
        "policies": Prompt.ReviewPolicy.choices,
        "policy_counts": gen_messages.policy_counts(prompt),
        "segment_languages": [
            {
                "segment": segment,
                "shares": languages.shares_text(segment.language_shares()),
                "languages": prompt.segment_languages(segment),
            }
            for segment in Segment.objects.filter(member_count__gt=0).order_by("name")[:100]
        ],
    }
    return render(request, "review/privacy.html", context)
