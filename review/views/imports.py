"""The imports page, for marketing leads and staff: upload a catalog or a customer
file, follow its worker's progress, read its report or every bad row.

The upload is only recorded here (generation.imports.receive): a worker reads it, so
no request holds a big file.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from generation import imports
from generation.models import CustomerSource, Import
from review.forms import ImportForm, add_service_error
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
