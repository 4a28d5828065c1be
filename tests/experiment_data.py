"""Test data for experiments: a slot with approved variants, and randomized traffic
to an experiment's arms, as delivery systems post it back (e3 exposure ids)."""

from __future__ import annotations

from generation.models import Variant
from review.delivery import Exposure, visitor_hash
from review.models import EngagementEvent, Experiment
from tests.factories import PromptVersionFactory, VariantFactory


def approved_slot(challengers: int = 2, **live_fields) -> tuple[Variant, list[Variant]]:
    """A segment slot's published variant and `challengers` approved ones (retired,
    from later prompt versions), ready to be arms."""
    live = VariantFactory(status=Variant.Status.PUBLISHED, **live_fields)
    others = [
        VariantFactory(
            status=Variant.Status.RETIRED,
            prompt_version=PromptVersionFactory(
                prompt=live.prompt, number=live.prompt_version.number + n
            ),
            prompt=live.prompt,
            product=live.product,
            segment=live.segment,
            text=f"Challenger {n}: {live.text}",
        )
        for n in range(1, challengers + 1)
    ]
    return live, others


def _exposure(experiment: Experiment, key: str, visitor: str) -> Exposure:
    weights = experiment.weights.latest()
    return Exposure(
        experiment.prompt_id,
        experiment.product_id,
        experiment.segment_id,
        None,
        None if key == "control" else int(key.removeprefix("v")),
        experiment.language,
        experiment_id=experiment.pk,
        weights_id=weights.pk,
        probability=weights.weights.get(key, 0.0),
        randomized=True,
        visitor=visitor_hash(visitor),
    )


def arm_events(experiment: Experiment, arms: dict[str, tuple[int, int]]) -> list[dict]:
    """Events as the engagement service takes them (validated, exposure ids decoded):
    for each arm key, (visitors shown it, of whom clicked); one impression each, and
    one click for the first `clicks` of them."""
    events = []
    for key, (visitors, clicks) in arms.items():
        for i in range(visitors):
            exposure = _exposure(experiment, key, f"{experiment.pk}-{key}-{i}")
            events.append(
                {
                    "event_id": f"e{experiment.pk}-{key}-{i}-i",
                    "type": "impression",
                    "exposure_id": exposure,
                }
            )
            if i < clicks:
                events.append(
                    {
                        "event_id": f"e{experiment.pk}-{key}-{i}-c",
                        "type": "click",
                        "exposure_id": exposure,
                    }
                )
    return events


def arm_traffic(experiment: Experiment, arms: dict[str, tuple[int, int]]) -> None:
    """Store the events of `arm_events` directly, in one bulk insert, as the
    engagement service stores e3 events (experiment, weights, arm, visitor)."""
    rows = []
    for event in arm_events(experiment, arms):
        x = event["exposure_id"]
        rows.append(
            EngagementEvent(
                event_id=event["event_id"],
                kind=event["type"],
                exposure_id=x.encode(),
                prompt_id=x.prompt_id,
                product_id=x.product_id,
                segment_id=x.segment_id,
                variant_id=x.variant_id,
                language=x.language,
                occurred=experiment.started,
                experiment_id=x.experiment_id,
                weights_id=x.weights_id,
                arm=x.arm,
                probability=x.probability,
                randomized=x.randomized,
                visitor=x.visitor,
            )
        )
    EngagementEvent.objects.bulk_create(rows)
