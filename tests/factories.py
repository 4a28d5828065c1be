import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from generation.models import (
    Brand,
    Customer,
    GenerationRun,
    Product,
    Prompt,
    PromptVersion,
    Segment,
    Variant,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-for-tests")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        for name in extracted or []:
            self.groups.add(Group.objects.get_or_create(name=name)[0])


class BrandFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Brand
        django_get_or_create = ["name"]

    name = "Northwind Athletics"
    voice = "We speak plainly to athletes of every level."
    banned_phrases = ["best in the world", "miracle"]
    protected_terms = ["Northwind", "AeroStride"]


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:04d}")
    name = factory.Sequence(lambda n: f"AeroStride Runner {n}")
    category = "Run"
    subcategory = "Running Shoes"
    description = "A light, cushioned shoe for daily miles. Breathable mesh keeps feet cool."
    attributes = factory.LazyFunction(lambda: {"price": "120.00"})


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    external_id = factory.Sequence(lambda n: f"C{n:06d}")
    language = "en"
    attributes = factory.LazyFunction(
        lambda: {"value_tier": "high", "preferred_subcategory": "Running Shoes", "region": "north"}
    )


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Segment

    slug = factory.Sequence(lambda n: f"segment-{n}")
    name = factory.Sequence(lambda n: f"Segment {n}")
    rules = factory.LazyFunction(lambda: {"value_tier": "high"})
    member_count = 10
    summary = factory.LazyFunction(lambda: {"region": {"north": 0.6, "south": 0.4}})


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    slug = factory.Sequence(lambda n: f"prompt-{n}")
    name = factory.Sequence(lambda n: f"Prompt {n}")
    brand = factory.SubFactory(BrandFactory)
    max_length = 600


class PromptVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PromptVersion

    prompt = factory.SubFactory(PromptFactory)
    number = factory.Sequence(lambda n: n + 1)
    template = (
        "Rewrite the description of {product_name} for {segment_name} in {language}, "
        "at most {max_length} characters.\n{product_description}"
    )
    model = "offline-writer-1"
    temperature = 0.7


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GenerationRun

    prompt_version = factory.SubFactory(PromptVersionFactory)


class VariantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Variant

    prompt_version = factory.SubFactory(PromptVersionFactory)
    prompt = factory.SelfAttribute("prompt_version.prompt")
    product = factory.SubFactory(ProductFactory)
    segment = factory.SubFactory(SegmentFactory)
    status = Variant.Status.IN_REVIEW
    # The slot's language: segments of English speakers, as SegmentFactory's are.
    language = "en"
    text = "AeroStride Runner: made for your daily miles."
    original_text = factory.SelfAttribute("text")
    rationale = "The segment values durability."
    model = "offline-writer-1"


def _now():
    from django.utils import timezone

    return timezone.now()


class EngagementEventFactory(factory.django.DjangoModelFactory):
    """An impression of a variant by default; `variant=None` (with prompt and product)
    is the base copy shown: the control."""

    class Meta:
        model = "review.EngagementEvent"

    event_id = factory.Sequence(lambda n: f"event-{n}")
    kind = "impression"
    variant = factory.SubFactory(VariantFactory, status=Variant.Status.PUBLISHED)
    prompt = factory.LazyAttribute(lambda o: o.variant.prompt)
    product = factory.LazyAttribute(lambda o: o.variant.product)
    segment = factory.LazyAttribute(lambda o: o.variant.segment if o.variant else None)
    exposure_id = factory.Sequence(lambda n: f"exposure-{n}")
    occurred = factory.LazyFunction(_now)


def engagement_create(
    *,
    variant=None,
    prompt=None,
    product=None,
    segment=None,
    impressions: int = 0,
    clicks: int = 0,
    conversions: int = 0,
    value: str = "10.00",
    language: str = "",
) -> None:
    """Record counts of events for one variant (or, with variant=None, for the base copy
    of prompt × product × segment) in one bulk insert."""
    import uuid

    from review.models import EngagementEvent

    if variant is not None:
        prompt, product = variant.prompt, variant.product
        segment = segment or variant.segment
    kinds = [("impression", impressions), ("click", clicks), ("conversion", conversions)]
    now = _now()
    EngagementEvent.objects.bulk_create(
        EngagementEvent(
            event_id=f"bulk-{uuid.uuid4().hex}",
            kind=kind,
            exposure_id="test",
            prompt=prompt,
            product=product,
            segment=segment,
            variant=variant,
            language=language,
            value=value if kind == "conversion" else None,
            occurred=now,
        )
        for kind, n in kinds
        for _ in range(n)
    )
