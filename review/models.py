"""What people decide: the audit trail of every decision on a variant."""

from django.conf import settings
from django.db import models


class ReviewEvent(models.Model):
    """One decision (or system action) on a variant. Written once, never edited."""

    class Action(models.TextChoices):
        APPROVE = "approve", "Approved"
        EDIT = "edit", "Edited and approved"
        REJECT = "reject", "Rejected"
        REGENERATE = "regenerate", "Asked for regeneration"
        RETIRE = "retire", "Retired (replaced)"
        UNDO = "undo", "Undid a decision"

    variant = models.ForeignKey(
        "generation.Variant", on_delete=models.CASCADE, related_name="review_events"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    reason = models.TextField(blank=True)
    text_before = models.TextField(blank=True)
    text_after = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} variant {self.variant_id} by {self.user}"
