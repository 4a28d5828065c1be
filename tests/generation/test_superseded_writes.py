"""A prompt version saved while its variants are being written (issue 15, item 3):
they finish superseded, never in review beside the new version's; and two approvals in
one slot at the same instant give one 200 and one 409, never a 500."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from generation import engine, llm
from generation.models import Variant
from review.services import decisions as review_decisions
from tests.factories import PromptVersionFactory, VariantFactory

pytestmark = pytest.mark.django_db


def _done(variant: Variant) -> engine.Outcome:
    completion = llm.Completion("Copy.\nRationale: because.", "m", 10, 5, 0, 20, "r1", {})
    job = engine.Job(variant, [], "en", [], 10, 5, None)
    return engine.Outcome(job, "done", completion=completion, copy="Copy.", rationale="because.",
                          cost=Decimal("0.001"))  # fmt: skip


def test_a_variant_written_after_its_version_was_replaced_is_superseded():
    v1 = PromptVersionFactory(number=1)
    writing = VariantFactory(prompt_version=v1, status="generating", claim="c1")
    also = VariantFactory(prompt_version=v1, status="generating", claim="c1")
    claimed = list(Variant.objects.select_related("prompt_version").filter(claim="c1"))
    PromptVersionFactory(prompt=v1.prompt, number=2)  # a lead saved v2 meanwhile

    written = engine.write_outcomes([_done(v) for v in claimed], claim_id="c1")

    assert written == 2
    for variant in (writing, also):
        variant.refresh_from_db()
        assert variant.status == "superseded" and variant.text == "Copy."


def test_a_variant_of_the_current_version_goes_to_review():
    version = PromptVersionFactory(number=1)
    VariantFactory(prompt_version=version, status="generating", claim="c2")
    claimed = list(Variant.objects.select_related("prompt_version").filter(claim="c2"))

    engine.write_outcomes([_done(v) for v in claimed], claim_id="c2")

    assert Variant.objects.get(claim="").status == "in_review"


@pytest.mark.django_db(transaction=True)
def test_two_approvals_in_one_slot_at_the_same_instant_give_one_200_and_one_409():
    """On PostgreSQL: both lock their own row, find no live variant, publish; the
    database lets one through and refuses the other on the one-published-a-slot index."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks and a concurrent unique index need PostgreSQL")
    from rest_framework.test import APIClient

    from tests.factories import UserFactory

    old = VariantFactory(status="in_review")
    newer = PromptVersionFactory(prompt=old.prompt, number=old.prompt_version.number + 1)
    new = VariantFactory(
        prompt_version=newer, product=old.product, segment=old.segment, language=old.language,
        status="in_review",
    )  # fmt: skip
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    original = review_decisions._publish

    def slow_publish(*args, **kwargs):
        barrier.wait(timeout=10)  # both have locked their variant and found no live one
        return original(*args, **kwargs)

    def approve(variant: Variant, name: str) -> None:
        try:
            client = APIClient()
            client.force_authenticate(UserFactory(username=name, groups=["copywriter"]))
            body = {"revision": variant.revision}
            response = client.post(f"/api/v1/variants/{variant.pk}/approve/", body, format="json")
            statuses.append(response.status_code)
        finally:
            connection.close()

    review_decisions._publish = slow_publish
    try:
        threads = [
            threading.Thread(target=approve, args=(v, f"cw{i}")) for i, v in enumerate((old, new))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        review_decisions._publish = original

    assert sorted(statuses) == [200, 409]
    assert Variant.objects.filter(pk__in=[old.pk, new.pk], status="published").count() == 1
