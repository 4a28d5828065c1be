"""Admin pieces both apps use."""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Readable in the admin, never added, changed or deleted there, superusers too."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
