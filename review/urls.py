from django.urls import path

from review import audiences, imports, studio, views

app_name = "review"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("variants/bulk/", views.bulk, name="bulk"),
    path("variants/<int:pk>/", views.variant_detail, name="variant"),
    path("variants/<int:pk>/approve/", views.approve, name="approve"),
    path("variants/<int:pk>/reject/", views.reject, name="reject"),
    path("variants/<int:pk>/regenerate/", views.regenerate, name="regenerate"),
    path("events/<int:pk>/undo/", views.undo, name="undo"),
    path("profile/", views.profile, name="profile"),
    path("runs/", views.runs, name="runs"),
    path("runs/new/", views.run_new, name="run-new"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/<slug:action>/", views.run_action, name="run-action"),
    path("metrics/", views.metrics_dashboard, name="metrics"),
    path("metrics.csv", views.metrics_csv, name="metrics-csv"),
    path("metrics/flag/", views.metrics_flag, name="metrics-flag"),
    # The marketing lead's side (review/studio.py)
    path("brand/", studio.brand_edit, name="brand"),
    path("imports/", imports.import_list, name="imports"),
    path("imports/<int:pk>/", imports.import_detail, name="import"),
    path("segments/", audiences.segments, name="segments"),
    path("segments/new/", audiences.segment_edit, name="segment-new"),
    path("segments/preview/", audiences.segment_preview, name="segment-preview"),
    path("segments/generate/", audiences.segments_generate, name="segments-generate"),
    path("segments/<slug:slug>/", audiences.segment_edit, name="segment"),
    path("segments/<slug:slug>/delete/", audiences.segment_delete, name="segment-delete"),
    path("prompts/", studio.prompt_list, name="prompts"),
    path("prompts/<slug:slug>/privacy/", audiences.prompt_privacy, name="privacy"),
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
