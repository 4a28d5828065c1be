"""Decisions over REST: approve, reject, regenerate, quoting the revision seen."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation.models import (
    Variant,
)
from hyperpers.errors import JSONParser
from review import queue as q
from review import services as review_services
from review.auth import TokenRateThrottle
from review.permissions import IsReviewer
from review.rest.variants import VariantDetailSerializer, variant_detail_data

# Approve, reject, regenerate: the HTMX views' services, for people who review
# (`require_reviewer`, through IsReviewer). API tokens never decide.
# A decision quotes the revision the reviewer saw: 409 when someone decided since.


class DecisionSerializer(serializers.Serializer):
    revision = serializers.IntegerField(
        min_value=0,
        max_value=2**31 - 1,
        help_text="The variant's revision as you saw it (from its detail)",
    )


class ApproveSerializer(DecisionSerializer):
    text = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=20_000,
        trim_whitespace=False,
        help_text="Edited text: edit, then approve; default: the text as it stands",
    )


class RejectSerializer(DecisionSerializer):
    reason = serializers.CharField(
        max_length=200,
        allow_blank=True,
        help_text="One of: " + "; ".join(q.REJECT_REASONS) + " (or your own words)",
    )
    detail = serializers.CharField(
        required=False, allow_blank=True, max_length=2000, help_text="Needed with Other"
    )


class RegenerateSerializer(DecisionSerializer):
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="A course correction the prompt carries next time",
    )


class StaleSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="Who decided it since, and when")
    revision = serializers.IntegerField(help_text="The variant's revision now")
    status = serializers.CharField(help_text="The variant's status now")


def _decision_responses(refused: str) -> dict:
    return {
        200: VariantDetailSerializer,
        400: OpenApiResponse(description=refused),
        403: OpenApiResponse(description="Not a copywriter, marketing lead or staff"),
        404: OpenApiResponse(description="No such variant"),
        409: OpenApiResponse(StaleSerializer, description="Decided since that revision"),
    }


class _DecisionView(APIView):
    parser_classes = [JSONParser]
    permission_classes = [IsAuthenticated, IsReviewer]
    throttle_classes = [TokenRateThrottle]
    serializer_class: type[DecisionSerializer]

    def decide(self, variant: Variant, data: dict, user) -> Variant:
        raise NotImplementedError

    def post(self, request: Request, pk: int) -> Response:
        variant = get_object_or_404(Variant, pk=pk)
        form = self.serializer_class(data=request.data)
        form.is_valid(raise_exception=True)
        # A refusal is a DecisionError naming its field (400), a decision on an older
        # revision a StaleDecision with the revision and status now (409): both
        # answered by review.rest.exception_handler.
        variant = self.decide(variant, form.validated_data, request.user)
        return Response(variant_detail_data(variant))


class ApproveView(_DecisionView):
    serializer_class = ApproveSerializer

    @extend_schema(
        summary="Approve a variant in review (with `text`: edit, then approve); it goes live",
        request=ApproveSerializer,
        responses=_decision_responses("Not in review (`status`), or a field is invalid"),
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def decide(self, variant: Variant, data: dict, user) -> Variant:
        return review_services.variant_approve(
            variant=variant, user=user, text=data.get("text"), revision=data["revision"]
        )


class RejectView(_DecisionView):
    serializer_class = RejectSerializer

    @extend_schema(
        summary="Reject a variant in review, with a reason; the live copy is untouched",
        request=RejectSerializer,
        responses=_decision_responses("No reason (`reason`), or not in review (`status`)"),
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def _reason(self, data: dict) -> str:
        return q.reject_reason(data["reason"], data.get("detail", ""))

    def decide(self, variant: Variant, data: dict, user) -> Variant:
        return review_services.variant_reject(
            variant=variant, user=user, reason=self._reason(data), revision=data["revision"]
        )


class RegenerateView(_DecisionView):
    serializer_class = RegenerateSerializer

    @extend_schema(
        summary="Have a variant in review written again, with a note for the prompt",
        request=RegenerateSerializer,
        responses=_decision_responses("Not in review (`status`), or a field is invalid"),
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def decide(self, variant: Variant, data: dict, user) -> Variant:
        return review_services.variant_request_regeneration(
            variant=variant, user=user, note=data.get("note", ""), revision=data["revision"]
        )
