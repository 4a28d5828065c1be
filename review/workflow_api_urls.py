"""The workflow API under /api/v1/ (included by review/api_urls.py)."""

from django.urls import path

from review import workflow_api as api

urlpatterns = [
    path("imports/products/", api.ProductImportView.as_view(), name="api-import-products"),
    path("imports/customers/", api.CustomerImportView.as_view(), name="api-import-customers"),
    path("imports/", api.ImportListView.as_view(), name="api-imports"),
    path("imports/<int:pk>/", api.ImportDetailView.as_view(), name="api-import"),
    path("segments/", api.SegmentsView.as_view(), name="api-segments"),
    path("segments/rebuild/", api.SegmentRebuildView.as_view(), name="api-segments-rebuild"),
    path("segments/preview/", api.SegmentPreviewView.as_view(), name="api-segments-preview"),
    path("segments/<slug:slug>/", api.SegmentDetailView.as_view(), name="api-segment"),
    path("runs/", api.RunsView.as_view(), name="api-runs"),
    path("runs/estimate/", api.RunEstimateView.as_view(), name="api-run-estimate"),
    path("runs/<int:pk>/", api.RunDetailView.as_view(), name="api-run"),
    path("runs/<int:pk>/cancel/", api.RunCancelView.as_view(), name="api-run-cancel"),
    path("runs/<int:pk>/resume/", api.RunResumeView.as_view(), name="api-run-resume"),
    path(
        "runs/<int:pk>/retry-failed/",
        api.RunRetryFailedView.as_view(),
        name="api-run-retry-failed",
    ),
    path("messages/", api.MessagesView.as_view(), name="api-messages"),
    path("messages/runs/", api.MessageRunsView.as_view(), name="api-message-runs"),
    path("messages/<int:pk>/", api.MessageDetailView.as_view(), name="api-message"),
    path("customers/<path:external_id>/", api.CustomerEraseView.as_view(), name="api-customer"),
    path(
        "prompts/<slug:slug>/settings/",
        api.PromptSettingsView.as_view(),
        name="api-prompt-settings",
    ),
    path("variants/", api.VariantsView.as_view(), name="api-variants"),
    path("variants/<int:pk>/", api.VariantDetailView.as_view(), name="api-variant"),
]
