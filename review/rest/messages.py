"""One-to-one messages over REST: ask, follow, erase a customer, a prompt's settings."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation import callbacks, services
from generation.models import (
    Customer,
    Product,
    Prompt,
    Segment,
    Variant,
)
from generation.services import messages
from hyperpers.errors import JSONParser
from review.auth import TokenRateThrottle, request_token
from review.permissions import PEOPLE_ONLY, CanImport, ReviewerReadsLeadWrites
from review.rest.runs import RunSerializer

_NOT_A_SENDER = OpenApiResponse(description="Not a write token, a marketing lead or staff")


class CanSendMessages(CanImport):
    """Journey tools with a write token, and marketing leads and staff."""

    refusal = "Only marketing leads and staff (or a write token) ask for messages"

    def has_permission(self, request: Request, view) -> bool:
        allowed = super().has_permission(request, view)
        if not allowed and request_token(request) is not None:
            self.message = "Messages need a write token (read tokens only fetch live copy)."
        return allowed


def _by(model, field: str, value: str, name: str):
    found = model.objects.filter(**{field: value}).first()
    if found is None:
        raise ValidationError({name: [f"Unknown {name} '{value}'"]})
    return found


class MessageRequestSerializer(serializers.Serializer):
    prompt = serializers.SlugField(help_text="The prompt (its current version writes)")
    product = serializers.CharField(max_length=64, help_text="The product's SKU")
    customer = serializers.CharField(max_length=128, help_text="The customer's external id")
    purpose = serializers.CharField(
        max_length=300,
        help_text="What the message is for, e.g. 'back in stock'. With the prompt version, "
        "product and customer it identifies the message: asking again returns it",
    )
    wait = serializers.FloatField(
        default=0,
        min_value=0,
        max_value=30,
        help_text="Seconds to wait for the copy (0-30); 0 answers at once with 202",
    )
    callback_url = serializers.URLField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="POSTed {event, message} when the message is published, rejected or fails",
    )

    def validate(self, attrs: dict) -> dict:
        attrs["prompt"] = _by(Prompt, "slug", attrs["prompt"], "prompt")
        attrs["product"] = _by(Product, "sku", attrs["product"], "product")
        attrs["customer"] = _by(Customer, "external_id", attrs["customer"], "customer")
        return attrs


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    prompt = serializers.CharField()
    prompt_version = serializers.IntegerField()
    product = serializers.CharField()
    customer = serializers.CharField(allow_null=True)
    purpose = serializers.CharField()
    language = serializers.CharField()
    text = serializers.CharField(allow_null=True, help_text="Only once published")
    published = serializers.CharField(allow_null=True)
    review_policy = serializers.CharField()
    policy_outcome = serializers.CharField(
        allow_null=True,
        help_text="auto (published by the policy), sampled or held (a check "
        "failed): both wait for people; null: review_all, or not written yet",
    )
    checks_failed = serializers.IntegerField()
    error = serializers.CharField(allow_null=True)
    url = serializers.CharField()


def _message_body(request: Request, variant: Variant) -> dict:
    variant = Variant.objects.select_related("prompt", "prompt_version", "product", "customer").get(
        pk=variant.pk
    )
    body = callbacks.message_payload(variant)
    body["url"] = request.build_absolute_uri(reverse("api-message", args=[variant.pk]))
    return body


class MessagesView(APIView):
    parser_classes = [JSONParser]
    permission_classes = [IsAuthenticated, CanSendMessages]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        summary="Write a one-to-one message for a customer",
        description="Queues the message and answers 202 with its URL; with `wait`, waits "
        "up to that many seconds for the copy and answers 200 once it is written (the text "
        "shows once it is published: by a reviewer, or by the prompt's review policy). "
        "`callback_url` is told when it is published, rejected or fails.",
        request=MessageRequestSerializer,
        responses={
            200: MessageSerializer,
            202: MessageSerializer,
            400: OpenApiResponse(description="A field is missing or names nothing known"),
            403: _NOT_A_SENDER,
        },
    )
    def post(self, request: Request) -> Response:
        form = MessageRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        variant, _created = messages.message_create(
            prompt=data["prompt"],
            product=data["product"],
            customer=data["customer"],
            purpose=data["purpose"],
            callback_url=data.get("callback_url", ""),
            token_id=_token_id(request),
        )
        if data["wait"]:
            variant = messages.message_wait(variant, seconds=data["wait"])
        waiting = variant.status in (Variant.Status.QUEUED, Variant.Status.GENERATING)
        body = _message_body(request, variant)
        return Response(body, status=202 if waiting else 200, headers={"Location": body["url"]})


def _token_id(request: Request) -> int | None:
    token = request_token(request)
    return token.pk if token is not None else None


class MessageDetailView(APIView):
    permission_classes = [IsAuthenticated, CanSendMessages]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        summary="A one-to-one message: its status, and its text once published",
        responses={
            200: MessageSerializer,
            403: _NOT_A_SENDER,
            404: OpenApiResponse(description="No such message"),
        },
    )
    def get(self, request: Request, pk: int) -> Response:
        messages_read = Variant.objects.filter(pk=pk, customer__isnull=False)
        token_id = _token_id(request)
        if token_id is not None:
            # A token reads only the messages it asked for; people (leads) read any.
            messages_read = messages_read.filter(requested_by_token=token_id)
        variant = messages_read.first()
        if variant is None:
            raise NotFound(f"No message {pk}")
        return Response(_message_body(request, variant))


class MessageRunSerializer(serializers.Serializer):
    prompt = serializers.SlugField()
    product = serializers.CharField(max_length=64)
    purpose = serializers.CharField(max_length=300)
    customers = serializers.ListField(
        child=serializers.CharField(max_length=128),
        required=False,
        max_length=messages.RUN_CUSTOMERS_MAX,
        help_text="External ids; or give `segment`",
    )
    segment = serializers.SlugField(required=False, help_text="Every member of the segment")

    def validate(self, attrs: dict) -> dict:
        attrs["prompt"] = _by(Prompt, "slug", attrs["prompt"], "prompt")
        attrs["product"] = _by(Product, "sku", attrs["product"], "product")
        if ("customers" in attrs) == ("segment" in attrs):
            raise ValidationError({"customers": ["Give either customers or a segment"]})
        if "segment" in attrs:
            attrs["segment"] = _by(Segment, "slug", attrs["segment"], "segment")
        else:
            ids = list(dict.fromkeys(attrs["customers"]))
            found = {c.external_id: c for c in Customer.objects.filter(external_id__in=ids)}
            missing = [i for i in ids if i not in found]
            if missing:
                shown = ", ".join(f"'{m}'" for m in missing[:10])
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                raise ValidationError({"customers": [f"Unknown customer {shown}{more}"]})
            attrs["customers"] = [found[i] for i in ids]
        return attrs


class MessageRunsView(APIView):
    parser_classes = [JSONParser]
    permission_classes = [IsAuthenticated, CanSendMessages]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        summary="Write one message per customer (listed, or a segment's members) as a run",
        request=MessageRunSerializer,
        responses={
            202: RunSerializer,
            400: OpenApiResponse(description="A field is missing or names nothing known"),
            403: _NOT_A_SENDER,
        },
    )
    def post(self, request: Request) -> Response:
        form = MessageRunSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        run = messages.message_run_create(
            prompt=data["prompt"],
            product=data["product"],
            purpose=data["purpose"],
            customers=data.get("customers"),
            segment=data.get("segment"),
            token_id=_token_id(request),
            user=request.user
            if request_token(request) is None and isinstance(request.user, User)
            else None,
        )
        return Response(RunSerializer(run).data, status=202)


class CustomerEraseView(APIView):
    permission_classes = [IsAuthenticated, CanImport]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        summary="Erase a customer (GDPR): their data and every one-to-one message for them",
        responses={
            200: OpenApiResponse(description="{customer: 1, variants: n}: what was removed"),
            403: _NOT_A_SENDER,
            404: OpenApiResponse(description="No such customer"),
        },
    )
    def delete(self, request: Request, external_id: str) -> Response:
        removed = services.customer_erase(external_id=external_id)
        return Response(removed)


class PromptSettingsSerializer(serializers.Serializer):
    review_policy = serializers.ChoiceField(choices=Prompt.ReviewPolicy.choices, required=False)
    review_sample_percent = serializers.IntegerField(min_value=0, max_value=100, required=False)
    allowed_attributes = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        help_text="Customer attributes the prompt may send; empty: every one not personal",
    )
    languages = serializers.ListField(
        child=serializers.CharField(max_length=35),
        required=False,
        help_text="BCP 47 tags to write in (de-CH gets slots of its own); empty: every "
        "language at least language_min_share percent of a segment's members read",
    )
    language_min_share = serializers.IntegerField(min_value=1, max_value=100, required=False)


class PromptSettingsView(APIView):
    parser_classes = [JSONParser]
    permission_classes = [IsAuthenticated, ReviewerReadsLeadWrites]
    throttle_classes = [TokenRateThrottle]

    def _body(self, prompt: Prompt) -> dict:
        return {
            "slug": prompt.slug,
            "review_policy": prompt.review_policy,
            "review_sample_percent": prompt.review_sample_percent,
            "policy_counts": messages.policy_counts(prompt),
            "allowed_attributes": prompt.allowed_attributes,
            "languages": prompt.languages,
            "language_min_share": prompt.language_min_share,
        }

    @extend_schema(
        summary="A prompt's review policy (with its counts), attribute allowlist and languages",
        description=PEOPLE_ONLY,
        responses={
            200: OpenApiResponse(description="The settings"),
            403: OpenApiResponse(description="Not a reviewer"),
            404: OpenApiResponse(description="No such prompt"),
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(self._body(get_object_or_404(Prompt, slug=slug)))

    @extend_schema(
        summary="Change a prompt's review policy, attribute allowlist or languages",
        description=PEOPLE_ONLY,
        request=PromptSettingsSerializer,
        responses={
            200: OpenApiResponse(description="The settings"),
            400: OpenApiResponse(description="A field is wrong; the body names it"),
            403: OpenApiResponse(description="Not a marketing lead or staff"),
            404: OpenApiResponse(description="No such prompt"),
        },
    )
    def patch(self, request: Request, slug: str) -> Response:
        prompt = get_object_or_404(Prompt, slug=slug)
        form = PromptSettingsSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        with transaction.atomic():
            self._save(prompt, data)
        return Response(self._body(prompt))

    @staticmethod
    def _save(prompt: Prompt, data: dict) -> None:
        """Both settings or neither: a refused allowlist keeps the policy as it was."""
        if "review_policy" in data or "review_sample_percent" in data:
            messages.prompt_policy_save(
                prompt=prompt,
                policy=data.get("review_policy", prompt.review_policy),
                sample_percent=data.get("review_sample_percent"),
            )
        if "allowed_attributes" in data:
            messages.prompt_allowlist_save(prompt=prompt, attributes=data["allowed_attributes"])
        if "languages" in data or "language_min_share" in data:
            messages.prompt_languages_save(
                prompt=prompt,
                languages=data.get("languages"),
                min_share=data.get("language_min_share"),
            )
