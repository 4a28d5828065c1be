import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from review.services import DecisionImportError, decisions_import


class Command(BaseCommand):
    help = (
        "Import review decisions exported by export_decisions from another instance: all "
        "or nothing; importing twice changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)

    def handle(self, *args, file: Path, **options):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"{file}: cannot read it as JSON ({exc})") from exc
        try:
            result = decisions_import(data=data)
        except DecisionImportError as exc:
            raise CommandError(f"{file}: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"{result.imported} decisions imported ({result.already_there} already here); "
                f"{result.published} variants published, {result.rejected} rejected, "
                f"{result.kept_local} already decided here kept as they were"
            )
        )
