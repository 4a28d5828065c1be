"""Post made-up engagement for a prompt's published variants and their base copy, so the
metrics dashboard has something to show in a demo. Never run it on real data.

Each published variant and the base copy of its slot get impressions, clicks and
conversions drawn at true rates that differ per variant: most do somewhat better
than the base copy, one does clearly worse. The events go through
review.services.engagement_record with exposures built as the live endpoint builds
them, like events a delivery system posts. Event ids come from the seed, so running
it again with the same seed adds nothing.
"""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from generation.models import Prompt, Variant
from review import metrics, services
from review.delivery import Exposure

BATCH = 1000
DAYS = 14
CONVERT_AFTER_CLICK = 0.12  # the base copy's share of clicks that convert
WORSE = 0.35  # the clearly worse variant's CTR, as a share of its base copy's


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("--prompt", help="A prompt's slug; default: every prompt")
        parser.add_argument(
            "--impressions",
            type=int,
            default=500,
            help="Impressions per variant and per base-copy slot (default 500)",
        )
        parser.add_argument("--seed", type=int, default=7, help="Same seed, same events")

    def handle(self, *args, prompt: str | None, impressions: int, seed: int, **options) -> None:
        prompts = Prompt.objects.order_by("slug")
        if prompt:
            prompts = prompts.filter(slug=prompt)
            if not prompts.exists():
                raise CommandError(f"Unknown prompt '{prompt}'")
        if impressions < 1:
            raise CommandError("--impressions must be at least 1")
        for chosen in prompts:
            variants = list(Variant.objects.published().filter(prompt=chosen).order_by("pk"))
            if not variants:
                self.stdout.write(f"{chosen.slug}: no published variant; nothing to simulate")
                continue
            recorded = self._simulate(chosen, variants, impressions=impressions, seed=seed)
            flagged = metrics.metrics_flag_underperformers(prompt=chosen)
            self.stdout.write(
                f"{chosen.slug}: {recorded} events recorded for {len(variants)} variants and "
                f"their base copy; {flagged} flagged as underperforming"
            )

    def _simulate(self, prompt: Prompt, variants: list[Variant], *, impressions: int, seed: int):
        """1. Draw a base CTR per slot and a lift per variant (one clearly worse).
        2. For every arm, draw each impression's click and each click's conversion.
        3. Record the events in batches through engagement_record."""
        rng = random.Random(f"{seed}:{prompt.slug}")
        worse = rng.randrange(len(variants)) if len(variants) > 1 else None
        now = timezone.now()
        arms: list[tuple[Exposure, float, float]] = []  # exposure, CTR, conversion per click
        base_ctrs: dict[tuple, float] = {}  # per slot, drawn in variant order: no ids
        for index, variant in enumerate(variants):
            # The base copy it is compared with is served in the same language.
            slot = (variant.product_id, variant.segment_id, variant.customer_id, variant.language)
            new_slot = slot not in base_ctrs
            base_ctr = base_ctrs.setdefault(slot, rng.uniform(0.04, 0.07))
            lift = WORSE if index == worse else rng.uniform(0.9, 1.5)
            arms.append(
                (
                    Exposure(prompt.pk, *slot[:3], variant.pk, slot[3]),
                    base_ctr * lift,
                    CONVERT_AFTER_CLICK * rng.uniform(0.9, 1.2),
                )
            )
            if new_slot:
                control = Exposure(prompt.pk, *slot[:3], None, slot[3])
                arms.append((control, base_ctr, CONVERT_AFTER_CLICK))

        events: list[dict] = []
        recorded = 0
        for exposure, ctr, convert in arms:
            arm = exposure.encode().rsplit(":", 1)[0]
            for i in range(impressions):
                # Early enough that a conversion half an hour later is still in the past.
                occurred = now - timedelta(seconds=rng.uniform(3600, DAYS * 86400))
                key = f"sim-{seed}-{arm}-{i}"
                events.append(self._event(f"{key}-i", "impression", exposure, occurred))
                if rng.random() < ctr:
                    clicked = occurred + timedelta(seconds=rng.uniform(2, 60))
                    events.append(self._event(f"{key}-c", "click", exposure, clicked))
                    if rng.random() < convert:
                        value = Decimal(rng.randrange(2000, 20000)) / 100
                        bought = clicked + timedelta(seconds=rng.uniform(30, 1800))
                        events.append(
                            self._event(f"{key}-v", "conversion", exposure, bought, value)
                        )
                if len(events) >= BATCH:
                    recorded += services.engagement_record(events=events)
                    events = []
        if events:
            recorded += services.engagement_record(events=events)
        return recorded

    @staticmethod
    def _event(event_id, kind, exposure, occurred, value=None) -> dict:
        return {
            "event_id": event_id,
            "type": kind,
            "exposure_id": exposure,
            "occurred": occurred,
            "value": value,
        }
