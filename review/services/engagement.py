"""Engagement events posted back by delivery systems, stored once each."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from generation.errors import ServiceError
from generation.models import Customer, Product, Prompt, Segment, Variant
from review.models import ApiToken, EngagementEvent, Experiment, ExperimentWeights


class EngagementError(ServiceError):
    """Events that name what no longer exists; `errors` maps each field to its message."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors

    def body(self) -> dict[str, object]:
        return dict(self.errors)


@transaction.atomic
def engagement_record(*, events: list[dict[str, Any]], token: ApiToken | None = None) -> int:
    """Store validated events once each; return how many were new.

    1. Events repeated in the batch count once (the first wins).
    2. Every exposure must still point at a prompt, a product, (for a variant's
       exposure) a variant and (for an experiment's) an experiment that exist;
       otherwise nothing of the batch is written. An experiment's exposure also records
       the arm, the shares in force, the probability the arm was served with, whether
       the visitor was randomized and the visitor's hash, as the signed id says.
    3. Events whose id we already hold are skipped; the unique event id keeps two
       concurrent posts of one event from both counting it.
    """
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        unique.setdefault(event["event_id"], event)
    exposures = {e["event_id"]: e["exposure_id"] for e in unique.values()}

    def existing(model: type[Model], ids: Iterable[int | None]) -> set[int]:
        wanted = {i for i in ids if i is not None}
        if not wanted:
            return set()
        return set(model._default_manager.filter(pk__in=wanted).values_list("pk", flat=True))

    prompts = existing(Prompt, (x.prompt_id for x in exposures.values()))
    products = existing(Product, (x.product_id for x in exposures.values()))
    variants = existing(Variant, (x.variant_id for x in exposures.values()))
    segments = existing(Segment, (x.segment_id for x in exposures.values()))
    customers = existing(Customer, (x.customer_id for x in exposures.values()))
    experiments = existing(Experiment, (x.experiment_id for x in exposures.values()))
    weights = existing(ExperimentWeights, (x.weights_id for x in exposures.values()))
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
                ("experiment", x.experiment_id, experiments),
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
            experiment_id=x.experiment_id,
            # The shares' row goes with its experiment; a row removed by hand is
            # forgotten rather than refusing the event.
            weights_id=x.weights_id if x.weights_id in weights else None,
            arm=x.arm if x.experiment_id is not None else "",
            probability=x.probability,
            randomized=x.randomized,
            visitor=x.visitor,
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
