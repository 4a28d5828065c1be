"""Who may call what over REST: the pages' own permission helpers as DRF permission
classes, so the API and the pages cannot drift apart; and the token scheme for the schema."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from review.auth import request_token
from review.models import ApiToken
from review.views import require_lead, require_reviewer


class _PageCheck(BasePermission):
    """Ask one of the HTML views' permission helpers; a refusal says who may."""

    check: Callable
    refusal: str = ""  # instead of the helper's message, where that one reads oddly

    def has_permission(self, request: Request, view) -> bool:
        try:
            self.check(request)
        except PermissionDenied as exc:
            self.message = self.refusal or str(exc)
            return False
        return True


class IsReviewer(_PageCheck):
    """Copywriters, marketing leads and staff: as `require_reviewer`."""

    check = staticmethod(require_reviewer)


class IsLead(_PageCheck):
    """Marketing leads and staff: as `require_lead`."""

    check = staticmethod(require_lead)


class ReviewerReadsLeadWrites(_PageCheck):
    """Reviewers read (the runs page); leads and staff start and steer (its forms)."""

    def has_permission(self, request: Request, view) -> bool:
        self.check = require_reviewer if request.method in SAFE_METHODS else require_lead
        return super().has_permission(request, view)


class CanRebuildSegments(IsLead):
    refusal = "Only marketing leads and staff rebuild segments"


class CanImport(IsLead):
    """Ingestion: write tokens, and the people who may start runs (leads and staff)."""

    refusal = "Only marketing leads and staff import products and customers"

    def has_permission(self, request: Request, view) -> bool:
        token = request_token(request)
        if token is None:
            return super().has_permission(request, view)
        self.message = "Imports need a write token (read tokens only fetch live copy)."
        return token.kind == ApiToken.Kind.WRITE


PEOPLE_ONLY = "People only (a session or a personal `Token`); API tokens are refused."


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "review.auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from the admin: read tokens for live copy, "
            "write tokens for engagement and imports.",
        }
