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


def _same_slot(variant, **kwargs):
    return VariantFactory(
        prompt=variant.prompt, product=variant.product, segment=variant.segment,
        prompt_version__prompt=variant.prompt, **kwargs,
    )  # fmt: skip


def test_a_decision_on_an_older_revision_is_refused_naming_who_decided_and_when():
    variant = VariantFactory()
    seen = variant.revision
    services.variant_approve(variant=variant, user=UserFactory(username="maria"), revision=seen)
    with pytest.raises(services.StaleDecision) as refused:
        services.variant_reject(
            variant=variant, user=UserFactory(), reason="Off brand", revision=seen
        )
    assert "Someone else decided this variant at" in str(refused.value)
    assert str(refused.value).endswith(": approved by maria")
    variant.refresh_from_db()
    assert variant.status == Variant.Status.PUBLISHED


def test_decisions_without_a_revision_still_work_for_existing_callers():
    variant = VariantFactory(revision=7)
    services.variant_approve(variant=variant, user=UserFactory())
    variant.refresh_from_db()
    assert variant.status == Variant.Status.PUBLISHED and variant.revision == 8


def test_asking_for_regeneration_bumps_the_revision_so_old_forms_cannot_approve_new_text():
    variant = VariantFactory()
    services.variant_request_regeneration(
        variant=variant, user=UserFactory(username="ana"), note="Shorter", revision=0
    )
    variant.refresh_from_db()
    assert variant.status == Variant.Status.QUEUED and variant.revision == 1
    Variant.objects.filter(pk=variant.pk).update(status=Variant.Status.IN_REVIEW, text="New text")
    with pytest.raises(services.StaleDecision, match="asked for regeneration by ana"):
        services.variant_approve(variant=variant, user=UserFactory(), revision=0)


def test_undoing_an_approval_restores_the_previous_live_variant():
    user = UserFactory()
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    newer = _same_slot(live)
    services.variant_approve(variant=newer, user=user)
    event = newer.review_events.get(action="approve")

    services.decision_undo(event=event, user=user)

    live.refresh_from_db()
    newer.refresh_from_db()
    assert live.status == Variant.Status.PUBLISHED
    assert newer.status == Variant.Status.IN_REVIEW and newer.published is None
    assert newer.review_events.first().action == ReviewEvent.Action.UNDO
    assert live.review_events.first().action == ReviewEvent.Action.UNDO


def test_undoing_an_approval_with_no_previous_live_variant_leaves_the_slot_empty():
    user = UserFactory()
    variant = VariantFactory()
    services.variant_approve(variant=variant, user=user)
    services.decision_undo(event=variant.review_events.get(), user=user)
    assert not Variant.objects.published().exists()
    variant.refresh_from_db()
    assert variant.status == Variant.Status.IN_REVIEW


def test_undoing_an_edit_restores_the_text_and_keeps_the_original():
    user = UserFactory()
    variant = VariantFactory(text="Model text.")
    services.variant_approve(variant=variant, user=user, text="Edited text.")
    services.decision_undo(event=variant.review_events.get(), user=user)
    variant.refresh_from_db()
    assert (variant.status, variant.text, variant.original_text) == (
        Variant.Status.IN_REVIEW,
        "Model text.",
        "Model text.",
    )
    undo = variant.review_events.first()
    assert (undo.text_before, undo.text_after) == ("Edited text.", "Model text.")


def test_undoing_a_rejection_puts_the_variant_back_in_review():
    user = UserFactory()
    variant = VariantFactory()
    services.variant_reject(variant=variant, user=user, reason="Off brand")
    services.decision_undo(event=variant.review_events.get(), user=user)
    variant.refresh_from_db()
    assert variant.status == Variant.Status.IN_REVIEW and variant.revision == 2


def test_only_the_users_own_most_recent_decision_can_be_undone():
    user, other = UserFactory(), UserFactory()
    first, second = VariantFactory(), VariantFactory()
    services.variant_reject(variant=first, user=user, reason="Off brand")
    services.variant_reject(variant=second, user=user, reason="Off brand")
    with pytest.raises(services.DecisionError, match="most recent"):
        services.decision_undo(event=first.review_events.get(), user=user)
    with pytest.raises(services.DecisionError, match="your own"):
        services.decision_undo(event=second.review_events.get(), user=other)
    first.refresh_from_db()
    assert first.status == Variant.Status.REJECTED


def test_undo_is_refused_once_something_happened_to_the_variant_since():
    user = UserFactory()
    variant = VariantFactory()
    services.variant_approve(variant=variant, user=user)
    event = variant.review_events.get()
    services.decision_undo(event=event, user=user)
    with pytest.raises(services.DecisionError, match="Too late to undo"):
        services.decision_undo(event=event, user=user)

    # A newer version's approval retired it: undoing the old approval would unpublish
    # nothing and republish the wrong variant, so it is refused.
    services.variant_approve(variant=variant, user=user)
    event = variant.review_events.first()
    replacement = _same_slot(variant)
    services.variant_approve(variant=replacement, user=UserFactory())
    with pytest.raises(services.DecisionError, match="Too late to undo"):
        services.decision_undo(event=event, user=user)


def test_bulk_decisions_report_what_was_decided_and_what_was_refused():
    user = UserFactory()
    fresh = VariantFactory.create_batch(2)
    taken = VariantFactory()
    services.variant_reject(variant=taken, user=UserFactory(username="bo"), reason="Too long")

    result = services.variants_decide(
        variants=[*fresh, taken], user=user, action="approve", revisions={taken.pk: 0}
    )

    assert [v.pk for v in result.decided] == [v.pk for v in fresh]
    assert [pk for pk, _ in result.refused] == [taken.pk]
    assert "rejected by bo" in result.refused[0][1]
    assert Variant.objects.published().count() == 2


def test_bulk_rejection_needs_a_reason():
    with pytest.raises(services.DecisionError, match="reason"):
        services.variants_decide(variants=[VariantFactory()], user=UserFactory(), action="reject")
    assert not ReviewEvent.objects.exists()


def test_a_stale_decision_by_the_same_reviewer_says_it_was_theirs():
    user = UserFactory()
    variant = VariantFactory()
    services.variant_approve(variant=variant, user=user, revision=0)
    with pytest.raises(services.StaleDecision, match=r"You decided this variant at .*: approved"):
        services.variant_approve(variant=variant, user=user, revision=0)
