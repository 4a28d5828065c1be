from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation import imports
from generation.management import command_user, import_report
from generation.models import Import


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
        record = imports.record_local(
            file,
            kind=Import.Kind.PRODUCTS,
            requested_by=command_user(),
            options={"store_views": store_views},
        )
        counts = import_report(imports.execute(import_id=record.pk, claim=f"cli-{record.pk}"))
        self.stdout.write(
            self.style.SUCCESS(
                f"Products from {file}: {counts['created']} created, {counts['updated']} "
                f"updated, {counts['unchanged']} unchanged [import {record.pk}]"
            )
        )
