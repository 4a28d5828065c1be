import json
import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation import imports
from generation.audience import MappingError, Reading
from generation.management import command_user, import_report
from generation.models import CustomerSource, Import
from generation.services import MAX_LISTED_ERRORS, CustomerImportResult, customer_source_save


class _Progress:
    """A one-line progress bar on stderr, redrawn at most a few times a second."""

    def __init__(self, stream, enabled: bool) -> None:
        self.stream, self.enabled = stream, enabled
        self.started = time.monotonic()
        self.drawn = 0.0

    def __call__(self, reading: Reading) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.drawn < 0.2 and reading.done < 1):
            return
        self.drawn = now
        done = min(reading.done, 1.0)
        bar = "#" * int(done * 30)
        rate = reading.rows / max(now - self.started, 1e-6)
        self.stream.write(
            f"\r[{bar:<30}] {done:4.0%}  {reading.rows:,} rows  {reading.bad:,} bad  "
            f"{rate:,.0f} rows/s"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.drawn:
            self.stream.write("\n")


class Command(BaseCommand):
    help = (
        "Import customers from a CDP export (CSV, JSON Lines or Parquet), streamed. "
        "Re-importing updates by external id; segments are recounted afterwards. By "
        "default a bad row stops the import and nothing is written; --skip-invalid "
        "imports the good rows and lists the bad ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--source", help="A saved source: read the file through its column mapping"
        )
        parser.add_argument(
            "--mapping",
            type=Path,
            help="A JSON column mapping to save as --source (created or replaced) and use",
        )
        parser.add_argument("--skip-invalid", action="store_true")
        parser.add_argument(
            "--max-errors",
            type=int,
            default=MAX_LISTED_ERRORS,
            help=f"List at most this many bad rows (default {MAX_LISTED_ERRORS})",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, file: Path, source, mapping, skip_invalid, max_errors, **options):
        chosen = self._source(source, mapping)
        progress = _Progress(self.stderr._out, not options["no_progress"] and sys.stderr.isatty())
        record = imports.record_local(
            file,
            kind=Import.Kind.CUSTOMERS,
            requested_by=command_user(),
            source=chosen,
            options={"skip_invalid": skip_invalid, "max_errors": max(max_errors, 1)},
        )
        done = imports.execute(import_id=record.pk, claim=f"cli-{record.pk}", progress=progress)
        progress.close()
        result = import_report(done)
        for error in result["errors"]:
            self.stderr.write(f"skipped {error}")
        if result["more_errors"]:
            self.stderr.write(f"... more bad rows than the {len(result['errors'])} listed")
        rate = result["rows"] / max(result["seconds"], 1e-6)
        summary = CustomerImportResult(
            **{k: result[k] for k in ("created", "updated", "unchanged", "skipped", "personal")}
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Customers from {file}: {result['rows']:,} rows read; {summary}; "
                f"{result['segments']} segment(s) recounted; {result['seconds']:.1f} s "
                f"({rate:,.0f} rows/s) [import {record.pk}]"
            )
        )

    def _source(self, slug: str | None, mapping: Path | None) -> CustomerSource | None:
        if mapping is not None:
            if not slug:
                raise CommandError("--mapping needs --source, the name to save it under")
            try:
                spec = json.loads(mapping.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CommandError(f"{mapping}: cannot read the mapping ({exc})") from exc
            try:
                return customer_source_save(slug=slug, name=slug, mapping=spec)
            except MappingError as exc:
                raise CommandError(f"{mapping}: {exc}") from exc
        if slug is None:
            return None
        source = CustomerSource.objects.filter(slug=slug).first()
        if source is None:
            known = ", ".join(CustomerSource.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"Unknown source '{slug}'. Known sources: {known}")
        return source
