"""The REST API under /api/v1/, one module per noun; review/api_urls.py routes it.

live and engagement serve delivery systems (read and write tokens); the others are
the workflow the pages offer, with the pages' permissions (permissions.py)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


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
