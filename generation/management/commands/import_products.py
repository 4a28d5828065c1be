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
        parser.add_argument(
            "--store-view",
            action="append",
            default=[],
            metavar="CODE=TAG",
            help="The language of a Magento store view whose code is not a language tag "
            "(e.g. --store-view german=de); repeat for each.",
        )

    def handle(self, *args, file: Path, store_view: list[str], **options):
        store_views = {}
        for pair in store_view:
            code, sep, tag = pair.partition("=")
            if not sep or not code.strip() or not tag.strip():
                raise CommandError(f"--store-view takes CODE=TAG (e.g. german=de), not {pair!r}")
            store_views[code.strip()] = tag.strip()
        try:
            result = products_import(path=file, store_views=store_views)
        except ImportFileError as exc:
            raise CommandError(f"{exc}\nNothing was imported.") from exc
        self.stdout.write(self.style.SUCCESS(f"Products from {file}: {result}"))
