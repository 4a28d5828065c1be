"""Writes with side effects in the review domain: decisions, their undo, and publishing."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.utils import timezone

from generation.messages import message_notify_on_commit
from generation.models import Customer, Product, Prompt, Segment, Variant
from review.models import EngagementEvent, ReviewEvent

# The decisions a reviewer can take back (see decision_undo).
UNDOABLE = (ReviewEvent.Action.APPROVE, ReviewEvent.Action.EDIT, ReviewEvent.Action.REJECT)


class DecisionError(ValueError):
    """A decision that cannot be taken on the variant as it stands now."""


class StaleDecision(DecisionError):
    """A decision made on an older revision of the variant than the one stored."""


class SlotTaken(StaleDecision):
    """Another variant of the slot went live at the same instant (the database's one
    published variant a slot refused this one): nothing was changed."""


def _who(user) -> str:
    return user.get_username() if user is not None else "the system"


def _stale_message(variant: Variant, user=None) -> str:
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


def _lock_in_review(variant: Variant, revision: int | None = None, user=None) -> Variant:
    """Lock the variant's row; refuse unless it is in review (and at `revision`, if given).

    The revision is what the reviewer saw: every decision bumps it, so a form made
    before someone else's decision carries an older one.
    """
    locked = Variant.objects.select_for_update().get(pk=variant.pk)
    if revision is not None and locked.revision != revision:
        raise StaleDecision(_stale_message(locked, user))
    if locked.status != Variant.Status.IN_REVIEW:
        raise DecisionError(
            f"Variant {locked.pk} is {locked.get_status_display().lower()}, not in review; "
            "someone may have decided it already"
        )
    return locked


def _live_in_slot(variant: Variant):
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


def _publish(variant: Variant, *, user, text: str | None, reason: str, record: bool = True) -> None:
    """The one way copy goes live: approval, the review policy (through
    variant_approve) and decision imports all come here. Retire the slot's live
    variant (a retire event pointing at its replacement, a new revision), publish this
    one with a new revision and, unless `record` is off (an imported decision brings
    its own event), its approval event. Live copy hears of both saves (post_save);
    the caller sends the message callback (message_notify_on_commit)."""
    now = timezone.now()
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
    edited = text is not None and text.strip() and text.strip() != variant.text
    if edited:
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
    user,
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
            f"{variant.pk} stays in review. Reload to see it."
        ) from None
    message_notify_on_commit(variant)
    return variant


@transaction.atomic
def variant_reject(*, variant: Variant, user, reason: str, revision: int | None = None) -> Variant:
    """Reject a variant in review with a reason; the slot's live variant is untouched."""
    reason = reason.strip()
    if not reason:
        raise DecisionError("Give a reason for rejecting")
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
    *, variant: Variant, user, note: str, revision: int | None = None
) -> Variant:
    """Ask for a variant to be written again; the note reaches the prompt.

    The text it had is kept in the audit trail (the variant keeps its row). The
    revision is bumped so that a form showing the old text cannot approve the new one.
    """
    from generation.services import RunError, variant_regenerate

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
    user,
    action: str,
    reason: str = "",
    revisions: dict[int, int] | None = None,
) -> BulkResult:
    """Approve or reject several variants: one decision service call per variant.

    All in one transaction, each in a savepoint of its own, so a variant that is
    refused (decided by someone else, stale revision) leaves the others decided.
    """
    if action not in ("approve", "reject"):
        raise DecisionError(f"No bulk action '{action}'; approve or reject")
    if action == "reject" and not reason.strip():
        raise DecisionError("Give a reason for rejecting")
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


def _conflicts_refused(func):
    """Run a decision in a savepoint; a constraint the database enforces between
    concurrent decisions (one published variant a slot) refuses it with a message."""

    @functools.wraps(func)
    def decide(*args, **kwargs):
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
def decision_undo(*, event: ReviewEvent, user) -> Variant:
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

    variant = Variant.objects.select_for_update().get(pk=event.variant_id)
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


class EngagementError(ValueError):
    """Events that name what no longer exists; `errors` maps each field to its message."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@transaction.atomic
def engagement_record(*, events: list[dict], token=None) -> int:
    """Store validated events once each; return how many were new.

    1. Events repeated in the batch count once (the first wins).
    2. Every exposure must still point at a prompt, a product and (for a variant's
       exposure) a variant that exist; otherwise nothing of the batch is written.
    3. Events whose id we already hold are skipped; the unique event id keeps two
       concurrent posts of one event from both counting it.
    """
    unique: dict[str, dict] = {}
    for event in events:
        unique.setdefault(event["event_id"], event)
    exposures = {e["event_id"]: e["exposure_id"] for e in unique.values()}

    def existing(model, ids) -> set[int]:
        ids = {i for i in ids if i is not None}
        return set(model.objects.filter(pk__in=ids).values_list("pk", flat=True)) if ids else set()

    prompts = existing(Prompt, (x.prompt_id for x in exposures.values()))
    products = existing(Product, (x.product_id for x in exposures.values()))
    variants = existing(Variant, (x.variant_id for x in exposures.values()))
    segments = existing(Segment, (x.segment_id for x in exposures.values()))
    customers = existing(Customer, (x.customer_id for x in exposures.values()))
    index = {
        event_id: i for i, event_id in reversed(list(enumerate(e["event_id"] for e in events)))
    }
    errors: dict[str, list[str]] = {}
    for event_id, x in exposures.items():
        gone = [
            what
            for what, pk, known in (
                ("prompt", x.prompt_id, prompts),
                ("product", x.product_id, products),
                ("variant", x.variant_id, variants),
            )
            if pk is not None and pk not in known
        ]
        if gone:
            errors[f"events[{index[event_id]}].exposure_id"] = [
                f"The {' and '.join(gone)} it names no longer exist{'s' if len(gone) == 1 else ''}."
            ]
    if errors:
        raise EngagementError(errors)

    already = set(
        EngagementEvent.objects.filter(token=token, event_id__in=unique).values_list(
            "event_id", flat=True
        )
    )
    now = timezone.now()
    new = [
        EngagementEvent(
            event_id=event_id,
            kind=event["type"],
            exposure_id=event["exposure_id"].encode(),
            prompt_id=x.prompt_id,
            product_id=x.product_id,
            segment_id=x.segment_id if x.segment_id in segments else None,
            customer_id=x.customer_id if x.customer_id in customers else None,
            variant_id=x.variant_id,
            language=x.language,
            value=event.get("value"),
            occurred=event.get("occurred") or now,
            token=token,
        )
        for event_id, event in unique.items()
        if event_id not in already
        for x in [event["exposure_id"]]
    ]
    EngagementEvent.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


# --- moving decisions between instances ------------------------------------------------

DECISIONS_FORMAT = "hyperpers-decisions"
DECISIONS_VERSION = 1
# The decisions whose effect an import replays on a variant still in review.
_PUBLISHING = (ReviewEvent.Action.APPROVE, ReviewEvent.Action.EDIT)


class DecisionImportError(ValueError):
    """A decisions file that cannot be imported; `problems` names each entry."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s); nothing was imported:\n{listed}{more}")


def _slot_of(variant: Variant) -> dict:
    return {
        "prompt": variant.prompt.slug,
        "version": variant.prompt_version.number,
        "product": variant.product.sku,
        "segment": variant.segment.slug if variant.segment_id else None,
        "customer": variant.customer.external_id if variant.customer_id else None,
        "purpose": variant.purpose,
    }


def decisions_export() -> dict:
    """Every decision, oldest first, with the variant it was taken on named by its slot
    (prompt, version, product, segment or customer, purpose), which another instance
    that imported the same catalog and ran the same prompt versions also has."""
    events = ReviewEvent.objects.select_related(
        "user",
        "variant__prompt",
        "variant__prompt_version",
        "variant__product",
        "variant__segment",
        "variant__customer",
    ).order_by("created", "id")
    return {
        "format": DECISIONS_FORMAT,
        "version": DECISIONS_VERSION,
        "exported": timezone.now().isoformat(),
        "decisions": [
            {
                "variant": _slot_of(e.variant),
                "action": e.action,
                "user": e.user.get_username() if e.user else None,
                "reason": e.reason,
                "text_before": e.text_before,
                "text_after": e.text_after,
                "created": e.created.isoformat(),
            }
            for e in events.iterator(chunk_size=2000)
        ],
    }


def _find_variant(slot: dict) -> Variant | None:
    return (
        Variant.objects.filter(
            prompt__slug=slot.get("prompt"),
            prompt_version__number=slot.get("version"),
            product__sku=slot.get("product"),
            segment__slug=slot.get("segment") if slot.get("segment") else None,
            customer__external_id=slot.get("customer") if slot.get("customer") else None,
            purpose=slot.get("purpose") or "",
        )
        .select_related("prompt", "prompt_version", "product", "segment", "customer")
        .first()
    )


@dataclass
class DecisionImport:
    imported: int = 0
    already_there: int = 0
    published: int = 0
    rejected: int = 0
    kept_local: int = 0


@transaction.atomic
def decisions_import(*, data: object) -> DecisionImport:
    """Import an export of decisions: all of it or nothing.

    1. Check the format, and every entry: its fields, and that this instance has the
       variant it names; DecisionImportError lists every problem.
    2. Add each decision to the audit trail with its original time and author (matched
       by username; a stranger is named in the reason). One already here (same variant,
       action, time) is skipped, so importing twice changes nothing.
    3. A variant still in review here takes the effect of its last imported decision:
       approved (with the decided text) through the same publish path as an approval
       here (retiring what is live here, with its event, and telling a message's
       caller), or rejected. One decided here already keeps its local state, which the
       result counts. Retire events in the file are not imported: they were the other
       instance's consequences, and publishing here records this instance's own.
    """
    from django.contrib.auth import get_user_model
    from django.utils.dateparse import parse_datetime

    if not isinstance(data, dict) or data.get("format") != DECISIONS_FORMAT:
        raise DecisionImportError([f"not a {DECISIONS_FORMAT} file"])
    if data.get("version") != DECISIONS_VERSION:
        raise DecisionImportError([f"version {data.get('version')!r}; this reads 1"])
    entries = data.get("decisions")
    if not isinstance(entries, list):
        raise DecisionImportError(["'decisions' must be a list"])
    problems: list[str] = []
    resolved = []
    for number, entry in enumerate(entries, start=1):
        where = f"decision {number}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: not an object")
            continue
        action, created = entry.get("action"), parse_datetime(str(entry.get("created", "")))
        if action not in ReviewEvent.Action.values:
            problems.append(f"{where}: unknown action {action!r}")
            continue
        if created is None:
            problems.append(f"{where}: 'created' is not a date and time")
            continue
        slot = entry.get("variant")
        variant = _find_variant(slot) if isinstance(slot, dict) else None
        if variant is None:
            problems.append(f"{where}: no variant here for {slot}")
            continue
        resolved.append((entry, variant, action, created))
    if problems:
        raise DecisionImportError(problems)

    users = {u.get_username(): u for u in get_user_model().objects.all()}
    result = DecisionImport()
    last: dict[int, tuple] = {}
    for entry, variant, action, created in resolved:
        if action == ReviewEvent.Action.RETIRE:
            # A consequence, not a decision: publishing here retires what is live here,
            # with its own event pointing at the replacement.
            continue
        if ReviewEvent.objects.filter(variant=variant, action=action, created=created).exists():
            result.already_there += 1
            continue
        author = entry.get("user")
        reason = str(entry.get("reason") or "")
        if author and author not in users:
            reason = f"{reason} (by {author} on another instance)".strip()
        event = ReviewEvent.objects.create(
            variant=variant,
            user=users.get(author),
            action=action,
            reason=reason,
            text_before=str(entry.get("text_before") or ""),
            text_after=str(entry.get("text_after") or ""),
        )
        # auto_now_add stamps the import's time; the trail keeps the decision's own.
        ReviewEvent.objects.filter(pk=event.pk).update(created=created)
        result.imported += 1
        if action in (*_PUBLISHING, ReviewEvent.Action.REJECT):
            last[variant.pk] = (variant, action, entry)
    for variant, action, entry in last.values():
        variant.refresh_from_db()
        if variant.status != Variant.Status.IN_REVIEW:
            result.kept_local += 1
            continue
        if action in _PUBLISHING:
            # The same path as an approval here: the replaced copy is retired with its
            # event and revision; the decision's own event came with the file.
            text = str(entry.get("text_after") or "") or None
            _publish(variant, user=users.get(entry.get("user")), text=text, reason="", record=False)
            result.published += 1
        else:
            variant.status = Variant.Status.REJECTED
            variant.revision += 1
            variant.save(update_fields=["status", "revision", "updated"])
            result.rejected += 1
        message_notify_on_commit(variant)
    return result
