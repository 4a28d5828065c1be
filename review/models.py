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
        # Experiments (review.services.experiments): every decision on an arm.
        EXPERIMENT_START = "exp_start", "Started an experiment with it"
        EXPERIMENT_JOIN = "exp_join", "Approved into the experiment"
        EXPERIMENT_PAUSE = "exp_pause", "Paused in the experiment"
        EXPERIMENT_RESUME = "exp_resume", "Resumed in the experiment"
        EXPERIMENT_WINNER = "exp_winner", "Proposed as the experiment's winner"
        EXPERIMENT_PROMOTE = "exp_promote", "Published as the experiment's winner"
        EXPERIMENT_STOP = "exp_stop", "Its experiment stopped"

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
    # Written at most once a minute per token (review.auth), never once a request.
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

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
    # From an e3 exposure id: the experiment and arm served, the shares in force, the
    # probability the arm had, whether the visitor was randomized (a request without a
    # visitor gets the default arm and is left out of comparisons), and a hash of the
    # visitor, so analysis counts visitors rather than page views.
    experiment = models.ForeignKey(
        "Experiment", null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    weights = models.ForeignKey(
        "ExperimentWeights", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    arm = models.CharField(max_length=24, blank=True)
    probability = models.FloatField(null=True, blank=True)
    randomized = models.BooleanField(default=False)
    visitor = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-occurred", "-id"]
        indexes = [
            models.Index(
                fields=["experiment", "randomized", "kind", "arm"], name="engagement_experiment"
            ),
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


class Experiment(models.Model):
    """Several approved variants of one slot served side by side, against the base copy.

    A slot is a prompt, a product, a segment and a language: the copy one audience
    reads in one place. While an experiment runs, the live path picks an arm for each
    visitor by a stable hash of the experiment and the visitor (review.experiments.
    allocation.pick_arm) with the shares in force (the latest ExperimentWeights); the
    control is the product's base copy, the human-written text every variant must beat.
    At most one experiment runs per slot. What the statistics say, and what they
    decided, are in review.experiments and the audit trail (ReviewEvent).
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"

    class Allocation(models.TextChoices):
        FIXED = "fixed", "Fixed split"
        THOMPSON = "thompson", "Thompson sampling (a bandit)"

    class Metric(models.TextChoices):
        CLICK = "click", "Clicks per visitor shown the copy"
        CONVERSION = "conversion", "Conversions per visitor shown the copy"

    class Correction(models.TextChoices):
        HOLM = "holm", "Holm (controls the family-wise error rate)"
        BENJAMINI_HOCHBERG = "fdr_bh", "Benjamini-Hochberg (controls the false discovery rate)"

    prompt = models.ForeignKey("generation.Prompt", on_delete=models.CASCADE, related_name="+")
    product = models.ForeignKey("generation.Product", on_delete=models.CASCADE, related_name="+")
    segment = models.ForeignKey("generation.Segment", on_delete=models.CASCADE, related_name="+")
    # The stored tag of the slot's variants ("" for those from before languages).
    language = models.CharField(max_length=35, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    allocation = models.CharField(
        max_length=8, choices=Allocation.choices, default=Allocation.FIXED
    )
    metric = models.CharField(max_length=12, choices=Metric.choices, default=Metric.CLICK)
    correction = models.CharField(max_length=8, choices=Correction.choices, default=Correction.HOLM)
    control_share = models.FloatField(
        default=0.10, help_text="The base copy's share of the traffic, kept under a bandit."
    )
    floor = models.FloatField(
        default=0.01, help_text="The least share a variant keeps under a bandit."
    )
    cadence_minutes = models.PositiveIntegerField(
        default=15, help_text="How often a bandit recomputes the shares."
    )
    min_exposures = models.PositiveIntegerField(
        default=1000, help_text="Visitors every arm needs before a winner is proposed."
    )
    auto_pause_losers = models.BooleanField(
        default=True, help_text="Pause an arm that is worse than the control."
    )
    auto_promote = models.BooleanField(
        default=False, help_text="Publish a winner without waiting for a person."
    )
    started = models.DateTimeField(auto_now_add=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stopped = models.DateTimeField(null=True, blank=True)
    stopped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stop_reason = models.TextField(blank=True)
    # The arm proposed as the winner by the last analysis, and the one promoted.
    proposed = models.ForeignKey(
        "generation.Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    winner = models.ForeignKey(
        "generation.Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What the last analysis (beat, review.tasks) found: when, and whether the
    # sample-ratio check blocked automatic decisions.
    analysed = models.DateTimeField(null=True, blank=True)
    sample_ratio_mismatch = models.BooleanField(default=False)
    analysis_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-started", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "product", "segment", "language"],
                condition=models.Q(status="running"),
                name="one_running_experiment_per_slot",
            ),
            models.CheckConstraint(
                condition=models.Q(control_share__gt=0, control_share__lt=1),
                name="experiment_control_share_between_0_and_1",
            ),
        ]

    def __str__(self) -> str:
        return f"experiment {self.pk} on {self.prompt_id}/{self.product_id}/{self.segment_id}"

    @property
    def key(self) -> str:
        """What pick_arm hashes with the visitor: stable for the experiment's life."""
        return f"experiment-{self.pk}"

    @property
    def is_running(self) -> bool:
        return self.status == self.Status.RUNNING


class ExperimentArm(models.Model):
    """One arm: a variant, or (variant null) the control, the base copy."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Serving"
        PAUSED = "paused", "Paused"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    variant = models.ForeignKey(
        "generation.Variant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="experiment_arms",
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    added = models.DateTimeField(auto_now_add=True)
    paused = models.DateTimeField(null=True, blank=True)
    pause_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "variant"], name="one_arm_per_variant"),
            models.UniqueConstraint(
                fields=["experiment"],
                condition=models.Q(variant__isnull=True),
                name="one_control_per_experiment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} of experiment {self.experiment_id}"

    @property
    def key(self) -> str:
        """The arm's key in share mappings and exposure ids."""
        return arm_key(self.variant_id)

    @property
    def is_control(self) -> bool:
        return self.variant_id is None


def arm_key(variant_id: int | None) -> str:
    """'control' for the base copy, 'v<id>' for a variant."""
    return "control" if variant_id is None else f"v{variant_id}"


class ExperimentWeights(models.Model):
    """The shares in force from `effective_from` until the next row: every exposure
    names the row it was served under, so analysis knows the probability it had."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="weights")
    weights = models.JSONField(help_text="Arm key ('control', 'v<variant id>') -> share.")
    effective_from = models.DateTimeField(auto_now_add=True, db_index=True)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-effective_from", "-id"]
        get_latest_by = ["effective_from", "id"]
        indexes = [
            # The shares in force (the latest row) for each experiment a snapshot read
            # takes: one index probe, not a sort of every row a bandit has written
            # (a Thompson experiment writes one each cadence: ~1,300 in two weeks).
            models.Index(fields=["experiment", "-effective_from", "-id"], name="weights_latest"),
        ]

    def __str__(self) -> str:
        return f"weights {self.pk} of experiment {self.experiment_id}"
