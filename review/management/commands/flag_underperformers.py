"""Flag the variants doing significantly worse than the base copy, and clear the flag on
those no longer worse (review.metrics.metrics_flag_underperformers)."""

from django.core.management.base import BaseCommand, CommandError

from generation.models import Prompt
from review import metrics


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("--prompt", help="A prompt's slug; default: every prompt")

    def handle(self, *args, prompt: str | None, **options) -> None:
        chosen = None
        if prompt:
            chosen = Prompt.objects.filter(slug=prompt).first()
            if chosen is None:
                raise CommandError(f"Unknown prompt '{prompt}'")
        n = metrics.metrics_flag_underperformers(prompt=chosen)
        scope = f"prompt '{chosen.slug}'" if chosen else "every prompt"
        self.stdout.write(
            f"{n} variant{'s' if n != 1 else ''} flagged as underperforming ({scope}; "
            f"at least {metrics.min_impressions()} impressions an arm, "
            f"{metrics.confidence_level():.0%} confidence)"
        )
