from django.core.management.base import BaseCommand, CommandError

from generation.services import SegmentError, segments_build


class Command(BaseCommand):
    help = "Make one segment per combination of the given customer attributes present in the data."

    def add_arguments(self, parser):
        parser.add_argument(
            "--by",
            required=True,
            help="Comma-separated attributes, e.g. preferred_subcategory,value_tier",
        )

    def handle(self, *args, by: str, **options):
        try:
            segments = segments_build(by=by.split(","))
        except SegmentError as exc:
            raise CommandError(str(exc)) from exc
        for segment in segments:
            self.stdout.write(f"{segment.slug:50} {segment.member_count:7} members")
        self.stdout.write(self.style.SUCCESS(f"{len(segments)} segments"))
