"""`manage.py run_offline_writer`: serve the bundled rule-based writer until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hyperpers.offline_writer import (
    DEFAULT_MODELS,
    FAULTS,
    LATENCY_DISTRIBUTIONS,
    PROFILES,
    SETTING_NAMES,
    TIMEOUT_ACTIONS,
    OfflineWriterServer,
    SettingError,
    WriterSettings,
)

DEFAULTS = WriterSettings()
FAULT_HELP = {
    "reset": "Reset the connection without an answer.",
    "timeout": "Hold the request (--timeout-hold-s), then --timeout-action.",
    "error_5xx": "Answer 500, 502 or 503 with an OpenAI error body.",
    "malformed": "Answer 200 with cut-off JSON.",
    "empty": "Answer 200 with no choices.",
    "no_rationale": "Answer 200 with copy but no 'Rationale:' line.",
    "rate_limit": "Answer 429 at once with Retry-After, budget headers showing plenty left.",
    "refusal": "Answer 200 with no content and a refusal.",
    "content_filter": "Answer 200 with no content and finish_reason content_filter.",
    "bad_json": "With the json profile and response_format: JSON off the schema.",
    "overreach": "Copy that names a value only a minority of the segment has.",
    "banned_phrase": "Copy that uses the brand's first banned phrase.",
    "drop_protected": "Copy with the product name reworded.",
    "echo_input": "Copy that repeats the audience's longest text value.",
}
# Settings whose flag is named otherwise (--rpm, --tpm), as setting → option dest.
DESTS = {"rpm_limit": "rpm", "tpm_limit": "tpm"}


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    # `manage.py demo` stops its children with SIGTERM; leave the way Ctrl-C does.
    raise KeyboardInterrupt


def writer_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The OfflineWriterServer settings given among parsed options; unset flags are left out."""
    chosen = {
        name: options[DESTS.get(name, name)]
        for name in SETTING_NAMES
        if options.get(DESTS.get(name, name)) is not None
    }
    if options.get("no_record"):
        chosen["record"] = False
    if options.get("no_prefix_cache"):
        chosen["prefix_cache"] = False
    return chosen


class Command(BaseCommand):
    help = (
        "Serve the offline writer: an OpenAI-compatible endpoint that composes copy by "
        "fixed rules. It is not a language model. Flags add latency, limits and faults, "
        "so that it can stand in for a provider under load in tests and benchmarks; "
        "POST /_offline/config changes them while it runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.OFFLINE_WRITER_HOST)
        parser.add_argument("--port", type=int, default=settings.OFFLINE_WRITER_PORT)
        parser.add_argument(
            "--api-key", default=None, help="Require this bearer key (default: accept any)."
        )
        parser.add_argument(
            "--model",
            action="append",
            dest="models",
            help=f"A model id to serve; repeat for more (default: {', '.join(DEFAULT_MODELS)}).",
        )

        latency = parser.add_argument_group("latency of each completion")
        latency.add_argument("--latency-ms", type=float, help="The delay (default: 0).")
        latency.add_argument(
            "--latency-jitter-ms", type=float, help="Uniform: latency-ms ± up to this much."
        )
        latency.add_argument(
            "--latency-distribution",
            choices=LATENCY_DISTRIBUTIONS,
            help="uniform (latency-ms ± jitter; the default) or lognormal (median latency-ms).",
        )
        latency.add_argument(
            "--latency-sigma",
            type=float,
            help=f"The lognormal's sigma (default: {DEFAULTS.latency_sigma}).",
        )
        latency.add_argument(
            "--seed", type=int, help="Seed the latencies and faults, for repeatable runs."
        )

        limits = parser.add_argument_group("limits, answered with 429 and Retry-After")
        limits.add_argument(
            "--max-concurrency", type=int, help="Completions in flight at once (default: any)."
        )
        limits.add_argument(
            "--retry-after-s",
            type=float,
            help="Retry-After of a concurrency or random 429 "
            f"(default: {DEFAULTS.retry_after_s:g}).",
        )
        limits.add_argument("--rpm", type=int, help="Requests per sliding minute.")
        limits.add_argument("--tpm", type=int, help="Tokens per sliding minute.")

        faults = parser.add_argument_group("faults, each a probability from 0 to 1")
        for fault in FAULTS:
            faults.add_argument(
                f"--{fault.replace('_', '-')}-rate", type=float, help=FAULT_HELP[fault]
            )
        faults.add_argument(
            "--timeout-hold-s",
            type=float,
            help=f"How long a timeout holds (default: {DEFAULTS.timeout_hold_s:g}).",
        )
        faults.add_argument(
            "--timeout-action",
            choices=TIMEOUT_ACTIONS,
            help="After the hold: answer 504 (the default) or close the connection.",
        )
        faults.add_argument("--fail-first-n", type=int, help="The first N completions get 503.")

        answers = parser.add_argument_group("the shape of answers and the prefix cache")
        answers.add_argument(
            "--profile",
            choices=PROFILES,
            help="How answers are shaped, like hosted models: plain (the default), markdown "
            "(bold names, marked rationales), json (honours response_format), terse (some "
            "with no rationale), chatty (a preamble), truncating (some cut off).",
        )
        answers.add_argument(
            "--no-prefix-cache",
            action="store_true",
            help="Report no cached tokens (by default prompt prefixes seen before are).",
        )
        answers.add_argument(
            "--prefix-cache-block-tokens",
            type=int,
            help="The prefix cache's block, in tokens of four characters "
            f"(default: {DEFAULTS.prefix_cache_block_tokens}).",
        )

        recording = parser.add_argument_group("recording of requests")
        recording.add_argument(
            "--no-record",
            action="store_true",
            help="Keep no requests (for benchmarks); /_offline/requests stays empty.",
        )
        recording.add_argument(
            "--record-limit",
            type=int,
            help=f"Keep only the last this many (default: {DEFAULTS.record_limit}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            server = OfflineWriterServer(
                (options["host"], options["port"]),
                api_key=options["api_key"],
                models=options["models"],
                verbose=options["verbosity"] >= 2,
                **writer_settings(options),
            )
        except SettingError as exc:
            raise CommandError(f"--{exc.name.replace('_', '-')}: {exc}") from exc
        except OSError as exc:
            raise CommandError(
                f"Cannot listen on {options['host']}:{options['port']}: {exc}"
            ) from exc
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _stop_on_sigterm)

        changed = server.settings.non_defaults()
        self.stdout.write(
            f"Offline writer listening on {server.base_url} "
            f"(models: {', '.join(server.models)}"
            + (", bearer key required" if server.api_key else "")
            + "). It is a rule-based writer, not a language model."
        )
        if changed:
            self.stdout.write(
                "Settings: " + ", ".join(f"{name}={value}" for name, value in changed.items())
            )
        root = server.base_url.removesuffix("/v1")
        self.stdout.write(
            f"Control: {root}/_offline/config (GET, POST), {root}/_offline/stats, "
            f"POST {root}/_offline/reset. Quit with CONTROL-C."
        )
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Offline writer stopped.")
        finally:
            server.server_close()
