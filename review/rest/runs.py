"""Runs over REST: estimate, start, follow, cancel, resume, retry the failed slots."""

from __future__ import annotations

from collections import Counter
from typing import Protocol, cast

from django.contrib.auth.models import User
from django.db.models import Count
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation import services
from generation.models import (
    GenerationRun,
    Product,
    Prompt,
    Segment,
    Variant,
)
from hyperpers.errors import JSONParser
from review.auth import TokenRateThrottle
from review.permissions import PEOPLE_ONLY, IsLead, IsReviewer, ReviewerReadsLeadWrites


class RunRequestSerializer(serializers.Serializer):
    prompt = serializers.SlugField(max_length=100, help_text="The prompt's slug")
    products = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        allow_empty=False,
        max_length=100_000,
        help_text="SKUs; default: every product",
    )
    segments = serializers.ListField(
        child=serializers.SlugField(max_length=200),
        required=False,
        allow_empty=False,
        max_length=10_000,
        help_text="Segment slugs; default: every segment with members",
    )
    budget = serializers.DecimalField(
        max_digits=14,
        decimal_places=6,
        required=False,
        allow_null=True,
        help_text="Stop before spending more than this, in US dollars",
        error_messages={"invalid": "The budget must be a number of dollars."},
    )

    def validate_prompt(self, slug: str) -> Prompt:
        prompt = Prompt.objects.filter(slug=slug).first()
        if prompt is None:
            raise ValidationError(f"Unknown prompt '{slug}'")  # as the run page says it
        return prompt

    @staticmethod
    def _pick(model, key: str, wanted: list[str]) -> list:
        wanted = list(dict.fromkeys(wanted))
        found = {getattr(o, key): o for o in model.objects.filter(**{f"{key}__in": wanted})}
        missing = [v for v in wanted if v not in found]
        if missing:
            shown = ", ".join(missing[:20]) + (" …" if len(missing) > 20 else "")
            raise ValidationError(f"Unknown {model._meta.verbose_name} {key}: {shown}")
        return [found[v] for v in wanted]

    def validate_products(self, skus: list[str]) -> list[Product]:
        return self._pick(Product, "sku", skus)

    def validate_segments(self, slugs: list[str]) -> list[Segment]:
        return self._pick(Segment, "slug", slugs)


class RunEstimateLanguageSerializer(serializers.Serializer):
    language = serializers.CharField()
    slots = serializers.IntegerField()


class RunEstimateSerializer(serializers.Serializer):
    prompt = serializers.CharField()
    prompt_version = serializers.IntegerField()
    slots = serializers.IntegerField(help_text="Slots this version has not written yet")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(
        max_digits=14, decimal_places=6, allow_null=True, help_text="null: the model has no price"
    )
    languages = RunEstimateLanguageSerializer(
        many=True, help_text="The languages written in and the slots of each"
    )


# A string, not an enum: drf-spectacular names enums by field, and the variants'
# "status" enum takes that name (ENUM_NAME_OVERRIDES in settings would fix it).
@extend_schema_field(
    {"type": "string", "description": "One of: " + ", ".join(GenerationRun.Status.values)}
)
class RunStatusField(serializers.CharField):
    pass


class RunSerializer(serializers.ModelSerializer):
    status = RunStatusField()
    prompt = serializers.CharField(source="prompt_version.prompt.slug")
    prompt_version = serializers.IntegerField(source="prompt_version.number")
    done = serializers.IntegerField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True)

    class Meta:
        model = GenerationRun
        fields = [
            "id",
            "prompt",
            "prompt_version",
            "status",
            "total",
            "succeeded",
            "failed",
            "done",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cost",
            "budget",
            "estimated_prompt_tokens",
            "estimated_completion_tokens",
            "estimated_cost",
            "note",
            "error",
            "created_by",
            "created",
            "started",
            "finished",
        ]


class RunListSerializer(serializers.Serializer):
    results = RunSerializer(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next (older) page")


class RunDetailSerializer(RunSerializer):
    scope = serializers.JSONField(help_text="{products: [SKU...], segments: [slug...]}")
    variants_by_status = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Where the run's variants are now (in review, published, ...)",
    )

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "scope", "variants_by_status"]


class RunListQuerySerializer(serializers.Serializer):
    before = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, required=False, help_text="Runs older than this id"
    )
    limit = serializers.IntegerField(min_value=1, max_value=200, default=50)


class RunResumeSerializer(serializers.Serializer):
    budget = serializers.DecimalField(
        max_digits=14,
        decimal_places=6,
        required=False,
        allow_null=True,
        help_text="A new budget, in US dollars; default: keep the run's",
        error_messages={"invalid": "The budget must be a number of dollars."},
    )


class RetryFailedSerializer(serializers.Serializer):
    retried = serializers.IntegerField(help_text="Failed variants queued again")
    run = RunDetailSerializer()


RUN_RELATED = ("prompt_version__prompt", "created_by")


class _CountedRun(Protocol):
    """A run as RunDetailSerializer reads it: with where its variants are now, by status
    (counted by _run_detail(), not a column)."""

    variants_by_status: dict[str, int]


def _run_detail(run: GenerationRun) -> dict:
    run = GenerationRun.objects.select_related(*RUN_RELATED).get(pk=run.pk)
    # Where the run's variants are now: one GROUP BY, as the run page does it.
    cast(_CountedRun, run).variants_by_status = dict(
        Variant.objects.filter(run=run).order_by().values_list("status").annotate(n=Count("id"))
    )
    return RunDetailSerializer(run).data


def _scope(data: dict) -> tuple[list[Product], list[Segment]]:
    """The run's products and segments: those named, else everything (as the run page)."""
    products = data.get("products") or list(Product.objects.all())
    segments = data.get("segments") or list(Segment.objects.filter(member_count__gt=0))
    return products, segments


_RUN_400 = OpenApiResponse(
    description="A field is invalid (unknown prompt or SKU, empty scope, prompt without a "
    "version, bad budget) or the LLM endpoint refuses (`endpoint`); the field is named"
)
_LEAD_403 = OpenApiResponse(description="Not a marketing lead or staff")
_404 = OpenApiResponse(description="No such run")


class RunsView(APIView):
    parser_classes = [JSONParser]
    permission_classes = [IsAuthenticated, ReviewerReadsLeadWrites]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        summary="The runs, newest first",
        operation_id="runs_list",
        description=PEOPLE_ONLY,
        parameters=[RunListQuerySerializer],
        responses={
            200: RunListSerializer,
            400: OpenApiResponse(description="A parameter is invalid"),
            403: OpenApiResponse(description="Not a reviewer"),
        },
    )
    def get(self, request: Request) -> Response:
        query = RunListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        limit = query.validated_data["limit"]
        runs = GenerationRun.objects.select_related(*RUN_RELATED).order_by("-id")
        if "before" in query.validated_data:
            runs = runs.filter(pk__lt=query.validated_data["before"])
        page = list(runs[: limit + 1])
        following = None
        if len(page) > limit:
            page = page[:limit]
            following = request.build_absolute_uri(
                f"{reverse('api-runs')}?limit={limit}&before={page[-1].pk}"
            )
        return Response({"results": RunSerializer(page, many=True).data, "next": following})

    @extend_schema(
        summary="Start a run of a prompt's current version over products × segments",
        description="Queues one variant per slot the version has not written yet; workers "
        "write them. Ask /runs/estimate/ first to see the cost. " + PEOPLE_ONLY,
        request=RunRequestSerializer,
        responses={201: RunDetailSerializer, 400: _RUN_400, 403: _LEAD_403},
    )
    def post(self, request: Request) -> Response:
        form = RunRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        products, segments = _scope(data)
        user = request.user
        # ReviewerReadsLeadWrites let a lead or staff in to write: a person, not a token.
        assert isinstance(user, User)
        run = services.run_create(
            prompt=data["prompt"],
            products=products,
            segments=segments,
            budget=data.get("budget"),
            user=user,
        )
        response = Response(_run_detail(run), status=status.HTTP_201_CREATED)
        response["Location"] = reverse("api-run", args=[run.pk])
        return response


class RunEstimateView(APIView):
    parser_classes = [JSONParser]
    permission_classes = [IsAuthenticated, IsLead]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        summary="What a run would cost, before starting it: slots, tokens, dollars",
        description="Takes what starting the run takes; starts nothing. " + PEOPLE_ONLY,
        request=RunRequestSerializer,
        responses={200: RunEstimateSerializer, 400: _RUN_400, 403: _LEAD_403},
    )
    def post(self, request: Request) -> Response:
        form = RunRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        prompt = form.validated_data["prompt"]
        version = prompt.require_version()
        products, segments = _scope(form.validated_data)
        if not products:
            raise ValidationError(
                {"products": ["The run covers no products; import products first"]}
            )
        if not segments:
            raise ValidationError(
                {"segments": ["The run covers no segments; build segments first"]}
            )
        todo = services.queued_slots(version, products, segments)
        estimate = services.run_estimate(
            version=version,
            products=products,
            audiences=services.segment_slots(prompt, segments),
            slots=len(todo),
            per_language=Counter(language for _p, _s, language in todo),
        )
        return Response(
            RunEstimateSerializer(
                {
                    "prompt": prompt.slug,
                    "prompt_version": version.number,
                    "slots": estimate.slots,
                    "prompt_tokens": estimate.prompt_tokens,
                    "completion_tokens": estimate.completion_tokens,
                    "cost": estimate.cost,
                    "languages": [{"language": tag, "slots": n} for tag, n in estimate.languages],
                }
            ).data
        )


class RunDetailView(APIView):
    permission_classes = [IsAuthenticated, IsReviewer]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        summary="One run with its live counts",
        description=PEOPLE_ONLY,
        responses={
            200: RunDetailSerializer,
            403: OpenApiResponse(description="Not a reviewer"),
            404: _404,
        },
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(_run_detail(get_object_or_404(GenerationRun, pk=pk)))


class _RunActionView(APIView):
    parser_classes = [JSONParser]
    permission_classes = [IsAuthenticated, IsLead]
    throttle_classes = [TokenRateThrottle]


class RunCancelView(_RunActionView):
    @extend_schema(
        summary="Cancel a run: queued slots wait for a resume; calls in flight finish",
        description=PEOPLE_ONLY,
        request=None,
        responses={
            200: RunDetailSerializer,
            400: OpenApiResponse(description="The run is not going (`status`)"),
            403: _LEAD_403,
            404: _404,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        run = get_object_or_404(GenerationRun, pk=pk)
        services.run_cancel(run=run)
        return Response(_run_detail(run))


class RunResumeView(_RunActionView):
    @extend_schema(
        summary="Resume a cancelled, paused or failed run, optionally with a new budget",
        description=PEOPLE_ONLY,
        request=RunResumeSerializer,
        responses={
            200: RunDetailSerializer,
            400: OpenApiResponse(
                description="Nothing to resume (`status`), the budget is spent (`budget`) or "
                "the LLM endpoint refuses (`endpoint`)"
            ),
            403: _LEAD_403,
            404: _404,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        run = get_object_or_404(GenerationRun, pk=pk)
        form = RunResumeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        services.run_resume(run=run, budget=form.validated_data.get("budget"))
        return Response(_run_detail(run))


class RunRetryFailedView(_RunActionView):
    @extend_schema(
        summary="Queue a run's failed variants again",
        description=PEOPLE_ONLY,
        request=None,
        responses={200: RetryFailedSerializer, 403: _LEAD_403, 404: _404},
    )
    def post(self, request: Request, pk: int) -> Response:
        run = get_object_or_404(GenerationRun, pk=pk)
        retried = services.run_retry_failed(run=run)
        return Response({"retried": retried, "run": _run_detail(run)})
