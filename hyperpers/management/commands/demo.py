"""`manage.py demo`: everything a newcomer needs, in one process tree.

1. Migrate the database (SQLite under var/ unless DATABASE_URL is set).
2. Start the embedded Redis (unless REDIS_URL is set) and the offline writer (unless
   LLM_BASE_URL is set), one Celery worker and the web server, as child processes.
3. Load the demo data (idempotent), create the demo users, start a first run.
4. Print the URL and the credentials; Ctrl-C stops every process it started.

Running it again reuses the database, its data and its runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from hyperpers import demo_data
from hyperpers.embedded import start_redis, stop_process


def _wait_http(url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answers; a 4xx is still an answer
        except OSError:
            time.sleep(0.2)
    return False


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run the Hyperpers demo: embedded services, a worker, demo data and the web server."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--no-serve", action="store_true", help="Set everything up, start the run, then exit"
        )

    def handle(self, *args, port: int, host: str, no_serve: bool, **options):
        # `kill` (SIGTERM) stops the demo as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)  # even when started in the background
        children: list[tuple[str, subprocess.Popen]] = []
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        logs = settings.VAR_DIR / "logs"
        logs.mkdir(parents=True, exist_ok=True)

        def spawn(name: str, argv: list[str]) -> subprocess.Popen:
            log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
            # A session of its own: Ctrl-C reaches only the demo, which then stops
            # the children in order (web, worker, writer, Redis).
            process = subprocess.Popen(
                argv,
                cwd=settings.BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            children.append((name, process))
            self.stdout.write(f"  started {name} (pid {process.pid}), log: {log.name}")
            return process

        try:
            self.stdout.write("Migrating the database…")
            call_command("migrate", interactive=False, verbosity=0)

            self.stdout.write("Starting services…")
            if settings.USE_EMBEDDED_REDIS:
                redis_process = start_redis(settings.EMBEDDED_REDIS_SOCKET)
                if redis_process is not None:
                    children.append(("redis", redis_process))
                self.stdout.write(f"  redis: embedded, on {settings.EMBEDDED_REDIS_SOCKET}")
            else:
                self.stdout.write("  redis: REDIS_URL from the environment")

            offline = "LLM_BASE_URL" not in os.environ
            if offline and not _wait_http(f"{settings.LLM_BASE_URL}/models", timeout=0.5):
                spawn("offline-writer", [*manage, "run_offline_writer"])
                if not _wait_http(f"{settings.LLM_BASE_URL}/models"):
                    raise CommandError("The offline writer did not start; see its log")
            self.stdout.write(
                f"  LLM endpoint: {settings.LLM_BASE_URL}"
                + (" (the bundled offline writer: rules, not a language model)" if offline else "")
            )

            spawn(
                "worker",
                [sys.executable, "-m", "celery", "-A", "hyperpers", "worker",
                 "--loglevel", "INFO", "--concurrency", "2", "--hostname", "demo@%h"],
            )  # fmt: skip
            # Beat: experiments are reviewed (losers paused, winners proposed, bandits
            # reweighed) and underperformers flagged on their schedules.
            spawn(
                "beat",
                [sys.executable, "-m", "celery", "-A", "hyperpers", "beat", "--loglevel", "INFO"],
            )

            self.stdout.write("Loading demo data…")
            summary = demo_data.load()
            for line in summary.lines:
                self.stdout.write(f"  {line}")

            if no_serve:
                self.stdout.write(self.style.SUCCESS("Set up; --no-serve given, stopping."))
                return
            spawn(
                "web",
                [*manage, "runserver", f"{host}:{port}", "--noreload", "--skip-checks"],
            )
            url = f"http://{host}:{port}/"
            if not _wait_http(f"{url}login/"):
                raise CommandError(f"The web server did not come up on {url}; see its log")
            self.stdout.write(self.style.SUCCESS(f"\nHyperpers demo is up: {url}"))
            for role, (username, password) in summary.credentials.items():
                self.stdout.write(f"  {role:18} {username} / {password}")
            self.stdout.write(f"  API docs           {url}api/v1/docs/")
            self.stdout.write(
                f"  live copy          curl -H 'Authorization: Bearer {summary.api_keys['read']}' "
                f"'{url}api/v1/live/?prompt={summary.example[0]}&product={summary.example[1]}"
                f"&segment={summary.example[2]}'"
            )
            self.stdout.write(
                "  in German          add &language=de (or -H 'Accept-Language: de-CH, de;q=0.9')"
            )
            self.stdout.write(f"  events (write)     Bearer {summary.api_keys['write']}")
            self.stdout.write("Press Ctrl-C to stop everything.")
            while True:
                for name, process in children:
                    if process.poll() is not None:
                        raise CommandError(f"{name} exited with {process.returncode}; see its log")
                time.sleep(1)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            for name, process in reversed(children):
                stop_process(process)
                self.stdout.write(f"  stopped {name}")
