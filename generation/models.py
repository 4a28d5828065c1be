"""What gets written: the catalog, the audience, the prompts and the variants.

A *slot* is (prompt, product, segment, language) or (prompt, product, customer,
purpose); a segment slot's language is one of those the prompt writes in for that
segment (Prompt.segment_languages), a customer's is their own. The database
keeps two invariants about slots (see Variant.Meta.constraints):

1. at most one published variant per slot;
2. at most one variant per prompt version and slot, so a task that runs twice can
   never write a second variant.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.functional import cached_property

from generation.errors import PromptHasNoVersion, ServiceError
from generation.languages import DEFAULT_LANGUAGE, base_language, languages_for


class Brand(models.Model):
    name = models.CharField(max_length=120, unique=True)
    voice = models.TextField(help_text="The constant system prompt: who we are and how we speak.")
    banned_phrases = models.JSONField(default=list, blank=True)
    # Phrases banned in one language only, by stored tag: {"de": ["Wunder"]}; a base
    # language's apply to its regional tags too.
    banned_phrases_by_language = models.JSONField(default=dict, blank=True)
    protected_terms = models.JSONField(
        default=list, blank=True, help_text="Names that must appear verbatim, never translated."
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name

    def banned_for(self, language: str) -> list[str]:
        """The phrases banned in copy in `language`: every language's, then its base
        language's, then its own tag's."""
        by_language = self.banned_phrases_by_language or {}
        tags = dict.fromkeys([base_language(language), language]) if language else {}
        found = [*self.banned_phrases, *(p for tag in tags for p in by_language.get(tag, []))]
        return list(dict.fromkeys(found))


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=255)
    category = models.CharField(max_length=120, blank=True)
    subcategory = models.CharField(max_length=120, blank=True)
    description = models.TextField(help_text="The base copy, as clean text.")
    attributes = models.JSONField(default=dict, blank=True)
    # Base copy in other languages, by stored tag: {"de": {"name": ..., "description":
    # ...}}, from store-view rows or description:de columns (generation.importers).
    translations = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"

    def base_copy(self, language: str) -> tuple[str, str, str]:
        """(name, description, the language they are in) for copy in `language`: its
        translation, else the base language's (de for de-ch), else the default copy
        (language "")."""
        for tag in (language, base_language(language)) if language else ():
            found = (self.translations or {}).get(tag)
            if isinstance(found, dict) and found.get("description"):
                return found.get("name") or self.name, found["description"], tag
        return self.name, self.description, ""


class CustomerSource(models.Model):
    """A CDP export we import from, and how its columns map to our attributes
    (generation.audience.Mapping, in its JSON form)."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    mapping = models.JSONField(help_text="File columns → attributes, types and limits.")
    last_import = models.JSONField(
        default=dict, blank=True, help_text="What the last import from this source did."
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def mapped_attributes(cls) -> dict[str, bool]:
        """Every attribute the saved mappings write (but the external id), and whether
        one of them marks it personal. Mappings are stored as Mapping.as_json() wrote them."""
        found: dict[str, bool] = {}
        for mapping in cls.objects.values_list("mapping", flat=True):
            for entry in (mapping or {}).get("columns", {}).values():
                attribute = entry.get("attribute") if isinstance(entry, dict) else entry
                if attribute and attribute != "external_id":
                    personal = isinstance(entry, dict) and bool(entry.get("personal"))
                    found[attribute] = found.get(attribute, False) or personal
        return found


class PersonalAttribute(models.Model):
    """An attribute an import found personal by its values (e-mail addresses, phone
    numbers): it never reaches an endpoint and is never summarised, whatever its name."""

    name = models.CharField(max_length=200, unique=True)
    reason = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


class Customer(models.Model):
    external_id = models.CharField(max_length=128, unique=True)
    language = models.CharField(
        max_length=35, default="en", help_text="Preferred language, a BCP 47 tag in lower case."
    )
    attributes = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.external_id

    def segment_attributes(self) -> dict:
        """What segment rules see: the attributes and the preferred language."""
        return {**self.attributes, "language": self.language}


class SegmentRuleError(ValueError):
    """A segment rule that cannot be used, naming the attribute."""


RANGE_OPERATORS = ("gte", "gt", "lte", "lt")
# A segment needs a handful of rules; the builder page offers this many rows.
SEGMENT_RULES_MAX = 50


def segment_rules_clean(rules: object) -> dict[str, Any]:
    """Rules as stored, or SegmentRuleError naming what is wrong. A rule per attribute:

    - a text, number or boolean: equals (compared as text, so "3" equals 3);
    - a list of those: one of;
    - an object of gte / gt / lte / lt bounds: a range. Numbers compare as numbers,
      texts (ISO dates) as texts; a value that is not comparable is outside.
    """
    if not isinstance(rules, dict) or not rules:
        raise SegmentRuleError("Rules are an object of attribute: rule, and cannot be empty")
    if len(rules) > SEGMENT_RULES_MAX:
        raise SegmentRuleError(f"Rules: at most {SEGMENT_RULES_MAX}, not {len(rules)}")
    cleaned: dict[str, Any] = {}
    for attribute, rule in rules.items():
        if not isinstance(attribute, str) or not attribute.strip():
            raise SegmentRuleError("An attribute name in the rules is empty")
        where = f"Rule on '{attribute}'"
        if isinstance(rule, str | int | float | bool):
            if isinstance(rule, str) and not rule.strip():
                raise SegmentRuleError(f"{where}: the value is empty")
            cleaned[attribute] = rule.strip() if isinstance(rule, str) else rule
        elif isinstance(rule, list):
            values = [v.strip() if isinstance(v, str) else v for v in rule]
            if not values or not all(
                isinstance(v, str | int | float | bool) and v != "" for v in values
            ):
                raise SegmentRuleError(f"{where}: one of needs a list of values")
            cleaned[attribute] = list(dict.fromkeys(values))
        elif isinstance(rule, dict):
            unknown = sorted(set(rule) - set(RANGE_OPERATORS))
            if unknown or not rule:
                raise SegmentRuleError(
                    f"{where}: a range has bounds {', '.join(RANGE_OPERATORS)}"
                    + (f", not {', '.join(unknown)}" if unknown else "")
                )
            bounds = list(rule.values())
            numeric = all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
            if not numeric and not all(isinstance(b, str) and b.strip() for b in bounds):
                raise SegmentRuleError(f"{where}: bounds are all numbers or all texts (dates)")
            if ("gte" in rule and "gt" in rule) or ("lte" in rule and "lt" in rule):
                raise SegmentRuleError(f"{where}: give one lower and one upper bound at most")
            cleaned[attribute] = dict(rule)
        else:
            raise SegmentRuleError(f"{where}: give a value, a list of values or a range")
    return cleaned


def _comparable(value, numeric: bool):
    if numeric:
        if isinstance(value, bool):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return number if number == number else None  # NaN is outside every range
    return value if isinstance(value, str) else None


def rule_matches(rule, value) -> bool:
    """Whether an attribute value meets one rule (see segment_rules_clean)."""
    if value is None or value == "":
        return False
    if isinstance(rule, dict):
        numeric = not any(isinstance(b, str) for b in rule.values())
        v = _comparable(value, numeric)
        if v is None:
            return False
        return (
            ("gte" not in rule or v >= rule["gte"])
            and ("gt" not in rule or v > rule["gt"])
            and ("lte" not in rule or v <= rule["lte"])
            and ("lt" not in rule or v < rule["lt"])
        )
    text = attribute_text(value)
    if isinstance(rule, list):
        return any(text == attribute_text(r) for r in rule)
    return text == attribute_text(rule)


def attribute_text(value) -> str:
    """An attribute value as rules and summaries compare it: True is "true", 3.0 is "3"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Segment(models.Model):
    slug = models.SlugField(max_length=200, unique=True)
    name = models.CharField(max_length=255)
    rules = models.JSONField(
        default=dict,
        help_text="Rules over attributes, all of which a member meets: equals "
        '{"value_tier": "high"}, one of {"region": ["north", "south"]}, '
        'a range {"age": {"gte": 25, "lt": 35}}.',
    )
    member_count = models.PositiveIntegerField(default=0)
    summary = models.JSONField(
        default=dict,
        blank=True,
        help_text="Share of each value of the other attributes among the members.",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name

    def matches(self, attributes: dict) -> bool:
        return all(rule_matches(rule, attributes.get(k)) for k, rule in self.rules.items())

    def describe_rules(self) -> str:
        """'value_tier is high; region is north or south; age from 25 to under 35'."""
        return describe_rules(self.rules)

    def language_shares(self) -> dict[str, float]:
        """The members' language tags and their shares. A segment whose rules name the
        language has no language in its summary (rules are left out of it): its rule's
        tags share the members evenly."""
        rule = self.rules.get("language")
        if rule is not None and not isinstance(rule, dict):
            tags = [str(t).lower() for t in (rule if isinstance(rule, list) else [rule])]
            return {tag: 1 / len(tags) for tag in tags}
        shares = (self.summary or {}).get("language") or {}
        if not isinstance(shares, dict):
            return {}
        return {str(k): float(v or 0) for k, v in shares.items()}


def describe_rules(rules: dict) -> str:
    words = {"gte": "from", "gt": "over", "lte": "up to", "lt": "under"}
    parts = []
    # In name order: PostgreSQL's jsonb keeps no key order, SQLite's JSON does.
    for attribute, rule in sorted(rules.items()):
        if isinstance(rule, dict):
            bounds = " and ".join(f"{words[op]} {rule[op]}" for op in RANGE_OPERATORS if op in rule)
            parts.append(f"{attribute} {bounds}")
        elif isinstance(rule, list):
            parts.append(f"{attribute} is " + " or ".join(attribute_text(r) for r in rule))
        else:
            parts.append(f"{attribute} is {attribute_text(rule)}")
    return "; ".join(parts)


class Prompt(models.Model):
    class Channel(models.TextChoices):
        PRODUCT_PAGE = "product_page", "Product page"
        EMAIL = "email", "E-mail"
        APP = "app", "App"
        AD = "ad", "Ad"
        SMS = "sms", "SMS"

    class CopyFormat(models.TextChoices):
        PLAIN = "plain", "Plain text"
        MARKDOWN = "markdown", "Markdown subset (bold, italic, links, lists): e-mail only"

    # Channels whose copy may carry the markdown subset; every other one is plain text.
    MARKDOWN_CHANNELS = frozenset({Channel.EMAIL})

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="prompts")
    channel = models.CharField(max_length=32, choices=Channel.choices, default=Channel.PRODUCT_PAGE)
    max_length = models.PositiveIntegerField(default=600, help_text="Maximum characters of copy.")
    copy_format = models.CharField(
        max_length=16,
        choices=CopyFormat.choices,
        default=CopyFormat.PLAIN,
        help_text="The format the channel shows copy in. Markdown is for e-mail only; "
        "everything else is plain text.",
    )
    allowed_attributes = models.JSONField(
        default=list,
        blank=True,
        help_text="Customer attributes that may reach the endpoint; empty: every attribute "
        "that is not personal. Personal ones (e-mail, name, phone...) never do.",
    )
    languages = models.JSONField(
        default=list,
        blank=True,
        help_text="The languages to write in, as BCP 47 tags (a regional tag such as de-CH "
        "gets slots of its own); empty: every language at least language_min_share "
        "percent of a segment's members speak.",
    )
    language_min_share = models.PositiveSmallIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Without a list of languages: the share (1-100%) of a segment's members "
        "a language needs, counted by base language (de-DE and de-CH are both de), to be "
        "written in.",
    )
    holdout_percent = models.PositiveSmallIntegerField(
        default=10,
        validators=[MaxValueValidator(50)],
        help_text="Share of identified customers (0-50%) who keep seeing the base copy even "
        "where a variant is live: the control group the variants are measured against.",
    )

    class ReviewPolicy(models.TextChoices):
        REVIEW_ALL = "review_all", "Review every variant"
        SAMPLE = "sample", "Review a sample; publish the rest when every check passes"
        AUTO = "auto", "Publish when every check passes"

    review_policy = models.CharField(
        max_length=16, choices=ReviewPolicy.choices, default=ReviewPolicy.REVIEW_ALL
    )
    review_sample_percent = models.PositiveSmallIntegerField(
        default=10,
        validators=[MaxValueValidator(100)],
        help_text="With the sample policy: the share of variants (0-100%) people review.",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name

    @property
    def current_version(self) -> PromptVersion | None:
        return self.versions.order_by("-number").first()

    def require_version(self, error: type[ServiceError] = PromptHasNoVersion) -> PromptVersion:
        """The current version: nothing is written before one. Without, `error` (the
        caller's own refusal, such as RunError) naming the field "prompt"."""
        version = self.current_version
        if version is None:
            raise error(f"Prompt '{self.slug}' has no version yet; save one first", field="prompt")
        return version

    def clean(self) -> None:
        if (
            self.copy_format == self.CopyFormat.MARKDOWN
            and self.channel not in self.MARKDOWN_CHANNELS
        ):
            raise ValidationError(
                {
                    "copy_format": f"The {self.get_channel_display()} channel shows plain text "
                    "only; markdown is for e-mail."
                }
            )

    @property
    def default_language(self) -> str:
        """What a reader with no variant in their language falls back to: the first
        listed language, else the default one."""
        return self.languages[0] if self.languages else DEFAULT_LANGUAGE

    def segment_languages(self, segment: Segment) -> list[str]:
        """The languages this prompt writes in for `segment` (one slot each)."""
        return languages_for(
            segment.language_shares(),
            explicit=self.languages or (),
            min_share=self.language_min_share / 100,
            fallback=DEFAULT_LANGUAGE,
        )

    @property
    def output_format(self) -> str:
        """What generated copy is normalised to: "markdown" only where the channel
        allows it and the lead chose it, else "plain"."""
        if self.channel in self.MARKDOWN_CHANNELS and self.copy_format == self.CopyFormat.MARKDOWN:
            return "markdown"
        return "plain"


class PromptVersion(models.Model):
    """An immutable version of a prompt; editing a prompt saves a new one."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    template = models.TextField(help_text="Instruction template with {named} placeholders.")
    model = models.CharField(max_length=120)
    temperature = models.FloatField(default=0.7)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    note = models.CharField(max_length=500, blank=True)
    examples = models.JSONField(
        default=list,
        blank=True,
        help_text="Approved copy that performed well, shown to the model as examples.",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prompt", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "number"], name="prompt_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.prompt.slug} v{self.number}"


class GenerationRunQuerySet(models.QuerySet):
    def unfinished(self) -> GenerationRunQuerySet:
        """Runs that may still write: pending, running, or paused at their budget (a
        cancelled or failed run is stopped until someone resumes it)."""
        S = GenerationRun.Status
        return self.filter(status__in=[S.PENDING, S.RUNNING, S.PAUSED])


class GenerationRun(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused (budget reached)"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="runs")
    scope = models.JSONField(
        default=dict, help_text="What the run covers: product SKUs and segment slugs."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    # Slots not queued as variants yet, and how many of the scope's products are: a
    # big run queues its first slots when it is created and the rest in the
    # background while it runs (services.run_populate), product by product.
    unqueued = models.PositiveIntegerField(default=0)
    queued_products = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    budget = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, help_text="US dollars; optional"
    )
    estimated_prompt_tokens = models.PositiveBigIntegerField(default=0)
    estimated_completion_tokens = models.PositiveBigIntegerField(default=0)
    estimated_cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    note = models.CharField(max_length=300, blank=True, help_text="Why this run was started.")
    # How answers are asked for: "json" (response_format with the copy schema) or
    # "markers" (a rationale section in text), and why that mode (probed, forced, or
    # fallen back to because the endpoint ignored response_format).
    output_mode = models.CharField(max_length=16, blank=True)
    output_mode_reason = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    objects = GenerationRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.prompt_version}"

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def is_active(self) -> bool:
        """Pending or running: it has a task, or will have one. Narrower than
        `unfinished()`, which also holds paused runs."""
        return self.status in (self.Status.PENDING, self.Status.RUNNING)

    @property
    def languages(self) -> list[tuple[str, int]]:
        """The languages its segment slots are written in, with how many segments each
        (from the scope fixed at creation), most segments first."""
        per_segment = (self.scope or {}).get("languages") or {}
        counts: dict[str, int] = {}
        for tags in per_segment.values():
            for tag in tags:
                counts[tag] = counts.get(tag, 0) + 1
        return sorted(counts.items(), key=lambda t: (-t[1], t[0]))

    @property
    def is_populating(self) -> bool:
        """Some of its slots are still to be queued (see services.run_populate)."""
        return self.unqueued > 0


class VariantQuerySet(models.QuerySet):
    def claimed_by(self, claim_id: str) -> VariantQuerySet:
        """Generating under this claim: the only rows a task may write (engine.py)."""
        return self.filter(status=Variant.Status.GENERATING, claim=claim_id)

    def in_review(self) -> VariantQuerySet:
        return self.filter(status=Variant.Status.IN_REVIEW)

    def published(self) -> VariantQuerySet:
        return self.filter(status=Variant.Status.PUBLISHED)

    def for_slot(
        self, *, prompt, product, segment=None, customer=None, purpose=None, language=None
    ) -> VariantQuerySet:
        slot = self.filter(prompt=prompt, product=product, segment=segment, customer=customer)
        if purpose is not None:
            slot = slot.filter(purpose=purpose)
        return slot if language is None else slot.filter(language=language)


class Variant(models.Model):
    """One generated text for one slot, and everything we know about how it was made.

    queued → generating → in_review → published → retired
                  │             ├→ rejected
                  └→ failed     └→ superseded
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        GENERATING = "generating", "Generating"
        IN_REVIEW = "in_review", "In review"
        PUBLISHED = "published", "Published"
        # Approved, and served as an arm of a running experiment beside the published
        # variant of its slot (review.models.Experiment); retired when it ends unless
        # it wins.
        TESTING = "testing", "Approved: in an experiment"
        RETIRED = "retired", "Retired"
        REJECTED = "rejected", "Rejected"
        SUPERSEDED = "superseded", "Superseded"
        FAILED = "failed", "Failed"

    class FailureReason(models.TextChoices):
        """Why a variant failed. Only these fail one: anything else is copy a person
        can still read, with a failed check."""

        EMPTY_COPY = "empty_copy", "The answer had no copy"
        REFUSED = "refused", "The model refused"
        CONTENT_FILTER = "content_filter", "The endpoint's content filter blocked it"
        MALFORMED = "malformed", "The answer stayed malformed after retries"
        SCHEMA = "schema", "The JSON answer did not match the schema after retries"
        EMPTY_CHOICES = "empty_choices", "The endpoint answered with no choices"
        TRANSIENT = "transient", "The endpoint kept failing (rate limits, 5xx, timeouts)"
        REQUEST = "request", "The endpoint refused the request"
        RENDERING = "rendering", "The prompt could not be rendered"

    run = models.ForeignKey(
        GenerationRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="variants"
    )
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="variants")
    prompt_version = models.ForeignKey(
        PromptVersion, on_delete=models.PROTECT, related_name="variants"
    )
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="variants")
    segment = models.ForeignKey(
        Segment, null=True, blank=True, on_delete=models.CASCADE, related_name="variants"
    )
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="variants"
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    text = models.TextField(blank=True, help_text="The copy as it stands (edited if edited).")
    original_text = models.TextField(
        blank=True, help_text="The copy as the model wrote it, normalised to the channel's format."
    )
    rationale = models.TextField(blank=True)
    # The model's answer exactly as it came, and what normalising it to the channel's
    # format took out (notes for the reviewer).
    raw_output = models.TextField(blank=True)
    normalisation = models.JSONField(default=list, blank=True)
    output_mode = models.CharField(max_length=16, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    checks = models.JSONField(default=list, blank=True)
    # How many checks failed: the queue shows flagged variants first.
    checks_failed = models.PositiveSmallIntegerField(default=0)
    model = models.CharField(max_length=120, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # The slot's language (a segment slot's, or the customer's), a stored BCP 47 tag.
    language = models.CharField(max_length=35, blank=True)
    regeneration_note = models.TextField(
        blank=True, help_text="A reviewer's course correction for the next generation."
    )
    # One-to-one messages: what the message is for, and where to tell the caller
    # what became of it.
    purpose = models.CharField(
        max_length=300, blank=True, help_text="A one-to-one message's communication purpose."
    )
    # The API token that asked for this one-to-one message (review.ApiToken's id; not a
    # foreign key, as generation never depends on review): only that token reads it by id.
    requested_by_token = models.PositiveBigIntegerField(null=True, blank=True)
    callback_url = models.URLField(max_length=500, blank=True)
    # How the review policy treated it: "", "reviewed" (sampled for people),
    # "auto" (published by the policy).
    policy_outcome = models.CharField(max_length=16, blank=True)
    # Why a variant failed, as a name (FailureReason) beside the message in `error`.
    failure_reason = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Who is generating it: the Celery task id that claimed it, and when. A task
    # delivered again after its worker died reclaims its own variants; others wait
    # until the lease ends.
    claim = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Set when engagement shows the variant doing significantly worse than the
    # base copy (review.metrics); cleared by the next decision on it.
    underperforming = models.BooleanField(default=False)
    # Bumped on every decision, for optimistic checks when two reviewers race.
    revision = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    generated = models.DateTimeField(null=True, blank=True)
    published = models.DateTimeField(null=True, blank=True)

    objects = VariantQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(segment__isnull=False) & Q(customer__isnull=True))
                | (Q(segment__isnull=True) & Q(customer__isnull=False)),
                name="variant_segment_xor_customer",
            ),
            models.UniqueConstraint(
                fields=["prompt", "product", "segment", "language"],
                condition=Q(status="published", segment__isnull=False),
                name="one_published_per_segment_language_slot",
            ),
            # A customer slot is (prompt, product, customer, purpose): messages for
            # other purposes stay live beside it.
            models.UniqueConstraint(
                fields=["prompt", "product", "customer", "purpose"],
                condition=Q(status="published", customer__isnull=False),
                name="one_published_per_customer_purpose",
            ),
            models.UniqueConstraint(
                fields=["prompt_version", "product", "segment", "language"],
                condition=Q(segment__isnull=False),
                name="one_variant_per_version_segment_language_slot",
            ),
            # A customer can get several messages about one product from one prompt
            # version, each for its own purpose.
            models.UniqueConstraint(
                fields=["prompt_version", "product", "customer", "purpose"],
                condition=Q(customer__isnull=False),
                name="one_variant_per_version_customer_purpose",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-created"], name="variant_status_created"),
            models.Index(
                fields=["status", "-checks_failed", "created", "id"], name="variant_queue_order"
            ),
            models.Index(fields=["run", "status"], name="variant_run_status"),
            # What generation tasks claim from: a run's queued variants in id order.
            models.Index(
                fields=["run", "id"], condition=Q(status="queued"), name="variant_run_queued"
            ),
        ]

    def __str__(self) -> str:
        audience = self.segment or self.customer
        return f"{self.prompt.slug} × {self.product.sku} × {audience} [{self.status}]"

    @cached_property
    def sorted_checks(self) -> list[dict[str, Any]]:
        """The automatic checks, failed ones first (each keeps its order otherwise)."""
        return sorted(self.checks or [], key=lambda c: bool(c.get("passed", True)))

    @property
    def failed_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.sorted_checks if not c.get("passed", True)]

    @property
    def passed_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.sorted_checks if c.get("passed", True)]

    @property
    def audience(self) -> Segment | Customer:
        audience = self.segment or self.customer
        if audience is None:  # the check constraint variant_segment_xor_customer forbids it
            raise ValueError(f"Variant {self.pk} has neither a segment nor a customer")
        return audience


class EndpointCapability(models.Model):
    """What one endpoint and model support, as probed before a run (endpoint_check) and
    corrected by what answers show (an endpoint that ignores response_format)."""

    base_url = models.CharField(max_length=500)
    model = models.CharField(max_length=120)
    # None: not known yet (never probed, or the probe could not tell).
    structured_output = models.BooleanField(null=True)
    note = models.CharField(max_length=300, blank=True)
    checked = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["base_url", "model"], name="endpoint_model_capability")
        ]

    def __str__(self) -> str:
        return f"{self.model} at {self.base_url}"


class Import(models.Model):
    """One upload of a catalog or a customer file, from the API, the browser or the
    command line: who sent what, and what importing it did. A worker runs it
    (generation.imports.execute); the file waits under IMPORT_DIR until then."""

    class Kind(models.TextChoices):
        PRODUCTS = "products", "Catalog"
        CUSTOMERS = "customers", "Customers"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Importing"
        DONE = "done", "Imported"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    file_name = models.CharField(max_length=255, help_text="The name it was uploaded under.")
    size = models.BigIntegerField(help_text="Bytes.")
    format = models.CharField(max_length=20)
    # Where the file waits for its worker; removed once imported (or failed) unless
    # the file is the caller's own (the command line reads it in place).
    path = models.CharField(max_length=1000)
    owns_file = models.BooleanField(default=True)
    source = models.ForeignKey(
        CustomerSource, null=True, blank=True, on_delete=models.SET_NULL, related_name="imports"
    )
    options = models.JSONField(default=dict, blank=True)
    requested_by = models.CharField(max_length=200, help_text="A user name, or 'token <name>'.")
    # The API token that sent it (review.ApiToken's id, not a foreign key: generation
    # never depends on review): a token lists only its own imports.
    requested_by_token = models.PositiveBigIntegerField(null=True, blank=True)
    via = models.CharField(max_length=10, help_text="api, web or cli")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    claim = models.CharField(max_length=64, blank=True, help_text="The task running it.")
    # Done: the report (counts, skipped rows). Failed: where and what (file, line,
    # column, errors), with nothing written.
    result = models.JSONField(null=True, blank=True)
    failure = models.JSONField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["status", "created"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} import {self.pk}: {self.file_name}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)
