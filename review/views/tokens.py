"""API tokens, for marketing leads and staff: the list (who made each, when it was last
used, whether it is revoked), creating a read or write token, and revoking one.

A token's key is shown once, in the answer to the POST that created it: only its hash
is stored (review/auth.py). That answer is not a redirect, which would carry the key
to the next page through the session or a cookie, and the page is never cached.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from review.auth import TOKEN_CACHE_SECONDS, api_token_create, api_token_revoke
from review.forms import TokenForm
from review.models import ApiToken
from review.permissions import require_lead
from review.views import HtmxHttpRequest


def _page(
    request: HtmxHttpRequest, form: TokenForm, *, created=None, key: str = "", status: int = 200
) -> HttpResponse:
    """The page: the tokens, the form, and a new token's key when one was just made."""
    tokens = ApiToken.objects.select_related("created_by").order_by("-created", "-pk")
    context = {
        "form": form,
        "tokens": tokens,
        "created": created,
        "key": key,
        "cache_seconds": int(TOKEN_CACHE_SECONDS),
    }
    return render(request, "review/tokens.html", context, status=status)


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def tokens(request: HtmxHttpRequest) -> HttpResponse:
    """GET: the tokens and the form for a new one. POST: make one and show its key,
    this once."""
    require_lead(request)
    if request.method == "GET":
        return _page(request, TokenForm())
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    try:
        token, key = api_token_create(
            name=form.cleaned_data["name"], kind=form.cleaned_data["kind"], created_by=request.user
        )
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return _page(request, form, status=400)
    return _page(request, TokenForm(), created=token, key=key)


@login_required
@require_http_methods(["GET", "POST"])
def token_revoke(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET: what revoking the token would do, and the button that does it. POST: revoke."""
    require_lead(request)
    token = get_object_or_404(ApiToken.objects.select_related("created_by"), pk=pk)
    if request.method == "GET":
        context = {"token": token, "cache_seconds": int(TOKEN_CACHE_SECONDS)}
        return render(request, "review/token_revoke.html", context)
    if api_token_revoke(token=token):
        messages.success(
            request,
            f"Revoked '{token.name}' ({token.prefix}…): the API refuses it from now on "
            f"(within {int(TOKEN_CACHE_SECONDS)} seconds in every web process)",
        )
    else:
        when = timezone.localtime(token.revoked) if token.revoked else None
        messages.info(request, f"'{token.name}' was revoked already, on {when:%Y-%m-%d %H:%M}")
    return redirect("review:tokens")
