"""The review policy of a prompt, applied to freshly written copy: who reads what.

- review_all: every variant waits in the review queue;
- sample: a stable N% (by variant id) waits for people; the others are published when
  every check passes, and wait in review when one fails;
- auto: published when every check passes, else reviewed.

Copy for a slot that runs an experiment always waits for a person: publishing it
would stop the experiment, and only a person can say whether it replaces the live
variant or joins the experiment as a challenger.

The engine sends generation.signals.variants_written in its write transaction, right
after the copy is written; `variants_written` below receives it (connected in
review/apps.py) and publishes through the one publish path, services.variant_approve.
"""

from __future__ import annotations

import hashlib
import logging

from django.db import IntegrityError, transaction

from generation.models import Prompt, Variant
from review.services import DecisionError, variant_approve
from review.services.experiments import running_for

logger = logging.getLogger(__name__)

POLICY_REASON = "Published by the review policy: every check passed"


def in_sample(variant_id: int, percent: int) -> bool:
    """Stable: the same variant is in or out of the sample every time it is asked."""
    digest = hashlib.blake2b(str(variant_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100 < percent


def policy_apply(variant_ids: list[int]) -> dict[str, int]:
    """Apply each variant's prompt's review policy to freshly written variants (in
    review). Returns how many were published, sampled for review and held (a check
    failed). Runs in the caller's transaction."""
    counts = {"auto": 0, "sampled": 0, "held": 0}
    variants = (
        Variant.objects.filter(pk__in=variant_ids, status=Variant.Status.IN_REVIEW)
        .exclude(prompt__review_policy=Prompt.ReviewPolicy.REVIEW_ALL)
        .select_related("prompt")
    )
    for variant in variants:
        prompt = variant.prompt
        if prompt.review_policy == Prompt.ReviewPolicy.SAMPLE and in_sample(
            variant.pk, prompt.review_sample_percent
        ):
            outcome = "sampled"
        elif (
            variant.checks_failed
            or variant.regeneration_note
            or any(c.get("hold") for c in variant.checks or [])
        ):
            # A failed check, a check that asks for a person (weak signs of injected
            # instructions), or a reviewer's course correction: people read the result.
            outcome = "held"
        elif running_for(variant) is not None:
            # Its slot runs an experiment: publishing would stop it. A person decides
            # whether the copy replaces the live variant or joins the experiment.
            outcome = "held"
        else:
            outcome = "auto"
        if outcome == "auto":
            try:
                # A savepoint: a slot another task published a moment ago (the unique
                # constraint) must not roll back the whole batch of written copy.
                with transaction.atomic():
                    variant_approve(variant=variant, user=None, reason=POLICY_REASON)
            except (IntegrityError, DecisionError) as exc:
                logger.info("variant %s left in review by the policy: %s", variant.pk, exc)
                outcome = "held"
        Variant.objects.filter(pk=variant.pk).update(policy_outcome=outcome)
        counts[outcome] += 1
    return counts


def variants_written(sender, *, variant_ids: list[int], **kwargs) -> None:
    """generation.signals.variants_written: apply the policy to the fresh copy."""
    policy_apply(variant_ids)
