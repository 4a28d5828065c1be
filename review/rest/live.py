"""Live copy over REST, for delivery systems: the fast path and the batch."""

from __future__ import annotations

import functools
import re
from typing import Any, Protocol, cast
from urllib.parse import unquote_plus

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation import languages
from review import delivery
from review.auth import (
    CHECKED_ATTRIBUTE,
    PREFIX,
    CanReadLive,
    TokenRateThrottle,
    active_token,
    token_digest,
    token_rate_wait,
)
from review.models import ApiToken


class LiveQuerySerializer(serializers.Serializer):
    prompt = serializers.SlugField(max_length=100, help_text="The prompt's slug, e.g. product-page")
    product = serializers.CharField(max_length=64, help_text="The product's SKU")
    segment = serializers.SlugField(
        max_length=200, required=False, help_text="A segment's slug (or give a customer)"
    )
    customer = serializers.CharField(
        max_length=128,
        required=False,
        help_text="A customer's id: their segment is resolved from their attributes",
    )
    variant = serializers.IntegerField(
        min_value=1,
        max_value=2**63 - 1,
        required=False,
        help_text="Pin this variant (it must have been live), e.g. to re-render a sent e-mail",
    )

    language = serializers.CharField(
        max_length=35,
        required=False,
        help_text="The language to serve (a BCP 47 tag, e.g. de-CH); without it, "
        "Accept-Language, then a customer's own language, then the prompt's default",
    )

    visitor = serializers.CharField(
        max_length=delivery.VISITOR_MAX_LENGTH,
        required=False,
        allow_blank=True,
        help_text="An anonymous id the client already has for the reader (a cookie, a "
        "device or contact id): where the slot runs an experiment, the reader keeps "
        "seeing one arm. Without it (or empty), the slot's live variant, not randomized",
    )

    def validate_language(self, value: str) -> str:
        try:
            return languages.language_tag(value)
        except languages.LanguageTagError as exc:
            raise ValidationError(str(exc)) from None

    def validate(self, attrs: dict) -> dict:
        if ("segment" in attrs) == ("customer" in attrs):
            raise ValidationError({"segment": "Give either a segment or a customer, not both."})
        return attrs


class LiveBatchQuerySerializer(LiveQuerySerializer):
    # None removes a base serializer's field, as DRF documents; the stubs know only the
    # attribute's type in the base class.
    product = None  # type: ignore[assignment]
    variant = None  # type: ignore[assignment]
    products = serializers.CharField(
        max_length=64 * 100, help_text="Comma-separated SKUs, in the order to return them"
    )

    def validate_products(self, value: str) -> list[str]:
        skus = [s.strip() for s in value.split(",") if s.strip()]
        if not skus:
            raise ValidationError("List at least one SKU.")
        if len(skus) > settings.DELIVERY_BATCH_MAX:
            raise ValidationError(
                f"At most {settings.DELIVERY_BATCH_MAX} products a request; got {len(skus)}."
            )
        return list(dict.fromkeys(skus))


class LiveCopySerializer(serializers.Serializer):
    """What a delivery system shows, and what it quotes when it posts engagement."""

    prompt = serializers.CharField()
    product = serializers.CharField()
    segment = serializers.CharField(allow_null=True)
    customer = serializers.CharField(allow_null=True)
    variant_id = serializers.IntegerField(allow_null=True)
    prompt_version = serializers.IntegerField(allow_null=True)
    # Not Field.source, as the stubs read it: DRF's SerializerMetaclass moves declared
    # fields out of the class.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        ["pinned", "customer", "segment", "base_copy"]
    )
    fallback = serializers.BooleanField(help_text="True when this is the product's base copy")
    fallback_reason = serializers.ChoiceField(
        [
            "no_live_variant",
            "no_variant_in_language",
            "holdout",
            "no_matching_segment",
            "experiment_control",
        ],
        allow_null=True,
        help_text="experiment_control: the base copy as an experiment's control arm",
    )
    language = serializers.CharField(help_text="The language of the text served")
    language_reason = serializers.ChoiceField(
        ["exact", "base_language", "default", "no_variant_in_language"],
        help_text="exact: the language asked for; base_language: de for de-CH (or the "
        "other way); default: none was asked for; no_variant_in_language: the prompt's "
        "default language, as the one asked for has neither a variant nor base copy",
    )
    experiment = serializers.IntegerField(
        allow_null=True, help_text="The experiment the slot runs, if any"
    )
    arm = serializers.CharField(
        allow_null=True,
        help_text="In an experiment, the arm served: 'control' (the base copy) or 'v<variant id>'",
    )
    text = serializers.CharField()
    exposure_id = serializers.CharField(help_text="Quote it in engagement events")


class LiveBatchSerializer(serializers.Serializer):
    results = LiveCopySerializer(many=True)


def _not_modified(if_none_match: str, etag: str) -> bool:
    return etag in [t.strip() for t in if_none_match.split(",")]


def _cache_headers(etag: str, *, private: bool) -> dict[str, str]:
    scope = "private" if private else "public"
    return {
        "ETag": etag,
        "Cache-Control": f"{scope}, max-age={settings.DELIVERY_MAX_AGE}",
        "Vary": "Authorization, Cookie, Accept-Language",
    }


def _cached(request: Request, body: dict, *, private: bool) -> Response:
    """Answer with an ETag of the body; 304 when the client already has it."""
    etag = delivery.etag_of(delivery.render(body))
    matches = _not_modified(request.headers.get("If-None-Match", ""), etag)
    response = Response(status=status.HTTP_304_NOT_MODIFIED) if matches else Response(body)
    for name, value in _cache_headers(etag, private=private).items():
        response[name] = value
    return response


class _LiveBase(APIView):
    permission_classes = [CanReadLive]
    throttle_classes = [TokenRateThrottle]

    def _resolve(self, query: dict, skus: list[str]) -> list[delivery.Live]:
        if query.get("language"):
            wanted = [query["language"]]
        else:
            try:
                wanted = languages.accept_language(self.request.headers.get("Accept-Language", ""))
            except languages.LanguageTagError as exc:
                raise ValidationError({"Accept-Language": [str(exc)]}) from None
        return delivery.live_copy(
            prompt_slug=query["prompt"],
            skus=skus,
            segment_slug=query.get("segment"),
            customer_id=query.get("customer"),
            pinned_variant_id=query.get("variant"),
            wanted=wanted,
            visitor=query.get("visitor", ""),
        )


class LiveView(_LiveBase):
    @extend_schema(
        summary="The live copy of one product for a segment or a customer",
        parameters=[LiveQuerySerializer],
        responses={
            200: LiveCopySerializer,
            304: OpenApiResponse(description="Not modified (If-None-Match)"),
            400: OpenApiResponse(description="A parameter is missing or invalid"),
            404: OpenApiResponse(description="The prompt, product, audience or variant is unknown"),
        },
    )
    def get(self, request: Request) -> Response:
        query = LiveQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        (live,) = self._resolve(query.validated_data, [query.validated_data["product"]])
        return _cached(request, live.as_dict(), private=live.customer_id is not None)


class LiveBatchView(_LiveBase):
    @extend_schema(
        summary="The live copy of many products for one customer or segment (a listing page)",
        parameters=[LiveBatchQuerySerializer],
        responses={
            200: LiveBatchSerializer,
            304: OpenApiResponse(description="Not modified (If-None-Match)"),
            400: OpenApiResponse(description="A parameter is missing or invalid"),
            404: OpenApiResponse(description="The prompt, a product or the audience is unknown"),
        },
    )
    def get(self, request: Request) -> Response:
        query = LiveBatchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        results = self._resolve(query.validated_data, query.validated_data["products"])
        body = {"results": [live.as_dict() for live in results]}
        return _cached(request, body, private="customer" in query.validated_data)


# The live endpoint's fast path: the request nearly every delivery call is (a read
# token, a prompt, a product and a segment, copy in this process's snapshot) answered
# in plain Django, without DRF's request, negotiation and serializer machinery, which
# cost about as much as the whole of the rest of a live answer. Anything else (people,
# customers, pins, a bad or unknown parameter, a refused token, a throttled request,
# copy not in the snapshot) goes to LiveView, which has the rules and the error
# messages; the answer it gives is byte for byte the same (tests compare the two).

_LIVE_PARAMETERS = frozenset(("prompt", "product", "segment"))
_OPTIONAL: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset({"language"}),
    frozenset({"visitor"}),
    frozenset({"language", "visitor"}),
)
_LIVE_QUERIES = frozenset(_LIVE_PARAMETERS | extra for extra in _OPTIONAL)


@functools.lru_cache(maxsize=1024)
def _tag(value: str) -> str | None:
    """A language= value as stored, or None (LiveView names what is wrong with it)."""
    try:
        return languages.language_tag(value)
    except languages.LanguageTagError:
        return None


_SLUG = re.compile(r"[-a-zA-Z0-9_]+")
_READ_PREFIX = f"Bearer {PREFIX}{ApiToken.Kind.READ[0]}_"


def _fast_live(request: HttpRequest) -> HttpResponse | None:
    """The answer of the fast path, or None to hand the request to LiveView.

    1. A GET with a read token, and exactly a valid prompt, product and segment, and
       perhaps a language and a visitor, once each (an ASCII query string: anything
       else is LiveView's to decode), and no Accept-Language header.
    2. Count it against the token's rate limit (LiveView answers a refusal).
    3. The copy from the snapshot; ETag, 304, cache headers as LiveView sets them.
    """
    authorization = request.META.get("HTTP_AUTHORIZATION", "")
    query = request.META.get("QUERY_STRING", "")
    if request.method != "GET" or not authorization.startswith(_READ_PREFIX) or not query.isascii():
        return None
    if request.META.get("HTTP_ACCEPT_LANGUAGE", "").strip():
        return None  # a language to negotiate: LiveView's
    pairs = query.split("&")
    params = {name: value for name, _, value in (pair.partition("=") for pair in pairs)}
    if len(pairs) != len(params) or frozenset(params) not in _LIVE_QUERIES:
        return None
    if "%" in query or "+" in query:  # SKUs may be quoted; slugs never are
        params = {name: unquote_plus(value) for name, value in params.items()}
    prompt, sku, segment = params["prompt"], params["product"], params["segment"]
    asked = _tag(params["language"]) if "language" in params else ""
    if asked is None:
        return None
    visitor = params.get("visitor", "")
    # LiveView's field trims whitespace and refuses NUL and a long id (naming it).
    if (
        len(visitor) > delivery.VISITOR_MAX_LENGTH
        or visitor.strip() != visitor
        or "\x00" in visitor
    ):
        return None
    if not (
        len(prompt) <= 100
        and _SLUG.fullmatch(prompt)
        and 0 < len(sku) <= 64
        and sku.strip() == sku
        and len(segment) <= 200
        and _SLUG.fullmatch(segment)
    ):
        return None
    try:
        token = active_token(token_digest(authorization[len("Bearer ") :]))
    except AuthenticationFailed:
        return None
    if token.kind != ApiToken.Kind.READ:
        return None
    wait = token_rate_wait(token)
    setattr(request, CHECKED_ATTRIBUTE, wait)
    if wait is not None:
        return None
    answer = delivery.rendered_from_snapshot(prompt, sku, segment, asked, visitor)
    if answer is None:
        return None
    content, etag = answer
    headers = _cache_headers(etag, private=False)
    if _not_modified(request.META.get("HTTP_IF_NONE_MATCH", ""), etag):
        return HttpResponse(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return HttpResponse(content, content_type="application/json", headers=headers)


_live_view = LiveView.as_view()


@csrf_exempt
def live(request: HttpRequest) -> HttpResponse:
    """GET /api/v1/live/: the fast path, else LiveView."""
    return _fast_live(request) or _live_view(request)


class _DocumentedBy(Protocol):
    """A view function as drf-spectacular reads one that APIView.as_view() made: it
    documents the URL by `cls`, built with `initkwargs`."""

    cls: type[APIView]
    initkwargs: dict[str, Any]


# drf-spectacular documents the URL by LiveView: it reads these from the callback.
_documented = cast(_DocumentedBy, live)
_documented.cls = LiveView
_documented.initkwargs = {}
