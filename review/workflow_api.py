"""The workflow over REST: imports, segments, runs and variants.

Thin like the pages: a permission, a serializer that validates the request, the same
service the pages and commands call, a serializer that shows the result. Who may do
what is decided by the HTML views' own helpers (`require_reviewer`, `require_lead`),
so the API and the pages cannot drift apart; API tokens belong to no group, so only
the import endpoints (write tokens) let them in.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation import imports, messages, services
from generation.models import (
    Customer,
    CustomerSource,
    GenerationRun,
    Import,
    Product,
    Prompt,
    Segment,
    Variant,
)
from hyperpers.errors import JSONParser
from review import queue as q
from review import services as review_services
from review.auth import TokenRateThrottle, request_token
from review.models import ApiToken, ReviewEvent
from review.views import VARIANT_RELATED, require_lead, require_reviewer

# ---------------------------------------------------------------- permissions


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

# ---------------------------------------------------------------- imports


class ImportRequestSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The export to import, as UTF-8")
    format: serializers.ChoiceField  # each import's own
    kind: str

    def validate(self, attrs: dict) -> dict:
        try:
            attrs["format"] = imports.format_for(
                self.kind, attrs["file"].name or "", attrs.get("format")
            )
        except imports.ImportRefused as exc:
            raise ValidationError({exc.field: exc.message}) from exc
        return attrs


class ProductImportSerializer(ImportRequestSerializer):
    kind = Import.Kind.PRODUCTS
    format = serializers.ChoiceField(
        choices=["csv"],
        required=False,
        help_text="csv: our layout, a Magento / Adobe Commerce export or the Magento "
        "sample fixtures, told apart by the header. Default: from the file's extension",
    )


class CustomerImportSerializer(ImportRequestSerializer):
    kind = Import.Kind.CUSTOMERS
    format = serializers.ChoiceField(
        choices=["csv", "jsonl", "parquet"],
        required=False,
        help_text="csv, jsonl (JSON Lines) or parquet. Default: from the file's extension",
    )
    source = serializers.SlugField(
        required=False,
        help_text="A saved source whose column mapping to read the file through; without "
        "one the file uses our column names (external_id, language, attributes)",
    )
    skip_invalid = serializers.BooleanField(
        default=False,
        help_text="Import the good rows and report the bad ones; by default a bad row "
        "imports nothing",
    )

    def validate_source(self, slug: str) -> CustomerSource:
        source = CustomerSource.objects.filter(slug=slug).first()
        if source is None:
            known = ", ".join(CustomerSource.objects.values_list("slug", flat=True)) or "none"
            raise ValidationError(f"Unknown source '{slug}'. Known sources: {known}")
        return source


class ImportProgressSerializer(serializers.Serializer):
    rows = serializers.IntegerField(allow_null=True, help_text="Records read so far")
    bad = serializers.IntegerField(help_text="Bad records found so far")
    done = serializers.FloatField(help_text="Share of the file read, 0 to 1")


class ImportSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    file = serializers.CharField(source="file_name", help_text="The name it was sent under")
    source = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    progress = ImportProgressSerializer(read_only=True)
    status = serializers.CharField(
        read_only=True, help_text="queued, running, done or failed (nothing written)"
    )
    result = serializers.JSONField(
        read_only=True,
        allow_null=True,
        help_text="When done: created, updated, unchanged; for customers also rows, "
        "skipped, errors (the bad rows skipped), segments, seconds, personal",
    )
    failure = serializers.JSONField(
        read_only=True,
        allow_null=True,
        help_text="When failed (nothing was written): file (where and what), line, "
        "column, and for customer files errors (every bad row found, up to 50)",
    )

    class Meta:
        model = Import
        fields = [
            "id", "url", "kind", "file", "size", "format", "source", "status",
            "requested_by", "via", "created", "started", "finished", "progress",
            "result", "failure",
        ]  # fmt: skip

    @extend_schema_field(serializers.CharField())
    def get_url(self, record: Import) -> str:
        return reverse("api-import", args=[record.pk])


class ImportListSerializer(serializers.Serializer):
    results = ImportSerializer(many=True)


_IMPORT_RESPONSES = {
    202: OpenApiResponse(
        ImportSerializer,
        description="Recorded and queued: follow `url` (also the Location header) until "
        "`status` is done or failed",
    ),
    400: OpenApiResponse(description="No file, or `format` is missing or unknown"),
    403: OpenApiResponse(description="Not a write token, a marketing lead or staff"),
    413: OpenApiResponse(description="The file is larger than IMPORT_MAX_BYTES"),
    415: OpenApiResponse(description="Not multipart/form-data (or form-urlencoded)"),
}


class _ImportView(APIView):
    permission_classes = [IsAuthenticated, CanImport]
    throttle_classes = [TokenRateThrottle]
    parser_classes = [MultiPartParser, FormParser]
    serializer_class: type[ImportRequestSerializer]

    def options_for(self, data: dict) -> dict:
        """What the import is asked to do beyond reading the file."""
        return {}

    def post(self, request: Request) -> Response:
        form = self.serializer_class(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        token = request_token(request)
        try:
            record = imports.receive(
                data["file"],
                kind=form.kind,
                format=data["format"],
                source=data.get("source"),
                options=self.options_for(data),
                requested_by=imports.requester(request.user, token),
                token_id=token.pk if token else None,
                via="api",
            )
        except imports.ImportRefused as exc:
            return Response({exc.field: [exc.message]}, status=exc.status)
        record.progress = imports.progress(record)
        body = ImportSerializer(record).data
        return Response(body, status=202, headers={"Location": body["url"]})


class ProductImportView(_ImportView):
    serializer_class = ProductImportSerializer

    @extend_schema(
        summary="Import products (upsert by SKU) in the background; a bad row imports nothing",
        request={"multipart/form-data": ProductImportSerializer},
        responses=_IMPORT_RESPONSES,
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class CustomerImportView(_ImportView):
    serializer_class = CustomerImportSerializer

    def options_for(self, data: dict) -> dict:
        return {"skip_invalid": data["skip_invalid"]}

    @extend_schema(
        summary="Import customers (upsert by external id) in the background; by default "
        "a bad row imports nothing, skip_invalid imports the good rows",
        request={"multipart/form-data": CustomerImportSerializer},
        responses=_IMPORT_RESPONSES,
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


def _imports_for(request: Request):
    """A token sees the imports it sent; leads and staff see every import."""
    found = Import.objects.select_related("source")
    token = request_token(request)
    return found.filter(requested_by_token=token.pk) if token else found


class ImportListView(APIView):
    permission_classes = [IsAuthenticated, CanImport]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        operation_id="imports_list",
        summary="The latest imports (100), newest first",
        responses={200: ImportListSerializer},
    )
    def get(self, request: Request) -> Response:
        records = imports.listed(_imports_for(request)[:100])
        return Response({"results": ImportSerializer(records, many=True).data})


class ImportDetailView(APIView):
    permission_classes = [IsAuthenticated, CanImport]
    throttle_classes = [TokenRateThrottle]

    @extend_schema(
        summary="One import: its status, progress while it runs, then its report or "
        "where it failed",
        responses={200: ImportSerializer, 404: OpenApiResponse(description="No such import")},
    )
    def get(self, request: Request, pk: int) -> Response:
        record = get_object_or_404(_imports_for(request), pk=pk)
        record.progress = imports.progress(record)
        return Response(ImportSerializer(record).data)


# ---------------------------------------------------------------- segments


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


_SEGMENT_ERRORS = {
    400: OpenApiResponse(description="A rule, the name or the slug is wrong; `rules` says which"),
    403: OpenApiResponse(description="Not a marketing lead or staff (reading: not a reviewer)"),
    404: OpenApiResponse(description="No such segment"),
}


def _segment_error(exc: services.SegmentError) -> Response:
    message = str(exc)
    field = "rules" if message.startswith(("Rule", "Rules", "An attribute")) else "name"
    if "already exists" in message:
        field = "slug"
    return Response({field: [message]}, status=400)


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
        try:
            segment = services.segment_save(
                slug=data.get("slug", ""), name=data["name"], rules=data["rules"]
            )
        except services.SegmentError as exc:
            return _segment_error(exc)
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
        try:
            segment = services.segment_save(
                segment=segment,
                name=form.validated_data["name"],
                rules=form.validated_data["rules"],
            )
        except services.SegmentError as exc:
            return _segment_error(exc)
        return Response(SegmentSerializer(segment).data)

    @extend_schema(
        summary="Delete a segment no copy was written for",
        description=PEOPLE_ONLY,
        responses={
            204: None,
            409: OpenApiResponse(description="Variants were written for it"),
            403: OpenApiResponse(description="Not a marketing lead or staff"),
            404: OpenApiResponse(description="No such segment"),
        },
    )
    def delete(self, request: Request, slug: str) -> Response:
        try:
            services.segment_delete(segment=self._segment(slug))
        except services.SegmentError as exc:
            return Response({"detail": str(exc)}, status=409)
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
        try:
            members, summary = services.segment_preview(rules=form.validated_data["rules"])
        except services.SegmentError as exc:
            return _segment_error(exc)
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
        try:
            built = services.segments_build(by=form.validated_data["by"])
        except services.SegmentError as exc:
            raise ValidationError({"by": [str(exc)]}) from exc
        return Response({"results": SegmentSerializer(built, many=True).data})


# ---------------------------------------------------------------- runs

# run_create, run_resume and run_retry_failed raise RunError with a message for
# people and no field: the start of each message, and the request field it is about.
# The tests hold every case, so a reworded message fails them instead of losing its
# field.
_RUN_ERROR_FIELDS = (
    (re.compile(r"Prompt '"), "prompt"),
    (re.compile(r"The run covers no products"), "products"),
    (re.compile(r"The run covers no segments"), "segments"),
    (re.compile(r"(The|A) budget|Run \d+ has spent"), "budget"),
    (re.compile(r"(The LLM endpoint|Cannot reach the LLM endpoint)"), "endpoint"),
    (re.compile(r"Run \d+ is "), "status"),
)


def _run_error(exc: services.RunError) -> ValidationError:
    message = str(exc)
    field = next((f for pattern, f in _RUN_ERROR_FIELDS if pattern.match(message)), None)
    return ValidationError({field or "non_field_errors": [message]})


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


def _run_detail(run: GenerationRun) -> dict:
    run = GenerationRun.objects.select_related(*RUN_RELATED).get(pk=run.pk)
    # Where the run's variants are now: one GROUP BY, as the run page does it.
    run.variants_by_status = dict(
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
        try:
            run = services.run_create(
                prompt=data["prompt"],
                products=products,
                segments=segments,
                budget=data.get("budget"),
                user=request.user,
            )
        except services.RunError as exc:
            raise _run_error(exc) from exc
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
        version = prompt.current_version
        if version is None:
            raise ValidationError(
                {"prompt": [f"Prompt '{prompt.slug}' has no version yet; save one first"]}
            )
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
        try:
            services.run_cancel(run=run)
        except services.RunError as exc:
            raise _run_error(exc) from exc
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
        try:
            services.run_resume(run=run, budget=form.validated_data.get("budget"))
        except services.RunError as exc:
            raise _run_error(exc) from exc
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


# ---------------------------------------------------------------- variants

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
    variant = Variant.objects.select_related(*VARIANT_RELATED).get(pk=variant.pk)
    variant.checks = q.checks_failed_first(variant.checks)
    variant.events_newest_first = list(variant.review_events.select_related("user").order_by("-id"))
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


# ---------------------------------------------------------------- one-to-one messages


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
    body = messages.message_payload(variant)
    body["url"] = request.build_absolute_uri(reverse("api-message", args=[variant.pk]))
    return body


def _message_error(exc: messages.MessageError) -> Response:
    return Response({exc.field: [str(exc)]}, status=400)


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
        try:
            variant, _created = messages.message_create(
                prompt=data["prompt"],
                product=data["product"],
                customer=data["customer"],
                purpose=data["purpose"],
                callback_url=data.get("callback_url", ""),
                token_id=_token_id(request),
            )
        except messages.MessageError as exc:
            return _message_error(exc)
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
        try:
            run = messages.message_run_create(
                prompt=data["prompt"],
                product=data["product"],
                purpose=data["purpose"],
                customers=data.get("customers"),
                segment=data.get("segment"),
                token_id=_token_id(request),
                user=request.user if request_token(request) is None else None,
            )
        except messages.MessageError as exc:
            return _message_error(exc)
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
        try:
            removed = services.customer_erase(external_id=external_id)
        except services.CustomerNotFound as exc:
            raise NotFound(str(exc)) from exc
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
        try:
            with transaction.atomic():
                self._save(prompt, data)
        except messages.MessageError as exc:
            return _message_error(exc)
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


# ---------------------------------------------------------------- decisions
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

    def refused_field(self, data: dict) -> str:
        """The request field a refusal (not a stale revision) is about."""
        return "status"

    def post(self, request: Request, pk: int) -> Response:
        variant = get_object_or_404(Variant, pk=pk)
        form = self.serializer_class(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            variant = self.decide(variant, form.validated_data, request.user)
        except review_services.StaleDecision as exc:
            now = Variant.objects.only("revision", "status").get(pk=variant.pk)
            body = {"detail": str(exc), "revision": now.revision, "status": now.status}
            return Response(body, status=status.HTTP_409_CONFLICT)
        except review_services.DecisionError as exc:
            raise ValidationError({self.refused_field(form.validated_data): [str(exc)]}) from exc
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

    def refused_field(self, data: dict) -> str:
        return "reason" if not self._reason(data) else "status"

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
