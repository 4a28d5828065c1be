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
    # On a retire event: the variant that went live in its place (undo restores this
    # one when that approval is taken back).
    replaced_by = models.ForeignKey(
        "generation.Variant",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} variant {self.variant_id} by {self.user}"


class ApiToken(models.Model):
    """A delivery system's key to the API. Only a hash is stored: the key is shown once.

    Read tokens fetch live copy; write tokens post engagement and imports. Each has
    its own rate limit, counted in Redis so that every web process shares it.
    """

    class Kind(models.TextChoices):
        READ = "read", "Read: live copy for delivery"
        WRITE = "write", "Write: engagement events and imports"

    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'web shop (prod)'.")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.READ)
    prefix = models.CharField(max_length=16, editable=False, help_text="Shown to tell keys apart.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    rate_per_minute = models.PositiveIntegerField(
        default=6000, help_text="Requests a minute before the API answers 429."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    created = models.DateTimeField(auto_now_add=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked is None


class EngagementEvent(models.Model):
    """An impression, click or conversion a delivery system posted back.

    What was shown comes from the exposure id the live endpoint handed out, so a
    client cannot attribute an event to copy it was never served. `variant` is null
    when the base copy was shown: those events are the control.
    """

    class Kind(models.TextChoices):
        IMPRESSION = "impression", "Impression"
        CLICK = "click", "Click"
        CONVERSION = "conversion", "Conversion"

    # Unique per token (the Meta constraint): two integrations' ids may overlap.
    event_id = models.CharField(max_length=128, help_text="The client's id.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    exposure_id = models.CharField(max_length=200)
    prompt = models.ForeignKey("generation.Prompt", on_delete=models.CASCADE, related_name="+")
    product = models.ForeignKey("generation.Product", on_delete=models.CASCADE, related_name="+")
    segment = models.ForeignKey(
        "generation.Segment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    customer = models.ForeignKey(
        "generation.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    variant = models.ForeignKey(
        "generation.Variant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="engagement_events",
    )
    # The language the copy was served in, from the exposure id ("" before ids carried
    # it): metrics can split by language.
    language = models.CharField(max_length=35, blank=True)
    value = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, help_text="Conversion value."
    )
    occurred = models.DateTimeField(help_text="When it happened, as the client saw it.")
    received = models.DateTimeField(auto_now_add=True)
    token = models.ForeignKey(
        ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-occurred", "-id"]
        indexes = [
            models.Index(fields=["prompt", "variant", "kind"], name="engagement_prompt_variant"),
            models.Index(fields=["occurred"], name="engagement_occurred"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["token", "event_id"], name="engagement_event_per_token")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.event_id}"


class ReviewerProfile(models.Model):
    """What a reviewer says about themselves: the languages they review.

    Their default queue shows variants in those languages first (review/queue.py);
    a base tag ("de") takes its regional ones (de-CH) too.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reviewer_profile"
    )
    # BCP 47 tags as generation.languages.language_tag stores them, in the reviewer's order.
    languages = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.user}: {', '.join(self.languages) or 'every language'}"

    @classmethod
    def languages_of(cls, user) -> list[str]:
        if not getattr(user, "is_authenticated", False):
            return []
        profile = cls.objects.filter(user=user).only("languages").first()
        return list(profile.languages) if profile else []
