"""The REST API under /api/v1/, one module per noun; review/api_urls.py routes it.

live and engagement serve delivery systems (read and write tokens); the others are
the workflow the pages offer, with the pages' permissions (permissions.py)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from generation.errors import ServiceError


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, plus the services' refusals: a ServiceError is answered with its
    status and {field: [message]} (or {"detail": message}), the shape DRF gives its
    own validation errors, so a client reads both the same way."""
    if isinstance(exc, ServiceError):
        set_rollback()  # as DRF does for its own errors, should requests be atomic
        return Response(exc.body(), status=exc.status)
    return drf_exception_handler(exc, context)


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How the schema describes our bearer tokens (registered by being defined)."""

    target_class = "review.auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from the admin: read tokens for live copy, "
            "write tokens for engagement and imports.",
        }
