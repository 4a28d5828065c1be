from django import forms
from django.contrib import admin

from generation.audience import Mapping, MappingError
from generation.models import (
    Brand,
    Customer,
    CustomerSource,
    GenerationRun,
    Import,
    Product,
    Prompt,
    PromptVersion,
    Segment,
    SegmentRuleError,
    Variant,
    segment_rules_clean,
)
from hyperpers.admin import ReadOnlyAdmin


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    list_display = ["name", "updated"]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "category", "subcategory", "updated"]
    list_filter = ["category", "subcategory"]
    search_fields = ["sku", "name"]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["external_id", "language", "updated"]
    list_filter = ["language"]
    search_fields = ["external_id"]


class CustomerSourceForm(forms.ModelForm):
    class Meta:
        model = CustomerSource
        fields = ["slug", "name", "mapping"]

    def clean_mapping(self):
        try:
            return Mapping.parse(self.cleaned_data["mapping"]).as_json()
        except MappingError as exc:
            raise forms.ValidationError(str(exc)) from exc


@admin.register(CustomerSource)
class CustomerSourceAdmin(admin.ModelAdmin):
    form = CustomerSourceForm
    list_display = ["slug", "name", "updated"]
    readonly_fields = ["last_import"]


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["slug", "name", "rules"]

    def clean_rules(self):
        try:
            return segment_rules_clean(self.cleaned_data["rules"])
        except SegmentRuleError as exc:
            raise forms.ValidationError(str(exc)) from exc


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    readonly_fields = ["member_count", "summary"]
    list_display = ["slug", "name", "member_count", "updated"]
    search_fields = ["slug", "name"]


class PromptVersionInline(admin.TabularInline):
    model = PromptVersion
    # A tuple: the stubs type `fields` and `readonly_fields` apart; a tuple is both.
    fields = ("number", "model", "temperature", "author", "note", "created")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "brand", "channel", "copy_format", "max_length"]
    inlines = [PromptVersionInline]


@admin.register(PromptVersion)
class PromptVersionAdmin(admin.ModelAdmin):
    """Versions are immutable: they can be read here, and new ones come from the editor."""

    list_display = ["__str__", "model", "temperature", "author", "created"]
    list_filter = ["prompt"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(GenerationRun)
class GenerationRunAdmin(admin.ModelAdmin):
    list_display = ["pk", "prompt_version", "status", "total", "succeeded", "failed", "created"]
    list_filter = ["status"]
    readonly_fields = ["started", "finished", "created"]


@admin.register(Variant)
class VariantAdmin(ReadOnlyAdmin):
    """Read-only, for everyone, superusers too: a variant's status, text and publication
    change only through review/services/, which checks the slot, writes the audit
    event and refreshes live copy. An edit here would put unreviewed copy live unseen."""

    list_display = ["pk", "prompt_version", "product", "segment", "customer", "status", "created"]
    list_filter = ["status", "prompt"]
    search_fields = ["product__sku", "text"]
    raw_id_fields = ["run", "product", "segment", "customer", "prompt_version"]
    list_select_related = ["prompt_version__prompt", "product", "segment", "customer"]


@admin.register(Import)
class ImportAdmin(ReadOnlyAdmin):
    """The record of what each import did: history, not to be edited."""

    list_display = ["pk", "kind", "file_name", "status", "requested_by", "via", "created"]
    list_filter = ["kind", "status", "via"]
    search_fields = ["file_name", "requested_by"]
