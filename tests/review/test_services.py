import pytest
from django.db import IntegrityError

from generation.models import Variant
from review import services
from review.models import ReviewEvent
from tests.factories import UserFactory, VariantFactory

pytestmark = pytest.mark.django_db


def test_approving_publishes_and_retires_the_previous_live_variant():
    user = UserFactory()
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    newer = VariantFactory(
        prompt=live.prompt, product=live.product, segment=live.segment,
        prompt_version__prompt=live.prompt,
    )  # fmt: skip

    services.variant_approve(variant=newer, user=user)

    live.refresh_from_db()
    newer.refresh_from_db()
    assert live.status == Variant.Status.RETIRED
    assert newer.status == Variant.Status.PUBLISHED and newer.published
    assert list(ReviewEvent.objects.order_by("id").values_list("variant", "action")) == [
        (live.pk, "retire"),
        (newer.pk, "approve"),
    ]


def test_editing_then_approving_keeps_the_original_and_records_both_texts():
    variant = VariantFactory(text="Model text.")
    services.variant_approve(variant=variant, user=UserFactory(), text="  Edited text. ")
    variant.refresh_from_db()
    assert (variant.text, variant.original_text) == ("Edited text.", "Model text.")
    event = variant.review_events.get()
    assert (event.action, event.text_before, event.text_after) == (
        "edit",
        "Model text.",
        "Edited text.",
    )


def test_rejecting_needs_a_reason_and_records_it():
    variant = VariantFactory()
    with pytest.raises(services.DecisionError, match="reason"):
        services.variant_reject(variant=variant, user=UserFactory(), reason="  ")
    services.variant_reject(variant=variant, user=UserFactory(), reason="Off brand")
    variant.refresh_from_db()
    assert variant.status == Variant.Status.REJECTED
    assert variant.review_events.get().reason == "Off brand"


def test_a_second_decision_on_the_same_variant_is_refused():
    variant = VariantFactory()
    stale_copy = Variant.objects.get(pk=variant.pk)
    services.variant_approve(variant=variant, user=UserFactory())
    with pytest.raises(services.DecisionError, match="not in review"):
        services.variant_reject(variant=stale_copy, user=UserFactory(), reason="late")
    assert ReviewEvent.objects.count() == 1


def test_the_database_refuses_two_published_variants_for_one_slot():
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    with pytest.raises(IntegrityError):
        VariantFactory(
            status=Variant.Status.PUBLISHED, prompt=live.prompt, product=live.product,
            segment=live.segment, prompt_version__prompt=live.prompt,
        )  # fmt: skip


def test_the_database_refuses_two_variants_per_version_and_slot():
    first = VariantFactory()
    with pytest.raises(IntegrityError):
        VariantFactory(
            prompt_version=first.prompt_version, product=first.product, segment=first.segment
        )
