import time
from collections import Counter
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from generation.errors import PromptHasNoVersion
from generation.models import GenerationRun, Product, Prompt, Segment
from generation.services import (
    RunError,
    queued_slots,
    run_create,
    run_estimate,
    segment_slots,
)


class Command(BaseCommand):
    help = (
        "Start a generation run of a prompt's current version over products × segments "
        "(all of them unless narrowed). Prints the slot count and the estimated tokens and "
        "cost first. Workers do the writing; --wait follows the run."
    )

    def add_arguments(self, parser):
        parser.add_argument("--prompt", required=True, help="Prompt slug")
        parser.add_argument("--products", help="Comma-separated SKUs (default: all)")
        parser.add_argument("--segments", help="Comma-separated segment slugs (default: all)")
        parser.add_argument("--budget", help="Stop before spending more than this, in US dollars")
        parser.add_argument(
            "--estimate", action="store_true", help="Print the estimate and start nothing"
        )
        parser.add_argument("--wait", action="store_true", help="Wait until the run finishes")

    def handle(self, *args, prompt, products, segments, budget, estimate, wait, **options):
        prompt_obj = Prompt.objects.filter(slug=prompt).first()
        if prompt_obj is None:
            raise CommandError(f"Unknown prompt '{prompt}'")
        try:
            version = prompt_obj.require_version()
        except PromptHasNoVersion as exc:
            raise CommandError(str(exc)) from exc
        products = _pick(Product, "sku", products) or list(Product.objects.all())
        segments = _pick(Segment, "slug", segments) or list(
            Segment.objects.filter(member_count__gt=0)
        )
        try:
            budget = Decimal(budget) if budget else None
        except InvalidOperation as exc:
            raise CommandError(f"--budget must be a number of dollars, not '{budget}'") from exc
        if products and segments:
            todo = queued_slots(version, products, segments)
            guess = run_estimate(
                version=version,
                products=products,
                audiences=segment_slots(prompt_obj, segments),
                slots=len(todo),
                per_language=Counter(language for _p, _s, language in todo),
            )
            self.stdout.write(f"Estimate for {version}: {guess}")
        if estimate:
            return
        try:
            run = run_create(prompt=prompt_obj, products=products, segments=segments, budget=budget)
        except RunError as exc:
            raise CommandError(f"{exc}\nNothing was queued.") from exc
        self.stdout.write(f"Run {run.pk}: {run.total} slots queued ({run.prompt_version})")
        while wait and run.status in (GenerationRun.Status.PENDING, GenerationRun.Status.RUNNING):
            time.sleep(1)
            run.refresh_from_db()
            self.stdout.write(
                f"  {run.succeeded} written, {run.failed} failed of {run.total}, ${run.cost:.4f}"
            )
        style = (
            self.style.SUCCESS if run.status != GenerationRun.Status.FAILED else self.style.ERROR
        )
        self.stdout.write(style(f"Run {run.pk} is {run.get_status_display()}. {run.error}".strip()))


def _pick(model, key: str, csv: str | None):
    if not csv:
        return None
    wanted = [v.strip() for v in csv.split(",") if v.strip()]
    found = {getattr(o, key): o for o in model.objects.filter(**{f"{key}__in": wanted})}
    missing = [v for v in wanted if v not in found]
    if missing:
        raise CommandError(f"Unknown {model._meta.verbose_name} {key}: {', '.join(missing)}")
    return [found[v] for v in wanted]
