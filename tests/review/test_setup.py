"""The first-run checklist (review/setup.py) and where it shows: on the queue page until
every step is done, and on the setup page at any time."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from generation.models import GenerationRun, Variant
from review.models import ApiToken, ReviewEvent
from review.setup import STEPS, checklist, setup_done
from tests.factories import (
    BrandFactory,
    CustomerFactory,
    ProductFactory,
    PromptFactory,
    PromptVersionFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

QUEUE = reverse("review:queue")
SETUP = reverse("review:setup")


def _ticked() -> list[str]:
    return [key for key, done in setup_done().items() if done]


def test_the_steps_go_from_brand_to_live_copy():
    assert [s.key for s in STEPS] == [
        "brand", "catalog", "customers", "segments", "prompt", "run", "review", "live",
    ]  # fmt: skip


def test_an_empty_instance_has_nothing_ticked_and_points_at_the_brand():
    steps = checklist()
    assert _ticked() == []
    assert not steps.complete and steps.done_count == 0 and steps.next_step.key == "brand"


def test_each_step_is_ticked_by_the_data_it_leaves_behind(django_assert_num_queries):
    brand = BrandFactory()
    assert _ticked() == ["brand"]

    product = ProductFactory()
    assert _ticked() == ["brand", "catalog"]

    CustomerFactory()
    assert _ticked() == ["brand", "catalog", "customers"]

    SegmentFactory(member_count=0)  # built, but nobody is in it: nothing to write for
    assert "segments" not in _ticked()
    segment = SegmentFactory(member_count=3)
    assert _ticked() == ["brand", "catalog", "customers", "segments"]

    prompt = PromptFactory(brand=brand)  # a prompt without a version cannot run
    assert "prompt" not in _ticked()
    version = PromptVersionFactory(prompt=prompt)
    assert _ticked()[-1] == "prompt"

    GenerationRun.objects.create(prompt_version=version)
    assert _ticked()[-1] == "run"

    variant = VariantFactory(prompt_version=version, product=product, segment=segment)
    ReviewEvent.objects.create(variant=variant, action=ReviewEvent.Action.RETIRE)
    assert "review" not in _ticked()  # a retirement follows a decision, it is not one
    ReviewEvent.objects.create(variant=variant, action=ReviewEvent.Action.REJECT)
    assert _ticked()[-1] == "review"
    assert not checklist().complete

    Variant.objects.filter(pk=variant.pk).update(status=Variant.Status.PUBLISHED)
    assert not checklist().complete  # approved, but nothing asked for it yet
    ApiToken.objects.create(name="shop", kind="read", key_hash="c" * 64, last_used=timezone.now())
    with django_assert_num_queries(1):
        steps = checklist()
    assert steps.complete and steps.done_count == 8 and steps.next_step is None


def test_undoing_a_step_unticks_it():
    BrandFactory()
    assert "brand" in _ticked()
    from generation.models import Brand

    Brand.objects.all().delete()
    assert "brand" not in _ticked()


def test_a_decision_of_the_review_policy_counts_as_a_review():
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    ReviewEvent.objects.create(variant=variant, user=None, action=ReviewEvent.Action.APPROVE)
    assert "review" in set(_ticked())


def test_live_copy_is_done_once_a_read_token_fetched_copy():
    """Published copy nobody asks for is not live: a used read token is the evidence."""
    VariantFactory(status=Variant.Status.PUBLISHED)
    assert "live" not in _ticked()
    token = ApiToken.objects.create(name="shop", kind="read", key_hash="a" * 64)
    assert "live" not in _ticked()
    ApiToken.objects.filter(pk=token.pk).update(last_used=timezone.now())
    assert "live" in _ticked()
    ApiToken.objects.filter(pk=token.pk).update(revoked=timezone.now())
    assert "live" not in _ticked()


def _everything_done() -> None:
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    SegmentFactory(member_count=5)
    CustomerFactory()
    GenerationRun.objects.create(prompt_version=variant.prompt_version)
    ReviewEvent.objects.create(variant=variant, action=ReviewEvent.Action.APPROVE)
    ApiToken.objects.create(name="shop", kind="read", key_hash="b" * 64, last_used=timezone.now())
    assert checklist().complete


# --- the pages ---


def _login(client, role: str):
    groups = {"copywriter": ["copywriter"], "lead": ["marketing lead"]}[role]
    client.force_login(UserFactory(username=role, groups=groups))


def test_a_lead_on_an_empty_instance_sees_the_checklist_with_a_link_per_step(client):
    _login(client, "lead")
    body = client.get(QUEUE).content.decode()
    assert 'id="setup"' in body and "0 of 8 steps done" in body
    for url in (
        reverse("review:brand"),
        reverse("review:imports"),
        reverse("review:import-map"),
        reverse("review:segments"),
        reverse("review:prompt-new"),
        reverse("review:run-new"),
        reverse("review:queue"),
        reverse("review:tokens"),
    ):
        assert f'<a href="{url}">' in body
    assert 'data-step="brand"' in body and 'class="todo next" data-step="brand"' in body


def test_the_checklist_ticks_steps_as_they_are_done(client):
    _login(client, "lead")
    BrandFactory()
    ProductFactory()
    body = client.get(QUEUE).content.decode()
    assert "2 of 8 steps done" in body
    assert 'class="done" data-step="brand"' in body and 'class="done" data-step="catalog"' in body
    assert 'class="todo next" data-step="customers"' in body


def test_a_copywriter_sees_what_is_missing_but_no_links_to_lead_pages(client):
    _login(client, "copywriter")
    body = client.get(QUEUE).content.decode()
    assert 'id="setup"' in body and "a marketing lead does this" in body
    for lead_page in ("review:brand", "review:imports", "review:run-new", "review:tokens"):
        assert f'<a href="{reverse(lead_page)}">' not in body
    assert f'<a href="{reverse("review:queue")}">Review queue</a>' in body


def test_the_checklist_hides_once_everything_is_done_and_the_setup_page_brings_it_back(client):
    _everything_done()
    _login(client, "lead")
    body = client.get(QUEUE).content.decode()
    assert 'id="setup"' not in body
    assert f'<a href="{SETUP}">Setup</a>' in body

    body = client.get(SETUP).content.decode()
    assert 'id="setup"' in body and "8 of 8 steps done" in body and "Every step is done" in body


def test_a_copywriter_gets_no_setup_link_once_done_but_may_open_the_page(client):
    _everything_done()
    _login(client, "copywriter")
    assert f'href="{SETUP}"' not in client.get(QUEUE).content.decode()
    assert client.get(SETUP).status_code == 200


def test_htmx_swaps_of_the_queue_leave_the_checklist_alone(client):
    _login(client, "lead")
    body = client.get(QUEUE, headers={"HX-Request": "true"}).content.decode()
    assert 'id="setup"' not in body and body.lstrip().startswith('<div id="queue"')


def test_anonymous_users_are_sent_to_log_in_and_outsiders_refused(client):
    response = client.get(SETUP)
    assert response.status_code == 302 and "/login/" in response["Location"]
    client.force_login(UserFactory(username="outsider"))
    assert client.get(SETUP).status_code == 403


def test_every_step_links_to_a_page_a_lead_can_open_on_an_empty_instance(client):
    _login(client, "lead")
    for _step, _done, url in checklist().steps:
        response = client.get(url, follow=True)
        assert response.status_code == 200, f"{url}: {response.status_code}"
