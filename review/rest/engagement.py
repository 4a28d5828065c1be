"""Engagement over REST: the events delivery systems post back."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hyperpers.errors import JSONParser
from review import delivery, services
from review.auth import (
    CanPostEvents,
    TokenRateThrottle,
    request_token,
)
from review.models import EngagementEvent


class EventSerializer(serializers.Serializer):
    event_id = serializers.CharField(
        max_length=128,
        help_text="Your id for the event, unique for your token; sending it again counts it once",
    )
    type = serializers.ChoiceField(EngagementEvent.Kind.choices)
    exposure_id = serializers.CharField(
        max_length=200, help_text="From the live copy response that was shown"
    )
    occurred = serializers.DateTimeField(
        required=False, help_text="When it happened (ISO 8601); default: when received"
    )
    value = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=0,
        required=False,
        allow_null=True,
        help_text="A conversion's value",
    )

    def validate_exposure_id(self, value: str) -> delivery.Exposure:
        try:
            return delivery.Exposure.decode(value)
        except ValueError as exc:
            raise ValidationError(f"{exc}.") from exc

    def validate_occurred(self, value):
        if value > timezone.now() + timezone.timedelta(minutes=10):
            raise ValidationError("Is in the future.")
        return value

    def validate(self, attrs: dict) -> dict:
        if attrs.get("value") is not None and attrs["type"] != EngagementEvent.Kind.CONVERSION:
            raise ValidationError({"value": "Only a conversion has a value."})
        return attrs


class EventBatchSerializer(serializers.Serializer):
    events = EventSerializer(many=True, allow_empty=False)

    def to_internal_value(self, data):
        # Count before validating each one: a huge batch is refused without the work.
        events = data.get("events") if isinstance(data, dict) else None
        if isinstance(events, list) and len(events) > settings.ENGAGEMENT_BATCH_MAX:
            raise ValidationError(
                {
                    "events": [
                        f"At most {settings.ENGAGEMENT_BATCH_MAX} events a request; "
                        f"got {len(events)}."
                    ]
                }
            )
        return super().to_internal_value(data)


class EventsReceivedSerializer(serializers.Serializer):
    received = serializers.IntegerField(help_text="Events in the request")
    recorded = serializers.IntegerField(help_text="Events new to us, now counted")
    duplicates = serializers.IntegerField(help_text="Events we already had (counted once)")


def _flatten(errors, prefix: str = "") -> dict[str, list[str]]:
    """{'events': [{}, {'type': [...]}]} → {'events[1].type': [...]}: the field, named."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            if isinstance(key, int):  # a list's errors, by index
                name = f"{prefix}[{key}]"
            else:
                name = key if not prefix else f"{prefix}.{key}"
            if key == "non_field_errors" and prefix:
                name = prefix
            flat.update(_flatten(value, name))
    elif isinstance(errors, list) and errors and not isinstance(errors[0], str):
        for index, value in enumerate(errors):
            flat.update(_flatten(value, f"{prefix}[{index}]"))
    elif errors:
        flat[prefix or "non_field_errors"] = [str(e) for e in errors]
    return flat


class EventsView(APIView):
    permission_classes = [CanPostEvents]
    throttle_classes = [TokenRateThrottle]
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Post impressions, clicks and conversions: one event, or a batch",
        request=EventBatchSerializer,
        responses={
            200: EventsReceivedSerializer,
            400: OpenApiResponse(description="An event is invalid; the field is named"),
            415: OpenApiResponse(description="The body is not JSON"),
        },
    )
    def post(self, request: Request) -> Response:
        data = request.data
        # One event may come bare; a batch comes as {"events": [...]} or a bare list.
        if isinstance(data, list):
            data = {"events": data}
        elif isinstance(data, dict) and "events" not in data:
            data = {"events": [data]}
        batch = EventBatchSerializer(data=data)
        if not batch.is_valid():
            raise ValidationError(_flatten(batch.errors))
        recorded = services.engagement_record(
            events=batch.validated_data["events"], token=request_token(request)
        )
        received = len(batch.validated_data["events"])
        return Response(
            {"received": received, "recorded": recorded, "duplicates": received - recorded}
        )
