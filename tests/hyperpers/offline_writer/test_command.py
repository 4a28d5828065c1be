"""`manage.py run_offline_writer`: its flags become the writer's settings."""

from __future__ import annotations

import pytest
from django.core.management import CommandError

from hyperpers.management.commands.run_offline_writer import Command, writer_settings
from hyperpers.offline_writer import (
    OfflineWriterServer,
    WriterSettings,
)


def test_the_command_flags_become_writer_settings():
    parser = Command().create_parser("manage.py", "run_offline_writer")
    flags = (
        "--latency-ms 250 --latency-jitter-ms 50 --max-concurrency 8 --rpm 600 --tpm 90000 "
        "--error-5xx-rate 0.1 --timeout-rate 0.05 --timeout-hold-s 2 --malformed-rate 0.01 "
        "--empty-rate 0.01 --no-rationale-rate 0.02 --reset-rate 0.01 --fail-first-n 3 "
        "--seed 7 --no-record"
    )
    options = vars(parser.parse_args(flags.split()))

    server = OfflineWriterServer(**writer_settings(options))
    server.server_close()

    assert server.settings == WriterSettings(
        latency_ms=250, latency_jitter_ms=50, max_concurrency=8, rpm_limit=600, tpm_limit=90_000,
        error_5xx_rate=0.1, timeout_rate=0.05, timeout_hold_s=2, malformed_rate=0.01,
        empty_rate=0.01, no_rationale_rate=0.02, reset_rate=0.01, fail_first_n=3, seed=7,
        record=False,
    )  # fmt: skip
    assert writer_settings(vars(parser.parse_args([]))) == {}


def test_the_command_takes_a_profile_and_the_prefix_cache_settings():
    parser = Command().create_parser("manage.py", "run_offline_writer")
    flags = (
        "--profile chatty --no-prefix-cache --prefix-cache-block-tokens 128 "
        "--rate-limit-rate 0.1 --refusal-rate 0.02 --content-filter-rate 0.01 "
        "--bad-json-rate 0.05"
    )

    chosen = writer_settings(vars(parser.parse_args(flags.split())))

    assert chosen == {
        "profile": "chatty", "prefix_cache": False, "prefix_cache_block_tokens": 128,
        "rate_limit_rate": 0.1, "refusal_rate": 0.02, "content_filter_rate": 0.01,
        "bad_json_rate": 0.05,
    }  # fmt: skip
    server = OfflineWriterServer(**chosen)
    server.server_close()
    assert server.settings.profile == "chatty" and server.settings.prefix_cache is False
    with pytest.raises(CommandError, match="invalid choice: 'poetic'"):
        parser.parse_args(["--profile", "poetic"])
