"""What the import commands share: who ran them, and a failed import told as text."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import CommandError

from generation.models import Import


def command_user() -> str:
    try:
        return f"{getpass.getuser()} (command line)"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "command line"


def failure_text(failure: dict) -> str:
    """A failed import's record (generation.imports), as the command prints it."""
    lines = list(failure.get("file") or [])
    errors = failure.get("errors") or []
    lines += [f"  {e}" for e in errors]
    if failure.get("more"):
        lines.append(f"  ... reading stopped after {len(errors)} bad rows")
    if errors:
        lines.append("--skip-invalid imports the good rows.")
    if failure.get("hint"):
        lines.append(failure["hint"])
    return "\n".join(lines)


def import_report(record: Import | None) -> dict[str, Any]:
    """The report of an import the command ran (generation.imports.execute), or a
    CommandError with its failure as text."""
    # The command recorded the import itself, so execute() finds it; once run, it holds
    # its failure or its report.
    assert record is not None
    if record.status == Import.Status.FAILED:
        raise CommandError(failure_text(record.failure or {}))
    assert record.result is not None
    return record.result
