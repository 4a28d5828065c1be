"""Structured logs: one JSON object a line (LOG_FORMAT=json, the default with DEBUG
off), carrying the ids that say what a line is about.

`run_id` comes from `log_context(run_id=...)` (the generation engine sets it while it
drains a run), `task_id` from the Celery task being run; a call may add its own with
`extra={"variant_id": ...}`. Plain text (LOG_FORMAT=plain) shows the same ids at the end.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

_context: contextvars.ContextVar[dict | None] = contextvars.ContextVar("log_context", default=None)
CONTEXT_KEYS = ("run_id", "variant_id", "task_id")
# The userinfo of a URL (scheme://user:password@host): a callback URL may carry one.
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")


def redact(text: str) -> str:
    """`text` with the userinfo of every URL in it hidden: http://u:pw@host → http://***@host."""
    return _USERINFO.sub(r"\1***@", text)


@contextmanager
def log_context(**ids) -> Iterator[None]:
    token = _context.set(
        {**(_context.get() or {}), **{k: v for k, v in ids.items() if v is not None}}
    )
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Adds the context's ids (and the Celery task id) to every record, and hides the
    userinfo of any URL in its message or traceback (redact)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "@" in message and "://" in message:
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if "@" in text and "://" in text:
                # exc_text only: a JSON formatter would format exc_info itself again.
                record.exc_text, record.exc_info = redact(text), None
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        if not hasattr(record, "task_id"):
            try:
                from celery import current_task

                task_id = current_task.request.id if current_task else None
            except Exception:  # outside a worker there is no task to ask about
                task_id = None
            if task_id:
                record.task_id = task_id
        ids = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_KEYS if hasattr(record, k))
        record.ids = f" [{ids}]" if ids else ""
        return True
