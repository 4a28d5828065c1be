"""Segments over REST: list, build, preview, create, edit and delete."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation import services
from generation.models import (
    Segment,
)
from hyperpers.errors import JSONParser
from review.auth import TokenRateThrottle
from review.permissions import PEOPLE_ONLY, CanRebuildSegments, IsLead, ReviewerReadsLeadWrites


class SegmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Segment
        fields = ["slug", "name", "rules", "member_count", "summary", "updated"]


class SegmentListSerializer(serializers.Serializer):
    results = SegmentSerializer(many=True)


class SegmentRebuildSerializer(serializers.Serializer):
    by = serializers.ListField(
        child=serializers.CharField(max_length=100),
        allow_empty=False,
        max_length=10,
        help_text='Customer attributes to segment by, e.g. ["value_tier"]: one segment '
        "per combination of their values",
    )


class SegmentWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    slug = serializers.SlugField(
        max_length=200, required=False, help_text="Default: from the name (on create only)"
    )
    rules = serializers.JSONField(
        help_text='Every rule a member meets: equals {"value_tier": "high"}, one of '
        '{"region": ["north", "south"]}, a range {"age": {"gte": 25, "lt": 35}} (gte, gt, '
        "lte, lt; numbers, or texts such as ISO dates)"
    )


class SegmentPreviewSerializer(serializers.Serializer):
    rules = serializers.JSONField(help_text="As for a segment")


class SegmentPreviewResultSerializer(serializers.Serializer):
    member_count = serializers.IntegerField()
    summary = serializers.JSONField()


# A slug no segment can take (services.RESERVED_SEGMENT_SLUGS) names another
# endpoint's path, which answers other methods with 405.
_RESERVED = {
    405: OpenApiResponse(
        description="The slug is reserved (rebuild, preview, ...): that path is another "
        "endpoint, which does not take this method"
    )
}
_SEGMENT_ERRORS = {
    400: OpenApiResponse(description="A rule, the name or the slug is wrong; `rules` says which"),
    403: OpenApiResponse(description="Not a marketing lead or staff (reading: not a reviewer)"),
    404: OpenApiResponse(description="No such segment"),
    **_RESERVED,
}


class SegmentsView(APIView):
    parser_classes = [JSONParser]
    permission_classes = [IsAuthenticated, ReviewerReadsLeadWrites]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        operation_id="segments_list",
        summary="The segments, with their member counts and summaries",
        description=PEOPLE_ONLY,
        responses={200: SegmentListSerializer, 403: OpenApiResponse(description="Not a reviewer")},
    )
    def get(self, request: Request) -> Response:
        return Response({"results": SegmentSerializer(Segment.objects.all(), many=True).data})

    @extend_schema(
        summary="Define a segment by rules; its members are counted and summarised at once",
        description=PEOPLE_ONLY,
        request=SegmentWriteSerializer,
        responses={201: SegmentSerializer, **_SEGMENT_ERRORS},
    )
    def post(self, request: Request) -> Response:
        form = SegmentWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        segment = services.segment_save(
            slug=data.get("slug", ""), name=data["name"], rules=data["rules"]
        )
        return Response(SegmentSerializer(segment).data, status=201)


class SegmentDetailView(APIView):
    parser_classes = [JSONParser]
    permission_classes = [IsAuthenticated, ReviewerReadsLeadWrites]
    throttle_classes = [TokenRateThrottle]

    def _segment(self, slug: str) -> Segment:
        segment = Segment.objects.filter(slug=slug).first()
        if segment is None:
            raise NotFound(f"No segment '{slug}'")
        return segment

    @extend_schema(
        summary="One segment",
        description=PEOPLE_ONLY,
        responses={
            200: SegmentSerializer,
            403: OpenApiResponse(description="Not a reviewer"),
            404: OpenApiResponse(description="No such segment"),
            **_RESERVED,
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(SegmentSerializer(self._segment(slug)).data)

    @extend_schema(
        summary="Change a segment's name and rules; members are counted again",
        description=PEOPLE_ONLY,
        request=SegmentWriteSerializer,
        responses={200: SegmentSerializer, **_SEGMENT_ERRORS},
    )
    def put(self, request: Request, slug: str) -> Response:
        segment = self._segment(slug)
        form = SegmentWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        segment = services.segment_save(
            segment=segment,
            name=form.validated_data["name"],
            rules=form.validated_data["rules"],
        )
        return Response(SegmentSerializer(segment).data)

    @extend_schema(
        summary="Delete a segment no copy was written for",
        description=PEOPLE_ONLY,
        responses={
            204: None,
            409: OpenApiResponse(description="Variants were written for it"),
            403: OpenApiResponse(description="Not a marketing lead or staff"),
            404: OpenApiResponse(description="No such segment"),
            **_RESERVED,
        },
    )
    def delete(self, request: Request, slug: str) -> Response:
        services.segment_delete(segment=self._segment(slug))
        return Response(status=204)


class SegmentPreviewView(APIView):
    parser_classes = [JSONParser]
    permission_classes = [IsAuthenticated, IsLead]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        summary="Count and summarise the customers that rules would take in; writes nothing",
        description=PEOPLE_ONLY,
        request=SegmentPreviewSerializer,
        responses={200: SegmentPreviewResultSerializer, **_SEGMENT_ERRORS},
    )
    def post(self, request: Request) -> Response:
        form = SegmentPreviewSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        members, summary = services.segment_preview(rules=form.validated_data["rules"])
        return Response({"member_count": members, "summary": summary})


class SegmentRebuildView(APIView):
    parser_classes = [JSONParser]
    permission_classes = [IsAuthenticated, CanRebuildSegments]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        summary="Build the segments again from the customers (as `build_segments --by`)",
        description=PEOPLE_ONLY,
        request=SegmentRebuildSerializer,
        responses={
            200: SegmentListSerializer,
            400: OpenApiResponse(description="`by` is missing or names no customer attribute"),
            403: OpenApiResponse(description="Not a marketing lead or staff"),
        },
    )
    def post(self, request: Request) -> Response:
        form = SegmentRebuildSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        built = services.segments_build(by=form.validated_data["by"])
        return Response({"results": SegmentSerializer(built, many=True).data})
