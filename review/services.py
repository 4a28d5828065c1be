"""Writes with side effects in the review domain: decisions and publishing."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from generation.models import Variant
from review.models import ReviewEvent


class DecisionError(ValueError):
    """A decision that cannot be taken on the variant as it stands now."""


def _lock_in_review(variant: Variant) -> Variant:
    locked = Variant.objects.select_for_update().get(pk=variant.pk)
    if locked.status != Variant.Status.IN_REVIEW:
        raise DecisionError(
            f"Variant {locked.pk} is {locked.get_status_display().lower()}, not in review; "
            "someone may have decided it already"
        )
    return locked


@transaction.atomic
def variant_approve(*, variant: Variant, user, text: str | None = None) -> Variant:
    """Publish a variant in review, optionally with edited text.

    1. Lock the variant; refuse unless it is still in review.
    2. Retire the slot's published variant, if any (the live one stays live until
       this moment, and the unique constraint allows only one published per slot).
    3. Publish, keeping the model's original text, and record the decision.
    """
    variant = _lock_in_review(variant)
    now = timezone.now()
    live = (
        Variant.objects.select_for_update()
        .published()
        .for_slot(
            prompt=variant.prompt_id,
            product=variant.product_id,
            segment=variant.segment_id,
            customer=variant.customer_id,
        )
        .exclude(pk=variant.pk)
    )
    for old in live:
        old.status = Variant.Status.RETIRED
        old.revision += 1
        old.save(update_fields=["status", "revision", "updated"])
        ReviewEvent.objects.create(
            variant=old,
            user=user,
            action=ReviewEvent.Action.RETIRE,
            reason=f"Replaced by variant {variant.pk}",
        )

    text_before = variant.text
    edited = text is not None and text.strip() and text.strip() != variant.text
    if edited:
        variant.text = text.strip()
    variant.status = Variant.Status.PUBLISHED
    variant.published = now
    variant.revision += 1
    variant.save(update_fields=["text", "status", "published", "revision", "updated"])
    ReviewEvent.objects.create(
        variant=variant,
        user=user,
        action=ReviewEvent.Action.EDIT if edited else ReviewEvent.Action.APPROVE,
        text_before=text_before,
        text_after=variant.text,
    )
    return variant


@transaction.atomic
def variant_reject(*, variant: Variant, user, reason: str) -> Variant:
    """Reject a variant in review with a reason; the slot's live variant is untouched."""
    reason = reason.strip()
    if not reason:
        raise DecisionError("Give a reason for rejecting")
    variant = _lock_in_review(variant)
    variant.status = Variant.Status.REJECTED
    variant.revision += 1
    variant.save(update_fields=["status", "revision", "updated"])
    ReviewEvent.objects.create(
        variant=variant,
        user=user,
        action=ReviewEvent.Action.REJECT,
        reason=reason,
        text_before=variant.text,
        text_after=variant.text,
    )
    return variant


@transaction.atomic
def variant_request_regeneration(*, variant: Variant, user, note: str) -> Variant:
    """Ask for a variant to be written again; the note reaches the prompt.

    The text it had is kept in the audit trail (the variant keeps its row).
    """
    from generation.services import RunError, variant_regenerate

    variant = _lock_in_review(variant)
    ReviewEvent.objects.create(
        variant=variant,
        user=user,
        action=ReviewEvent.Action.REGENERATE,
        reason=note.strip(),
        text_before=variant.text,
    )
    try:
        return variant_regenerate(variant=variant, note=note)
    except RunError as exc:
        raise DecisionError(str(exc)) from exc
