from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation.importers import ImportFileError
from generation.services import products_import


class Command(BaseCommand):
    help = (
        "Import products from our CSV layout or a Magento / Adobe Commerce product export. "
        "Re-importing updates by SKU. A bad row stops the import and nothing is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)

    def handle(self, *args, file: Path, **options):
        try:
            result = products_import(path=file)
        except ImportFileError as exc:
            raise CommandError(f"{exc}\nNothing was imported.") from exc
        self.stdout.write(self.style.SUCCESS(f"Products from {file}: {result}"))
