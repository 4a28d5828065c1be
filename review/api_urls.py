"""/api/v1/: every REST endpoint, with the modules of review/rest/ that serve them."""

from csp.decorators import csp_exempt
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from review.rest import (
    decisions,
    engagement,
    experiments,
    imports,
    live,
    messages,
    runs,
    segments,
    variants,
)

urlpatterns = [
    path("live/", live.live, name="api-live"),
    path("live/batch/", live.LiveBatchView.as_view(), name="api-live-batch"),
    path("events/", engagement.EventsView.as_view(), name="api-events"),
    path("variants/<int:pk>/approve/", decisions.ApproveView.as_view(), name="api-variant-approve"),
    path("variants/<int:pk>/reject/", decisions.RejectView.as_view(), name="api-variant-reject"),
    path(
        "variants/<int:pk>/regenerate/",
        decisions.RegenerateView.as_view(),
        name="api-variant-regenerate",
    ),
    path("imports/products/", imports.ProductImportView.as_view(), name="api-import-products"),
    path("imports/customers/", imports.CustomerImportView.as_view(), name="api-import-customers"),
    path("imports/", imports.ImportListView.as_view(), name="api-imports"),
    path("imports/<int:pk>/", imports.ImportDetailView.as_view(), name="api-import"),
    path("segments/", segments.SegmentsView.as_view(), name="api-segments"),
    path("segments/rebuild/", segments.SegmentRebuildView.as_view(), name="api-segments-rebuild"),
    path("segments/preview/", segments.SegmentPreviewView.as_view(), name="api-segments-preview"),
    path("segments/<slug:slug>/", segments.SegmentDetailView.as_view(), name="api-segment"),
    path("runs/", runs.RunsView.as_view(), name="api-runs"),
    path("runs/estimate/", runs.RunEstimateView.as_view(), name="api-run-estimate"),
    path("runs/<int:pk>/", runs.RunDetailView.as_view(), name="api-run"),
    path("runs/<int:pk>/cancel/", runs.RunCancelView.as_view(), name="api-run-cancel"),
    path("runs/<int:pk>/resume/", runs.RunResumeView.as_view(), name="api-run-resume"),
    path(
        "runs/<int:pk>/retry-failed/",
        runs.RunRetryFailedView.as_view(),
        name="api-run-retry-failed",
    ),
    path("messages/", messages.MessagesView.as_view(), name="api-messages"),
    path("messages/runs/", messages.MessageRunsView.as_view(), name="api-message-runs"),
    path("messages/<int:pk>/", messages.MessageDetailView.as_view(), name="api-message"),
    path(
        "customers/<path:external_id>/", messages.CustomerEraseView.as_view(), name="api-customer"
    ),
    path(
        "prompts/<slug:slug>/settings/",
        messages.PromptSettingsView.as_view(),
        name="api-prompt-settings",
    ),
    path("variants/", variants.VariantsView.as_view(), name="api-variants"),
    path("variants/<int:pk>/", variants.VariantDetailView.as_view(), name="api-variant"),
    path("experiments/", experiments.ExperimentsView.as_view(), name="api-experiments"),
    path(
        "experiments/<int:pk>/",
        experiments.ExperimentDetailView.as_view(),
        name="api-experiment",
    ),
    path(
        "experiments/<int:pk>/stop/",
        experiments.ExperimentStopView.as_view(),
        name="api-experiment-stop",
    ),
    path(
        "experiments/<int:pk>/challengers/",
        experiments.ExperimentChallengersView.as_view(),
        name="api-experiment-challengers",
    ),
    path(
        "experiments/<int:pk>/arms/",
        experiments.ExperimentArmsView.as_view(),
        name="api-experiment-arms",
    ),
    path(
        "experiments/<int:pk>/arms/<slug:key>/pause/",
        experiments.ArmPauseView.as_view(),
        name="api-experiment-arm-pause",
    ),
    path(
        "experiments/<int:pk>/arms/<slug:key>/resume/",
        experiments.ArmResumeView.as_view(),
        name="api-experiment-arm-resume",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The two documentation pages run the UIs' own inline scripts and workers: they
    # are the only pages without the content security policy.
    path(
        "docs/",
        csp_exempt()(SpectacularSwaggerView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path(
        "redoc/",
        csp_exempt()(SpectacularRedocView.as_view(url_name="api-schema")),
        name="api-redoc",
    ),
]
