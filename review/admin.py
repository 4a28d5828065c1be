from django.contrib import admin, messages
from django.utils import timezone

from hyperpers.admin import ReadOnlyAdmin
from review.auth import api_token_create
from review.models import ApiToken, EngagementEvent, ReviewerProfile, ReviewEvent


@admin.register(ReviewEvent)
class ReviewEventAdmin(ReadOnlyAdmin):
    """The audit trail: readable, never editable."""

    list_display = ["created", "action", "variant", "user"]
    list_filter = ["action"]
    list_select_related = ["user", "variant__product", "variant__prompt", "variant__segment"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made here; the key is shown once, in the message after saving."""

    list_display = ["name", "kind", "prefix", "rate_per_minute", "created", "created_by", "revoked"]
    list_filter = ["kind"]
    fields = ["name", "kind", "rate_per_minute", "prefix", "created", "created_by", "revoked"]
    readonly_fields = ["prefix", "created", "created_by", "revoked"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        # A token's kind is what it may do: change it by making a new token.
        return [*self.readonly_fields, "kind"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, key = api_token_create(
            name=obj.name,
            kind=obj.kind,
            rate_per_minute=obj.rate_per_minute,
            created_by=request.user,
        )
        obj.pk = token.pk
        obj.refresh_from_db()
        messages.warning(
            request,
            f"The key of '{token.name}' is {key} — copy it now: it is stored only as a hash "
            "and will not be shown again.",
        )

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        count = queryset.filter(revoked__isnull=True).update(revoked=timezone.now())
        self.message_user(request, f"Revoked {count} token(s).")


@admin.register(EngagementEvent)
class EngagementEventAdmin(admin.ModelAdmin):
    """What delivery systems posted back: readable, never editable."""

    list_display = ["occurred", "kind", "event_id", "variant", "product", "segment"]
    list_filter = ["kind"]
    list_select_related = ["variant", "product", "segment"]
    raw_id_fields = ["variant", "product", "segment", "customer", "prompt", "token"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ReviewerProfile)
class ReviewerProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "languages"]
    search_fields = ["user__username"]
