from django.urls import path

from review.views import (
    account,
    catalog,
    experiments,
    imports,
    metrics,
    queue,
    runs,
    segments,
    studio,
)

app_name = "review"
urlpatterns = [
    # The review queue (review/views/queue.py)
    path("", queue.queue, name="queue"),
    path("setup/", queue.setup, name="setup"),
    path("variants/bulk/", queue.bulk, name="bulk"),
    path("variants/<int:pk>/", queue.variant_detail, name="variant"),
    path("variants/<int:pk>/approve/", queue.approve, name="approve"),
    path("variants/<int:pk>/reject/", queue.reject, name="reject"),
    path("variants/<int:pk>/regenerate/", queue.regenerate, name="regenerate"),
    path(
        "variants/<int:pk>/approve-into-experiment/",
        queue.approve_into_experiment,
        name="approve-experiment",
    ),
    path("events/<int:pk>/undo/", queue.undo, name="undo"),
    path("profile/", account.profile, name="profile"),
    path("runs/", runs.runs, name="runs"),
    path("runs/new/", runs.run_new, name="run-new"),
    path("runs/new/estimate/", runs.run_estimate, name="run-estimate"),
    path("runs/<int:pk>/", runs.run_detail, name="run"),
    path("runs/<int:pk>/<slug:action>/", runs.run_action, name="run-action"),
    path("metrics/", metrics.metrics_dashboard, name="metrics"),
    path("metrics.csv", metrics.metrics_csv, name="metrics-csv"),
    path("metrics/flag/", metrics.metrics_flag, name="metrics-flag"),
    # The catalog (review/views/catalog.py): reviewers; customers: leads
    path("products/", catalog.products, name="products"),
    path("products/<path:sku>/", catalog.product_detail, name="product"),
    path("customers/", catalog.customers, name="customers"),
    path("customers/<int:pk>/", catalog.customer_detail, name="customer"),
    path("customers/<int:pk>/erase/", catalog.customer_erase, name="customer-erase"),
    # Experiments (review/views/experiments.py): reviewers read, leads act
    path("experiments/", experiments.experiment_list, name="experiments"),
    path("experiments/<int:pk>/", experiments.experiment_detail, name="experiment"),
    path("experiments/<int:pk>/stop/", experiments.experiment_stop, name="experiment-stop"),
    path(
        "experiments/<int:pk>/arms/<slug:key>/<slug:action>/",
        experiments.experiment_arm,
        name="experiment-arm",
    ),
    path("variants/<int:pk>/experiment/", experiments.experiment_new, name="experiment-new"),
    # The marketing lead's side
    path("brand/", studio.brand_edit, name="brand"),
    path("imports/", imports.import_list, name="imports"),
    path("imports/<int:pk>/", imports.import_detail, name="import"),
    # A customer file's columns mapped in the browser, then imported (issue 18 item 2)
    path("imports/map/", imports.mapping_upload, name="import-map"),
    path("imports/map/<str:token>/", imports.mapping_edit, name="import-mapping"),
    path(
        "imports/map/<str:token>/preview/",
        imports.mapping_preview,
        name="import-mapping-preview",
    ),
    path("segments/", segments.segments, name="segments"),
    path("segments/new/", segments.segment_edit, name="segment-new"),
    path("segments/preview/", segments.segment_preview, name="segment-preview"),
    path("segments/generate/", segments.segments_generate, name="segments-generate"),
    path("segments/<slug:slug>/", segments.segment_edit, name="segment"),
    path("segments/<slug:slug>/delete/", segments.segment_delete, name="segment-delete"),
    path("prompts/", studio.prompt_list, name="prompts"),
    path("prompts/<slug:slug>/privacy/", segments.prompt_privacy, name="privacy"),
    path("prompts/<slug:slug>/", studio.studio, name="studio"),
    path("prompts/<slug:slug>/preview/", studio.studio_preview, name="studio-preview"),
    path("prompts/<slug:slug>/try/", studio.studio_try, name="studio-try"),
    path("prompts/<slug:slug>/impact/", studio.studio_impact, name="studio-impact"),
    path("prompts/<slug:slug>/save/", studio.studio_save, name="studio-save"),
    path(
        "prompts/<slug:slug>/versions/<int:number>/rollback/",
        studio.studio_rollback,
        name="studio-rollback",
    ),
]
