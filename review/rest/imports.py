"""Imports over REST: an upload is recorded and a worker imports it; poll the record."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation import imports
from generation.models import (
    CustomerSource,
    Import,
)
from review.auth import TokenRateThrottle, request_token
from review.permissions import CanImport


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
            raise ValidationError(exc.body()) from exc
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
    # The stubs read this as overriding Field.source (the attribute a field reads its
    # value by), but DRF's SerializerMetaclass moves declared fields out of the class.
    source = serializers.SlugField(  # type: ignore[assignment]
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
    # Not Field.source: see CustomerImportSerializer.source.
    source: serializers.SlugRelatedField[CustomerSource] = serializers.SlugRelatedField(  # type: ignore[assignment]
        slug_field="slug", read_only=True, allow_null=True
    )
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
        body = ImportSerializer(imports.with_progress(record)).data
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
        return Response(ImportSerializer(imports.with_progress(record)).data)
