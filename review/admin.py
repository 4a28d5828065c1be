from django.contrib import admin

from review.models import ReviewEvent


@admin.register(ReviewEvent)
class ReviewEventAdmin(admin.ModelAdmin):
    """The audit trail: readable, never editable."""

    list_display = ["created", "action", "variant", "user"]
    list_filter = ["action"]
    list_select_related = ["user", "variant__product", "variant__prompt", "variant__segment"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
