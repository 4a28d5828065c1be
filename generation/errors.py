"""One base class for what the services refuse, so every caller answers it the same way.

A ServiceError is a request that cannot be met as asked: bad input, a missing
prerequisite, a state that does not allow it. It carries the message a person reads,
the request field it is about (None: the request as a whole) and the HTTP status that
says so. The REST API maps it in one place (review/rest/__init__.py:
exception_handler); the pages show the message beside the field; the commands print
it.

What is not a ServiceError: failures of the world rather than of the request (an
endpoint's 5xx or timeout, llm.LLMError; a callback receiver that does not answer,
messages.CallbackFailed), which the engine and the tasks retry or record, and the
importers' row errors (importers.ImportFileError), which an Import records row by row.
"""

from __future__ import annotations

from typing import ClassVar


class ServiceError(ValueError):
    """A refusal: `message` for people, `field` it is about, answered with `status`.

    A ValueError, so code that validated input with `except ValueError` before the
    base class existed still catches it.
    """

    status: ClassVar[int] = 400
    # The field when the raise does not name one; None: the request as a whole.
    default_field: ClassVar[str | None] = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field if field is not None else self.default_field

    def body(self) -> dict:
        """The JSON body of the answer: {field: [message]} like a serializer's errors,
        or {"detail": message} for the request as a whole, like DRF's own errors."""
        if self.field is None:
            return {"detail": self.message}
        return {self.field: [self.message]}


class NotFound(ServiceError):
    """What the request names does not exist (404)."""

    status = 404


class Conflict(ServiceError):
    """The request is fine but the thing's state refuses it (409)."""

    status = 409


class PromptHasNoVersion(ServiceError):
    """Raised by Prompt.require_version(): nothing can be written before a version."""

    default_field = "prompt"
