from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation.importers import ImportFileError
from generation.services import customers_import


class Command(BaseCommand):
    help = (
        "Import customers from a CSV or JSONL export. Re-importing updates by external id. "
        "A bad row stops the import and nothing is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)

    def handle(self, *args, file: Path, **options):
        try:
            result = customers_import(path=file)
        except ImportFileError as exc:
            raise CommandError(f"{exc}\nNothing was imported.") from exc
        self.stdout.write(self.style.SUCCESS(f"Customers from {file}: {result}"))
