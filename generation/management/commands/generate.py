import time

from django.core.management.base import BaseCommand, CommandError

from generation.models import GenerationRun, Product, Prompt, Segment
from generation.services import RunError, run_create


class Command(BaseCommand):
    help = (
        "Start a generation run of a prompt's current version over products × segments "
        "(all of them unless narrowed). Workers do the writing; --wait follows the run."
    )

    def add_arguments(self, parser):
        parser.add_argument("--prompt", required=True, help="Prompt slug")
        parser.add_argument("--products", help="Comma-separated SKUs (default: all)")
        parser.add_argument("--segments", help="Comma-separated segment slugs (default: all)")
        parser.add_argument("--wait", action="store_true", help="Wait until the run finishes")

    def handle(self, *args, prompt: str, products, segments, wait: bool, **options):
        prompt_obj = Prompt.objects.filter(slug=prompt).first()
        if prompt_obj is None:
            raise CommandError(f"Unknown prompt '{prompt}'")
        try:
            run = run_create(
                prompt=prompt_obj,
                products=_pick(Product, "sku", products),
                segments=_pick(Segment, "slug", segments),
            )
        except RunError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Run {run.pk}: {run.total} slots queued ({run.prompt_version})")
        while wait and run.status in (GenerationRun.Status.PENDING, GenerationRun.Status.RUNNING):
            time.sleep(1)
            run.refresh_from_db()
            self.stdout.write(f"  {run.succeeded} written, {run.failed} failed of {run.total}")
        self.stdout.write(self.style.SUCCESS(f"Run {run.pk} is {run.get_status_display()}"))


def _pick(model, key: str, csv: str | None):
    if not csv:
        return None
    wanted = [v.strip() for v in csv.split(",") if v.strip()]
    found = {getattr(o, key): o for o in model.objects.filter(**{f"{key}__in": wanted})}
    missing = [v for v in wanted if v not in found]
    if missing:
        raise CommandError(f"Unknown {model._meta.verbose_name} {key}: {', '.join(missing)}")
    return [found[v] for v in wanted]
