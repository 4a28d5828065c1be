"""Moving decisions between instances: export every decision by slot, and import
them elsewhere, publishing through the same path as an approval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from generation.callbacks import message_notify_on_commit
from generation.errors import ServiceError
from generation.models import Variant
from review.models import ReviewEvent
from review.services.decisions import _publish

DECISIONS_FORMAT = "hyperpers-decisions"
DECISIONS_VERSION = 1
# The decisions whose effect an import replays on a variant still in review.
_PUBLISHING = (ReviewEvent.Action.APPROVE, ReviewEvent.Action.EDIT)


class DecisionImportError(ServiceError):
    """A decisions file that cannot be imported; `problems` names each entry."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s); nothing was imported:\n{listed}{more}")


def _slot_of(variant: Variant) -> dict[str, object]:
    return {
        "prompt": variant.prompt.slug,
        "version": variant.prompt_version.number,
        "product": variant.product.sku,
        "segment": variant.segment.slug if variant.segment else None,
        "customer": variant.customer.external_id if variant.customer else None,
        "purpose": variant.purpose,
    }


def decisions_export() -> dict[str, object]:
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


def _find_variant(slot: dict[str, Any]) -> Variant | None:
    version = slot.get("version")
    if version is None:
        return None
    return (
        Variant.objects.filter(
            prompt__slug=slot.get("prompt"),
            prompt_version__number=version,
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
    last: dict[int, tuple[Variant, str, dict[str, Any]]] = {}
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
            user=users.get(author) if author else None,
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
            user = users.get(entry["user"]) if entry.get("user") else None
            _publish(variant, user=user, text=text, reason="", record=False)
            result.published += 1
        else:
            variant.status = Variant.Status.REJECTED
            variant.revision += 1
            variant.save(update_fields=["status", "revision", "updated"])
            result.rejected += 1
        message_notify_on_commit(variant)
    return result
