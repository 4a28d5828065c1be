"""`manage.py run_offline_writer`: serve the bundled rule-based writer until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.offline_writer import DEFAULT_MODELS, OfflineWriterServer


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    # `manage.py demo` stops its children with SIGTERM; leave the way Ctrl-C does.
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Serve the offline writer: an OpenAI-compatible endpoint that composes copy by "
        "fixed rules. It is not a language model."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.OFFLINE_WRITER_HOST)
        parser.add_argument("--port", type=int, default=settings.OFFLINE_WRITER_PORT)
        parser.add_argument(
            "--latency-ms", type=int, default=0, help="A fixed delay added to each completion."
        )
        parser.add_argument(
            "--api-key", default=None, help="Require this bearer key (default: accept any)."
        )
        parser.add_argument(
            "--model",
            action="append",
            dest="models",
            help=f"A model id to serve; repeat for more (default: {', '.join(DEFAULT_MODELS)}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            server = OfflineWriterServer(
                (options["host"], options["port"]),
                latency_ms=options["latency_ms"],
                api_key=options["api_key"],
                models=options["models"],
                verbose=options["verbosity"] >= 2,
            )
        except OSError as exc:
            raise CommandError(
                f"Cannot listen on {options['host']}:{options['port']}: {exc}"
            ) from exc
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _stop_on_sigterm)

        self.stdout.write(
            f"Offline writer listening on {server.base_url} "
            f"(models: {', '.join(server.models)}"
            + (", bearer key required" if server.api_key else "")
            + "). It is a rule-based writer, not a language model. Quit with CONTROL-C."
        )
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Offline writer stopped.")
        finally:
            server.server_close()
