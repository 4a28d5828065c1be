"""Variants over REST: the review queue's list and a variant's detail."""

from __future__ import annotations

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation.models import (
    Variant,
)
from review import queue as q
from review.auth import TokenRateThrottle
from review.models import ReviewEvent
from review.permissions import PEOPLE_ONLY, IsReviewer
from review.views import VARIANT_RELATED

VARIANTS_PAGE_MAX = 100


class VariantSerializer(serializers.ModelSerializer):
    prompt = serializers.CharField(source="prompt_version.prompt.slug")
    prompt_version = serializers.IntegerField(source="prompt_version.number")
    product = serializers.CharField(source="product.sku")
    product_name = serializers.CharField(source="product.name")
    segment = serializers.CharField(source="segment.slug", allow_null=True)
    customer = serializers.CharField(source="customer.external_id", allow_null=True)
    run = serializers.IntegerField(source="run_id", allow_null=True)

    class Meta:
        model = Variant
        fields = [
            "id",
            "status",
            "revision",
            "prompt",
            "prompt_version",
            "product",
            "product_name",
            "segment",
            "customer",
            "run",
            "language",
            "text",
            "checks_failed",
            "underperforming",
            "created",
            "updated",
            "published",
        ]


class ReviewEventSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", allow_null=True)

    class Meta:
        model = ReviewEvent
        fields = ["id", "action", "user", "reason", "text_before", "text_after", "created"]


class CheckResultSerializer(serializers.Serializer):
    name = serializers.CharField()
    passed = serializers.BooleanField()
    message = serializers.CharField(required=False)


class VariantDetailSerializer(VariantSerializer):
    base_text = serializers.CharField(source="product.description", help_text="The base copy")
    checks = CheckResultSerializer(many=True, help_text="Failed checks first")
    review_events = ReviewEventSerializer(
        source="events_newest_first", many=True, help_text="Newest first"
    )

    class Meta(VariantSerializer.Meta):
        fields = [
            *VariantSerializer.Meta.fields,
            "original_text",
            "base_text",
            "rationale",
            "checks",
            "model",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "latency_ms",
            "cost",
            "regeneration_note",
            "error",
            "attempts",
            "generated",
            "review_events",
        ]


def variant_detail_data(variant: Variant) -> dict:
    """A variant as the detail endpoint (and a decision's answer) shows it."""
    variant = (
        Variant.objects.select_related(*VARIANT_RELATED)
        .prefetch_related(
            # The review_events field reads them from here (its source), newest first.
            Prefetch(
                "review_events",
                queryset=ReviewEvent.objects.select_related("user").order_by("-id"),
                to_attr="events_newest_first",
            )
        )
        .get(pk=variant.pk)
    )
    variant.checks = variant.sorted_checks
    return VariantDetailSerializer(variant).data


class VariantListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Variant.Status.choices, required=False, help_text="Default: every status"
    )
    prompt = serializers.SlugField(max_length=100, required=False, help_text="A prompt's slug")
    product = serializers.CharField(
        max_length=100, required=False, help_text="The start of a SKU or part of a product's name"
    )
    segment = serializers.SlugField(max_length=200, required=False, help_text="A segment's slug")
    run = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    language = serializers.RegexField(
        regex=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$", required=False
    )
    check = serializers.ChoiceField(
        choices=list(q.CHECK_NAMES), required=False, help_text="Only variants failing this check"
    )
    underperforming = serializers.BooleanField(required=False, default=False)
    after = serializers.CharField(
        max_length=64, required=False, help_text="The `next` cursor of the previous page"
    )
    before = serializers.CharField(
        max_length=64, required=False, help_text="The `previous` cursor of the next page"
    )
    limit = serializers.IntegerField(min_value=1, max_value=VARIANTS_PAGE_MAX, default=q.PAGE_SIZE)

    def _key(self, value: str) -> q.Key:
        key = q.Key.parse(value)
        if key is None:
            raise ValidationError("Not a cursor from this API.")
        return key

    def validate_after(self, value: str) -> q.Key:
        return self._key(value)

    def validate_before(self, value: str) -> q.Key:
        return self._key(value)

    def validate(self, attrs: dict) -> dict:
        if "after" in attrs and "before" in attrs:
            raise ValidationError({"before": "Give after or before, not both."})
        return attrs


class VariantListSerializer(serializers.Serializer):
    results = VariantSerializer(many=True)
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class VariantsView(APIView):
    permission_classes = [IsAuthenticated, IsReviewer]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        summary="Variants, in the review queue's order (failed checks first, then oldest)",
        operation_id="variants_list",
        description="A page at a time, by cursor: follow `next` and `previous`. " + PEOPLE_ONLY,
        parameters=[VariantListQuerySerializer],
        responses={
            200: VariantListSerializer,
            400: OpenApiResponse(description="A filter or the cursor is invalid; it is named"),
            403: OpenApiResponse(description="Not a reviewer"),
        },
    )
    def get(self, request: Request) -> Response:
        query = VariantListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        values = {
            k: v
            for k, v in query.validated_data.items()
            if k in q.FILTER_FIELDS and v not in (None, "", False)
        }
        variants = q.variants_filtered(values).select_related(*VARIANT_RELATED)
        page = q.page_fetch(
            variants,
            after=query.validated_data.get("after"),
            before=query.validated_data.get("before"),
            size=query.validated_data["limit"],
        )

        def link(**cursor) -> str:
            params = {**values, "limit": query.validated_data["limit"], **cursor}
            return request.build_absolute_uri(f"{reverse('api-variants')}?{q.querystring(params)}")

        return Response(
            {
                "results": VariantSerializer(page.variants, many=True).data,
                "next": link(after=str(page.next_key)) if page.next_key else None,
                "previous": link(before=str(page.previous_key)) if page.previous_key else None,
            }
        )


class VariantDetailView(APIView):
    permission_classes = [IsAuthenticated, IsReviewer]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        summary="One variant: its text, the model's, the rationale, checks, cost and history",
        description="`revision` is what a decision must quote. " + PEOPLE_ONLY,
        responses={
            200: VariantDetailSerializer,
            403: OpenApiResponse(description="Not a reviewer"),
            404: OpenApiResponse(description="No such variant"),
        },
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(variant_detail_data(get_object_or_404(Variant, pk=pk)))
