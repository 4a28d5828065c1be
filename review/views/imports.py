"""The imports page, for marketing leads and staff: upload a catalog or a customer
file, follow its worker's progress, read its report or every bad row.

The upload is only recorded here (generation.imports.receive): a worker reads it, so
no request holds a big file.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from generation import imports, mapping
from generation.audience import Mapping, MappingError
from generation.errors import ServiceError
from generation.models import CustomerSource, Import
from review.forms import (
    TYPE_LABELS,
    BaseColumnFormSet,
    ColumnFormSet,
    ImportForm,
    MappingForm,
    MappingUploadForm,
    add_service_error,
)
from review.permissions import require_lead
from review.views import HtmxHttpRequest

LISTED = 50


def _page(request: HtmxHttpRequest, form: ImportForm, *, status: int = 200) -> HttpResponse:
    return render(
        request,
        "review/imports.html",
        {
            "imports": imports.listed(Import.objects.select_related("source")[:LISTED]),
            "sources": CustomerSource.objects.all(),
            "kinds": Import.Kind.choices,
            "form": form,
            "max_mb": settings.IMPORT_MAX_BYTES / 1e6,
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def import_list(request: HtmxHttpRequest) -> HttpResponse:
    require_lead(request)
    if request.method == "GET":
        return _page(request, ImportForm())
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, form, status=400)
    kind = form.cleaned_data["kind"]
    try:
        record = imports.receive(
            form.cleaned_data["file"],
            kind=kind,
            source=form.cleaned_data["source"],
            options={"skip_invalid": form.cleaned_data["skip_invalid"]}
            if kind == Import.Kind.CUSTOMERS
            else {},
            requested_by=imports.requester(request.user),
            via="web",
        )
    except imports.ImportRefused as exc:
        add_service_error(form, exc)
        return _page(request, form, status=exc.status)
    return redirect("review:import", pk=record.pk)


@login_required
def import_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One import; while it runs, its progress partial polls itself."""
    require_lead(request)
    record = imports.with_progress(
        get_object_or_404(Import.objects.select_related("source"), pk=pk)
    )
    template = "review/import.html#import-status" if request.htmx else "review/import.html"
    return render(request, template, {"record": record})


# --- column mapping: a CDP export mapped in the browser ----------------------------------


def _upload_page(
    request: HtmxHttpRequest, form: MappingUploadForm, *, status: int = 200, gone: str = ""
) -> HttpResponse:
    context = {
        "form": form,
        "gone": gone,
        "max_mb": settings.IMPORT_MAX_BYTES / 1e6,
        "columns_max": mapping.COLUMNS_MAX,
    }
    return render(request, "review/import_map_upload.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def mapping_upload(request: HtmxHttpRequest) -> HttpResponse:
    """Upload a customer file to map its columns: staged on disk, nothing recorded."""
    require_lead(request)
    if request.method == "GET":
        return _upload_page(request, MappingUploadForm())
    form = MappingUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _upload_page(request, form, status=400)
    try:
        staged = mapping.stage(form.cleaned_data["file"], user_id=request.user.pk)
    except mapping.MappingRefused as exc:
        add_service_error(form, exc)
        return _upload_page(request, form, status=exc.status)
    return redirect("review:import-mapping", token=staged.token)


def _saved_source(slug: str) -> tuple[CustomerSource | None, Mapping | None]:
    """The source to start from (?source=slug) and its mapping, when it still parses."""
    source = CustomerSource.objects.filter(slug=slug).first() if slug else None
    try:
        return source, Mapping.parse(source.mapping) if source is not None else None
    except MappingError:
        return source, None


def _initial_rows(suggested: mapping.Suggested) -> list[dict]:
    return [
        {
            "column": s.column,
            "attribute": "" if s.attribute == "external_id" else s.attribute,
            "type": s.type,
            "choices": ", ".join(s.choices),
            "personal": s.personal,
            "required": s.required,
            "ignore": s.ignore,
            "min": s.min,
            "max": s.max,
        }
        for s in suggested.columns
    ]


def _bound(request: HtmxHttpRequest, columns: list[str]) -> tuple[MappingForm, BaseColumnFormSet]:
    """The page form and its rows as posted; the rows know the external id's column
    once the page form has cleaned it."""
    form = MappingForm(request.POST, columns=columns)
    external_id = form.cleaned_data.get("external_id") if form.is_valid() else None
    if external_id is None and "external_id" not in form.errors:
        # Another field is wrong: the rows still check against the column chosen.
        chosen = request.POST.get("external_id")
        external_id = chosen if chosen in columns else None
    rows = ColumnFormSet(request.POST, columns=columns, external_id=external_id)
    return form, rows


def _mapping_page(
    request: HtmxHttpRequest,
    staged: mapping.Staged,
    read: mapping.Sample,
    suggested: mapping.Suggested,
    *,
    form: MappingForm,
    rows: BaseColumnFormSet,
    preview: mapping.Preview | None,
    source: CustomerSource | None = None,
    status: int = 200,
) -> HttpResponse:
    hints = {s.column: s for s in suggested.columns}
    context = {
        "staged": staged,
        "read": read,
        "form": form,
        "rows": rows,
        "lines": [(row, hints.get(str(row["column"].value()))) for row in rows],
        "types": TYPE_LABELS,
        "preview": preview,
        "preview_rows": mapping.PREVIEW_ROWS,
        "source": source,
        "sources": CustomerSource.objects.all(),
        "missing": suggested.missing,
        "errors": [],
    }
    return render(request, "review/import_map.html", context, status=status)


def _staged_or_gone(
    request: HtmxHttpRequest, token: str
) -> tuple[mapping.Staged, mapping.Sample] | HttpResponse:
    """The user's staged upload and its first rows, or the upload page saying it is gone."""
    try:
        staged = mapping.staged(token, user_id=request.user.pk)
        return staged, mapping.sample(staged)
    except mapping.StagedUploadGone as exc:
        return _upload_page(request, MappingUploadForm(), status=exc.status, gone=exc.message)


@login_required
@require_http_methods(["GET", "POST"])
def mapping_edit(request: HtmxHttpRequest, token: str) -> HttpResponse:
    """A staged file's columns, samples and the mapping we suggest (from a saved source
    with ?source=slug), with a preview of its first rows; POST saves the mapping as a
    source and queues the import, landing on its progress page."""
    require_lead(request)
    found = _staged_or_gone(request, token)
    if isinstance(found, HttpResponse):
        return found
    staged, read = found
    source, saved = _saved_source(request.GET.get("source", ""))
    suggested = mapping.suggest(read.columns, read.records, saved=saved)
    if request.method == "GET":
        name = source.name if source is not None else Path(staged.name).stem
        form = MappingForm(
            initial={"name": name, "external_id": suggested.external_id}, columns=read.columns
        )
        rows = ColumnFormSet(
            initial=_initial_rows(suggested),
            columns=read.columns,
            external_id=suggested.external_id,
        )
        suggestion = suggested.as_mapping()
        preview = (
            None
            if suggestion is None
            else mapping.preview(read.columns, read.records, suggestion, unit=read.unit)
        )
        return _mapping_page(
            request, staged, read, suggested, form=form, rows=rows, preview=preview, source=source
        )
    form, rows = _bound(request, read.columns)
    if all([form.is_valid(), rows.is_valid()]) and rows.mapping is not None:
        try:
            saved_source, record = mapping.mapping_import(
                staged=staged,
                name=form.cleaned_data["name"],
                mapping=rows.mapping,
                skip_invalid=form.cleaned_data["skip_invalid"],
                requested_by=imports.requester(request.user),
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(
                request,
                f"Saved the mapping as source {saved_source.name} ({saved_source.slug}); "
                f"import #{record.pk} is queued.",
            )
            return redirect("review:import", pk=record.pk)
    preview = (
        mapping.preview(read.columns, read.records, rows.mapping, unit=read.unit)
        if rows.mapping is not None
        else None
    )
    return _mapping_page(
        request, staged, read, suggested, form=form, rows=rows, preview=preview, status=400
    )


@login_required
@require_POST
def mapping_preview(request: HtmxHttpRequest, token: str) -> HttpResponse:
    """The first rows read through the mapping as posted, each error on its cell (the
    page's region, swapped in place); an invalid mapping says why there."""
    require_lead(request)
    found = _staged_or_gone(request, token)
    if isinstance(found, HttpResponse):
        return found
    _staged, read = found
    form, rows = _bound(request, read.columns)
    preview, errors = None, []
    if all([form.is_valid(), rows.is_valid()]) and rows.mapping is not None:
        preview = mapping.preview(read.columns, read.records, rows.mapping, unit=read.unit)
    else:
        errors = [*(e for field in ("external_id", "name") for e in form.errors.get(field, []))]
        errors += rows.messages()
    context = {"preview": preview, "errors": errors, "preview_rows": mapping.PREVIEW_ROWS}
    return render(request, "review/import_map.html#mapping-preview", context)
