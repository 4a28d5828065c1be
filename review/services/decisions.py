"""Decisions on variants: approve (with or without an edit), reject, ask for a
regeneration, in bulk, and undo. `_publish` is the one way copy goes live."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, ParamSpec, TypeVar

from django.db import IntegrityError, transaction
from django.utils import timezone

from generation.callbacks import message_notify_on_commit
from generation.errors import ServiceError
from generation.models import Variant, VariantQuerySet
from generation.services import RunError, variant_regenerate
from review.models import Experiment, ReviewEvent
from review.services import experiments as exp

if TYPE_CHECKING:
    from django.contrib.auth.models import User

P = ParamSpec("P")
R = TypeVar("R")

# The decisions a reviewer can take back (see decision_undo).
UNDOABLE = (ReviewEvent.Action.APPROVE, ReviewEvent.Action.EDIT, ReviewEvent.Action.REJECT)


class DecisionError(ServiceError):
    """A decision that cannot be taken on the variant as it stands now."""

    default_field: ClassVar[str | None] = "status"


class StaleDecision(DecisionError):
    """A decision made on an older revision of the variant than the one stored (409).
    The answer says the variant's revision and status now, to decide again from."""

    status = 409
    default_field = None

    def __init__(self, message: str, *, variant_id: int | None = None) -> None:
        super().__init__(message)
        self.variant_id = variant_id

    def body(self) -> dict[str, object]:
        body = super().body()
        if self.variant_id is not None:
            # Read after the refused decision's transaction rolled back: what is stored.
            now = Variant.objects.only("revision", "status").filter(pk=self.variant_id).first()
            if now is not None:  # deleted since: the message is all there is to say
                body.update(revision=now.revision, status=now.status)
        return body


class SlotTaken(StaleDecision):
    """Another variant of the slot went live at the same instant (the database's one
    published variant a slot refused this one): nothing was changed."""


def _who(user: User | None) -> str:
    return user.get_username() if user is not None else "the system"


def _stale_message(variant: Variant, user: User | None = None) -> str:
    last = variant.review_events.select_related("user").order_by("-id").first()
    if last is None:
        return (
            f"This variant changed since you opened it: it is now "
            f"{variant.get_status_display().lower()}"
        )
    at = timezone.localtime(last.created).strftime("%H:%M")
    action = last.get_action_display().lower()
    if user is not None and last.user_id == user.pk:
        return f"You decided this variant at {at}, perhaps in another tab: {action}"
    return f"Someone else decided this variant at {at}: {action} by {_who(last.user)}"


def _lock_in_review(
    variant: Variant, revision: int | None = None, user: User | None = None
) -> Variant:
    """Lock the variant's row; refuse unless it is in review (and at `revision`, if given).

    The revision is what the reviewer saw: every decision bumps it, so a form made
    before someone else's decision carries an older one.
    """
    locked: Variant = Variant.objects.select_for_update().get(pk=variant.pk)
    if revision is not None and locked.revision != revision:
        raise StaleDecision(_stale_message(locked, user), variant_id=locked.pk)
    if locked.status != Variant.Status.IN_REVIEW:
        raise DecisionError(
            f"Variant {locked.pk} is {locked.get_status_display().lower()}, not in review; "
            "someone may have decided it already"
        )
    return locked


def _live_in_slot(variant: Variant) -> VariantQuerySet:
    """The slot's published variant: a segment slot is one language's (or a variant
    published before slots had a language, language ""), a customer's one purpose's."""
    live = (
        Variant.objects.select_for_update()
        .published()
        .for_slot(
            prompt=variant.prompt_id,
            product=variant.product_id,
            segment=variant.segment_id,
            customer=variant.customer_id,
            purpose=variant.purpose if variant.customer_id else None,
        )
        .exclude(pk=variant.pk)
    )
    if variant.segment_id is not None:
        live = live.filter(language__in={variant.language, ""})
    return live


def _publish(
    variant: Variant, *, user: User | None, text: str | None, reason: str, record: bool = True
) -> None:
    """The one way copy goes live: approval, the review policy (through
    variant_approve) and decision imports all come here. Retire the slot's live
    variant (a retire event pointing at its replacement, a new revision), publish this
    one with a new revision and, unless `record` is off (an imported decision brings
    its own event), its approval event. Live copy hears of both saves (post_save);
    the caller sends the message callback (message_notify_on_commit).

    An experiment running on the slot is stopped first, keeping no arm: its live
    variant is being replaced, and an experiment serves the slot's live variant to
    requests without a visitor (adding the variant to the experiment instead is
    variant_approve_into_experiment)."""
    now = timezone.now()
    running = exp.running_for(variant)
    if running is not None:
        exp.experiment_stop(
            experiment=running, user=user, reason=f"Replaced by variant {variant.pk}"
        )
    for old in _live_in_slot(variant):
        old.status = Variant.Status.RETIRED
        old.revision += 1
        old.save(update_fields=["status", "revision", "updated"])
        ReviewEvent.objects.create(
            variant=old,
            user=user,
            action=ReviewEvent.Action.RETIRE,
            reason=f"Replaced by variant {variant.pk}",
            replaced_by=variant,
        )

    text_before = variant.text
    edited = text is not None and bool(text.strip()) and text.strip() != variant.text
    if text is not None and edited:
        variant.text = text.strip()
    variant.status = Variant.Status.PUBLISHED
    variant.published = now
    variant.revision += 1
    variant.save(update_fields=["text", "status", "published", "revision", "updated"])
    if record:
        ReviewEvent.objects.create(
            variant=variant,
            user=user,
            action=ReviewEvent.Action.EDIT if edited else ReviewEvent.Action.APPROVE,
            reason=reason,
            text_before=text_before,
            text_after=variant.text,
        )


@transaction.atomic
def variant_approve(
    *,
    variant: Variant,
    user: User | None,
    text: str | None = None,
    revision: int | None = None,
    reason: str = "",
) -> Variant:
    """Publish a variant in review, optionally with edited text.

    1. Lock the variant; refuse unless it is still in review (and, when `revision`
       is given, unless nobody decided it since the reviewer saw it).
    2. Retire the slot's published variant, if any (the live one stays live until
       this moment, and the unique constraint allows only one published per slot).
    3. Publish, keeping the model's original text, and record the decision.
    """
    variant = _lock_in_review(variant, revision, user)
    try:
        # A savepoint: a concurrent approval in the same slot makes the unique
        # constraint refuse this one; that is a refused decision, not an error page.
        with transaction.atomic():
            _publish(variant, user=user, text=text, reason=reason)
    except IntegrityError:
        raise SlotTaken(
            f"Another variant of this slot went live at the same moment; variant "
            f"{variant.pk} stays in review. Reload to see it.",
            variant_id=variant.pk,
        ) from None
    message_notify_on_commit(variant)
    return variant


@transaction.atomic
def variant_approve_into_experiment(
    *, variant: Variant, user: User | None, revision: int | None = None
) -> Experiment:
    """Approve a variant in review as one more arm of its slot's experiment, instead
    of replacing the slot's live variant; with no experiment running, start one with
    the live variant and this one (the model's defaults: a fixed split, 10% to the base
    copy).

    1. Lock the variant; refuse unless it is still in review (at `revision`).
    2. Mark it approved, not published: an approval event "into experiment N" (the
       audit trail says who approved the copy, before the experiment's own events).
    3. Add it to the running experiment, or start one; it becomes `testing`. A refusal
       there (a full experiment, a slot with nothing live) leaves it in review.
    """
    variant = _lock_in_review(variant, revision, user)
    if variant.segment_id is None:
        raise DecisionError(
            "A customer's own message is not tested in an experiment: approve it to publish it"
        )
    running = exp.running_for(variant)
    variant.status = Variant.Status.TESTING
    variant.revision += 1
    variant.save(update_fields=["status", "revision", "updated"])
    approval = ReviewEvent.objects.create(
        variant=variant,
        user=user,
        action=ReviewEvent.Action.APPROVE,
        reason="into experiment",
        text_before=variant.text,
        text_after=variant.text,
    )
    if running is not None:
        exp.experiment_add_arm(experiment=running, variant=variant, user=user)
        experiment = running
    else:
        experiment = exp.experiment_start(variant_ids=[variant.pk], user=user)
    # The experiment's number is known only now when it was just started; one
    # transaction, so nobody reads the event without it.
    approval.reason = f"into experiment {experiment.pk}"
    approval.save(update_fields=["reason"])
    return experiment


@transaction.atomic
def variant_reject(
    *, variant: Variant, user: User | None, reason: str, revision: int | None = None
) -> Variant:
    """Reject a variant in review with a reason; the slot's live variant is untouched."""
    reason = reason.strip()
    if not reason:
        raise DecisionError("Give a reason for rejecting", field="reason")
    variant = _lock_in_review(variant, revision, user)
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
    message_notify_on_commit(variant)
    return variant


@transaction.atomic
def variant_request_regeneration(
    *, variant: Variant, user: User | None, note: str, revision: int | None = None
) -> Variant:
    """Ask for a variant to be written again; the note reaches the prompt.

    The text it had is kept in the audit trail (the variant keeps its row). The
    revision is bumped so that a form showing the old text cannot approve the new one.
    """
    variant = _lock_in_review(variant, revision, user)
    variant.revision += 1
    variant.save(update_fields=["revision", "updated"])
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


@dataclass
class BulkResult:
    decided: list[Variant] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (variant pk, why)


@transaction.atomic
def variants_decide(
    *,
    variants: Iterable[Variant],
    user: User | None,
    action: str,
    reason: str = "",
    revisions: dict[int, int] | None = None,
) -> BulkResult:
    """Approve or reject several variants: one decision service call per variant.

    All in one transaction, each in a savepoint of its own, so a variant that is
    refused (decided by someone else, stale revision) leaves the others decided.
    """
    if action not in ("approve", "reject"):
        raise DecisionError(f"No bulk action '{action}'; approve or reject", field="action")
    if action == "reject" and not reason.strip():
        raise DecisionError("Give a reason for rejecting", field="reason")
    revisions = revisions or {}
    result = BulkResult()
    for variant in variants:
        revision = revisions.get(variant.pk)
        try:
            with transaction.atomic():
                if action == "approve":
                    decided = variant_approve(variant=variant, user=user, revision=revision)
                else:
                    decided = variant_reject(
                        variant=variant, user=user, reason=reason, revision=revision
                    )
        except DecisionError as exc:
            result.refused.append((variant.pk, str(exc)))
        else:
            result.decided.append(decided)
    return result


def _conflicts_refused(func: Callable[P, R]) -> Callable[P, R]:
    """Run a decision in a savepoint; a constraint the database enforces between
    concurrent decisions (one published variant a slot) refuses it with a message."""

    @functools.wraps(func)
    def decide(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with transaction.atomic():
                return func(*args, **kwargs)
        except IntegrityError:
            raise SlotTaken(
                "Another decision on this slot was made at the same moment; nothing "
                "changed. Reload to see it."
            ) from None

    return decide


@_conflicts_refused
def decision_undo(*, event: ReviewEvent, user: User) -> Variant:
    """Take back the user's most recent decision, if nothing happened to the variant since.

    1. Refuse unless `event` is an approval, edit or rejection by `user`, and their
       latest one.
    2. Lock the variant; refuse if anything happened to it since (a later event,
       or a status other than the one the decision left it in).
    3. Put it back in review: an edit gets its text back; an approval or edit
       publishes again the variant it retired, if that one was left alone since.
    4. Record an "undo" event on the variant (and on the variant made live again).
    """
    if event.user_id != getattr(user, "pk", None) or event.action not in UNDOABLE:
        raise DecisionError("You can only undo your own approvals, edits and rejections")
    latest = (
        ReviewEvent.objects.filter(user=user, action__in=UNDOABLE)
        .order_by("-id")
        .values_list("pk", flat=True)
        .first()
    )
    if latest != event.pk:
        raise DecisionError("Only your most recent decision can be undone")

    variant: Variant = Variant.objects.select_for_update().get(pk=event.variant_id)
    left_as = (
        Variant.Status.REJECTED if event.action == ReviewEvent.Action.REJECT
        else Variant.Status.PUBLISHED
    )  # fmt: skip
    if variant.review_events.filter(pk__gt=event.pk).exists():
        raise DecisionError(f"Too late to undo. {_stale_message(variant, user)}")
    if variant.status != left_as:
        raise DecisionError(
            f"Too late to undo: variant {variant.pk} is {variant.get_status_display().lower()} now"
        )

    restored = None
    if left_as == Variant.Status.PUBLISHED:
        retire = (
            # The latest retirement this variant caused: its publishing by `event`
            # (an imported approval's retire event comes after the approval's own).
            ReviewEvent.objects.filter(action=ReviewEvent.Action.RETIRE, replaced_by=variant)
            .order_by("-id")
            .first()
        )
        if retire is not None:
            previous = Variant.objects.select_for_update().get(pk=retire.variant_id)
            untouched = not previous.review_events.filter(pk__gt=retire.pk).exists()
            if untouched and previous.status == Variant.Status.RETIRED:
                restored = previous

    text_before = variant.text
    if event.action == ReviewEvent.Action.EDIT:
        variant.text = event.text_before
    variant.status = Variant.Status.IN_REVIEW
    variant.published = None
    variant.revision += 1
    # Unpublish first: the slot may hold only one published variant at a time.
    variant.save(update_fields=["text", "status", "published", "revision", "updated"])
    at = timezone.localtime(event.created).strftime("%H:%M")
    ReviewEvent.objects.create(
        variant=variant,
        user=user,
        action=ReviewEvent.Action.UNDO,
        reason=f"Undid “{event.get_action_display()}” of {at}",
        text_before=text_before,
        text_after=variant.text,
    )
    if restored is not None:
        restored.status = Variant.Status.PUBLISHED
        restored.revision += 1
        restored.save(update_fields=["status", "revision", "updated"])
        ReviewEvent.objects.create(
            variant=restored,
            user=user,
            action=ReviewEvent.Action.UNDO,
            reason=f"Live again: the approval of variant {variant.pk} was undone",
        )
    return variant
