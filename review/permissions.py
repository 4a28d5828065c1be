"""Who may do what, in one place: the groups, the checks the pages make, the same
checks as DRF permission classes for the REST API (so the two cannot drift apart),
and a context processor that tells the templates.

- copywriters review: the queue, decisions, runs and metrics to read;
- marketing leads (and staff) also set up and steer: imports, segments, the brand,
  prompts, runs, metrics flags;
- API tokens belong to no group: read tokens fetch live copy, write tokens post
  engagement, import and ask for messages (review/auth.py decides by token kind).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from review.auth import request_token
from review.models import ApiToken

COPYWRITER = "copywriter"
LEAD = "marketing lead"
REVIEWER_GROUPS = (COPYWRITER, LEAD)
PEOPLE_ONLY = "People only (a session or a personal `Token`); API tokens are refused."


def _in_groups(user, names: tuple[str, ...]) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    if getattr(user, "is_staff", False):
        return True
    groups = getattr(user, "groups", None)
    return groups is not None and groups.filter(name__in=names).exists()


def is_reviewer(user) -> bool:
    """Copywriters, marketing leads and staff."""
    return _in_groups(user, REVIEWER_GROUPS)


def is_lead(user) -> bool:
    """Marketing leads and staff."""
    return _in_groups(user, (LEAD,))


def require_reviewer(request: HttpRequest) -> None:
    if not is_reviewer(request.user):
        raise PermissionDenied("Only copywriters, marketing leads and staff review variants")


def require_lead(request: HttpRequest) -> None:
    if not is_lead(request.user):
        raise PermissionDenied("Only marketing leads and staff start and steer runs")


def roles(request: HttpRequest) -> dict:
    """Context processor: `is_lead` and `is_reviewer` for every template (the menu).
    Lazy: a partial that never asks costs no query; one that does costs one."""
    user = getattr(request, "user", None)

    @functools.cache
    def groups() -> frozenset[str]:
        if user is None or not user.is_authenticated or not hasattr(user, "groups"):
            return frozenset()
        if user.is_staff:
            return frozenset(REVIEWER_GROUPS)
        return frozenset(user.groups.values_list("name", flat=True))

    return {
        "is_lead": SimpleLazyObject(lambda: LEAD in groups()),
        "is_reviewer": SimpleLazyObject(lambda: bool(groups() & set(REVIEWER_GROUPS))),
    }


# --- the same checks for the REST API ----------------------------------------------------


class _PageCheck(BasePermission):
    """Ask one of the page checks above; a refusal says who may."""

    check: Callable
    refusal: str = ""  # instead of the check's message, where that one reads oddly

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
