import json
import sys

from django.core.management.base import BaseCommand

from review.services import decisions_export


class Command(BaseCommand):
    help = (
        "Write every review decision as JSON (to a file, or standard output), for import_decisions."
    )

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="A file to write; default: standard output")

    def handle(self, *args, output=None, **options):
        data = decisions_export()
        text = json.dumps(data, ensure_ascii=False, indent=1)
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            self.stderr.write(f"{len(data['decisions'])} decisions written to {output}")
        else:
            sys.stdout.write(text + "\n")
