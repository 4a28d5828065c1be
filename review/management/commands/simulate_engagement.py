"""Post made-up engagement for a prompt's published variants and their base copy, so the
metrics dashboard has something to show in a demo. Never run it on real data.

With --experiment, it drives a running experiment instead, the honest way: visitors
with random ids ask the live copy through the real delivery function (which picks
their arm), and the impressions and clicks (or conversions: the experiment's metric)
of what they were shown go through the engagement service, at a true rate per arm
given on the command line, e.g. `--experiment 3 --rates control=0.04,v12=0.04,v15=0.06`.
Under Thompson sampling the shares are recomputed between rounds, as beat would.

Otherwise, each published variant and the base copy of its slot get impressions, clicks and
conversions drawn at true rates that differ per variant: most do somewhat better
than the base copy, one does clearly worse. The events go through
review.services.engagement_record with exposures built as the live endpoint builds
them, like events a delivery system posts. Event ids come from the seed, so running
it again with the same seed adds nothing.
"""

from __future__ import annotations

import math
import random
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from generation.models import Prompt, Variant
from review import delivery, metrics, services
from review.delivery import Exposure
from review.experiments.allocation import CONTROL
from review.models import Experiment, ExperimentArm
from review.services import experiments

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
        parser.add_argument(
            "--experiment",
            type=int,
            help="Drive this running experiment's slot through the live path instead",
        )
        parser.add_argument(
            "--rates",
            help="With --experiment: each serving arm's true rate of the experiment's "
            "metric, e.g. control=0.04,v12=0.04,v15=0.06",
        )
        parser.add_argument(
            "--visitors",
            type=int,
            default=20_000,
            help="With --experiment: how many visitors (default 20,000)",
        )
        parser.add_argument(
            "--rounds",
            type=int,
            default=10,
            help="With --experiment: rounds of visitors; a bandit is reweighed after "
            "each (default 10)",
        )

    def handle(
        self,
        *args,
        prompt: str | None,
        impressions: int,
        seed: int,
        experiment: int | None = None,
        rates: str | None = None,
        visitors: int = 20_000,
        rounds: int = 10,
        **options,
    ) -> None:
        if experiment is not None:
            if prompt:
                raise CommandError("--experiment drives one slot: leave out --prompt")
            self._experiment(experiment, rates, visitors=visitors, rounds=rounds, seed=seed)
            return
        if rates is not None:
            raise CommandError("--rates goes with --experiment")
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

    # --- an experiment, driven through the live path -----------------------------------

    def _experiment(
        self, experiment_id: int, rates_text: str | None, *, visitors: int, rounds: int, seed: int
    ) -> None:
        """1. Check the experiment runs and every arm that may be served has a rate.
        2. Each round: visitors with random ids (from the seed) ask delivery.live_copy
           for the slot; each posts an impression of the exposure it was handed and,
           with its arm's true rate, a click (and for a conversion metric, a
           conversion), through engagement_record.
        3. A bandit's shares are recomputed after each round (experiment_reweigh), so
           later visitors are served by the new shares, as beat would do.
        4. Print what each arm got and what the analysis says."""
        experiment = (
            Experiment.objects.select_related("prompt", "product", "segment")
            .filter(pk=experiment_id)
            .first()
        )
        if experiment is None:
            raise CommandError(f"Unknown experiment {experiment_id}")
        if not experiment.is_running:
            raise CommandError(f"Experiment {experiment_id} has stopped")
        if visitors < 1:
            raise CommandError("--visitors must be at least 1")
        if not 1 <= rounds <= visitors:
            raise CommandError("--rounds must be between 1 and --visitors")
        serving = [CONTROL] + [
            a.key
            for a in experiment.arms.filter(
                variant__isnull=False, status=ExperimentArm.Status.ACTIVE
            ).order_by("id")
        ]
        rates = self._rates(rates_text, serving)
        rng = random.Random(f"{seed}:experiment-{experiment.pk}")
        seen: dict[str, list[int]] = {arm: [0, 0] for arm in serving}
        recorded = 0
        for round_number in range(rounds):
            size = visitors // rounds + (round_number < visitors % rounds)
            events: list[dict] = []
            for _ in range(size):
                visitor = f"sim-{rng.getrandbits(64):016x}"
                exposure = self._ask(experiment, visitor)
                seen.setdefault(exposure.arm, [0, 0])[0] += 1
                now = timezone.now()
                key = f"sim-{seed}-e{experiment.pk}-{visitor}"
                events.append(self._event(f"{key}-i", "impression", exposure, now))
                if rng.random() < rates.get(exposure.arm, 0.0):
                    seen[exposure.arm][1] += 1
                    events.append(self._event(f"{key}-c", "click", exposure, now))
                    if experiment.metric == Experiment.Metric.CONVERSION:
                        value = Decimal(rng.randrange(2000, 20000)) / 100
                        events.append(self._event(f"{key}-v", "conversion", exposure, now, value))
                if len(events) >= BATCH:
                    recorded += services.engagement_record(events=events)
                    events = []
            if events:
                recorded += services.engagement_record(events=events)
            if experiment.allocation == Experiment.Allocation.THOMPSON:
                experiments.experiment_reweigh(experiment=experiment)
        self._report(experiment, seen, recorded)

    @staticmethod
    def _rates(text: str | None, serving: list[str]) -> dict[str, float]:
        """`control=0.04,v12=0.05`: a rate between 0 and 1 for every serving arm."""
        if not text:
            raise CommandError(
                "--experiment needs --rates, one for each serving arm: "
                + ",".join(f"{arm}=0.05" for arm in serving)
            )
        rates: dict[str, float] = {}
        for part in text.split(","):
            arm, sep, value = part.strip().partition("=")
            try:
                rate = float(value) if sep else math.nan
            except ValueError:
                rate = math.nan
            if not 0 <= rate <= 1:  # also refuses NaN
                raise CommandError(f"--rates: '{part.strip()}' is not arm=rate with 0 <= rate <= 1")
            rates[arm.strip()] = rate
        missing = [arm for arm in serving if arm not in rates]
        extra = sorted(set(rates) - set(serving))
        if missing or extra:
            problems = []
            if missing:
                problems.append("no rate for " + ", ".join(missing))
            if extra:
                problems.append("not a serving arm: " + ", ".join(extra))
            raise CommandError(f"--rates: {'; '.join(problems)} (serving: {', '.join(serving)})")
        return rates

    @staticmethod
    def _ask(experiment: Experiment, visitor: str) -> Exposure:
        """What the live path shows `visitor` in the experiment's slot, as the exposure
        id a client would post back (decoded, so its signature is checked)."""
        (live,) = delivery.live_copy(
            prompt_slug=experiment.prompt.slug,
            skus=[experiment.product.sku],
            segment_slug=experiment.segment.slug,
            wanted=[experiment.language] if experiment.language else None,
            visitor=visitor,
        )
        exposure = Exposure.decode(str(live.as_dict()["exposure_id"]))
        if exposure.experiment_id != experiment.pk or not exposure.randomized:
            raise CommandError(
                f"The live path did not serve experiment {experiment.pk} to a visitor "
                f"(it answered {exposure.arm} outside the experiment): is the slot's "
                "variant still published?"
            )
        return exposure

    def _report(self, experiment: Experiment, seen: dict[str, list[int]], recorded: int) -> None:
        self.stdout.write(f"experiment {experiment.pk}: {recorded} events recorded")
        for arm, (shown, clicked) in seen.items():
            rate = f"{clicked / shown:.2%}" if shown else "-"
            self.stdout.write(f"  {arm}: {shown} visitors, {clicked} {experiment.metric}s ({rate})")
        analysis = experiments.experiment_analysis(experiment)
        if analysis is None:
            self.stdout.write("  no analysis yet")
            return
        ratio = analysis.sample_ratio
        verdict = "mismatch" if ratio.mismatch else "ok"
        p = "" if ratio.p_value is None else f", p = {ratio.p_value:.3g}"
        self.stdout.write(f"  sample-ratio check: {verdict}{p}")
        for arm, decision in analysis.decisions.items():
            self.stdout.write(f"  {arm}: {decision.decision} ({decision.reason})")
