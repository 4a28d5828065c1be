"""The queue's views: roles, HTMX and plain requests, decisions, undo, bulk, the focus view."""

import pytest
from django.urls import reverse

from generation.models import Variant
from review import services
from tests.factories import CustomerFactory, SegmentFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

QUEUE = reverse("review:queue")
HX = {"HX-Request": "true"}


@pytest.fixture
def copywriter(client):
    user = UserFactory(username="cw", groups=["copywriter"])
    client.force_login(user)
    return user


def _views(variant, event):
    """Every view of the queue side: (method, url, data)."""
    return [
        ("get", QUEUE, {}),
        ("get", reverse("review:variant", args=[variant.pk]), {}),
        ("post", reverse("review:approve", args=[variant.pk]), {"revision": 0}),
        ("post", reverse("review:reject", args=[variant.pk]), {"reason": "Off brand"}),
        ("post", reverse("review:regenerate", args=[variant.pk]), {"note": "Shorter"}),
        ("post", reverse("review:bulk"), {"ids": [variant.pk], "action": "approve"}),
        ("post", reverse("review:undo", args=[event.pk]), {}),
    ]


def _decided_elsewhere():
    other = VariantFactory()
    services.variant_reject(variant=other, user=UserFactory(username="someone"), reason="x")
    return other.review_events.get()


@pytest.mark.parametrize("hx", [False, True], ids=["plain", "htmx"])
def test_anonymous_users_are_sent_to_log_in_from_every_queue_view(client, hx):
    variant = VariantFactory()
    for method, url, data in _views(variant, _decided_elsewhere()):
        response = getattr(client, method)(url, data, headers=HX if hx else {})
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    variant.refresh_from_db()
    assert variant.status == Variant.Status.IN_REVIEW and not variant.review_events.exists()


@pytest.mark.parametrize("hx", [False, True], ids=["plain", "htmx"])
def test_users_without_a_review_role_get_403_from_every_queue_view(client, hx):
    client.force_login(UserFactory(username="outsider"))
    variant = VariantFactory()
    for method, url, data in _views(variant, _decided_elsewhere()):
        response = getattr(client, method)(url, data, headers=HX if hx else {})
        assert response.status_code == 403, url
    variant.refresh_from_db()
    assert variant.status == Variant.Status.IN_REVIEW


@pytest.mark.parametrize(
    "user_kwargs",
    [{"groups": ["copywriter"]}, {"groups": ["marketing lead"]}, {"is_staff": True}],
    ids=["copywriter", "lead", "staff"],
)
@pytest.mark.parametrize("hx", [False, True], ids=["plain", "htmx"])
def test_reviewers_can_read_the_queue_and_the_focus_view(client, user_kwargs, hx):
    client.force_login(UserFactory(**user_kwargs))
    variant = VariantFactory(text="Variant copy here.")
    headers = HX if hx else {}
    queue = client.get(QUEUE, headers=headers)
    focus = client.get(reverse("review:variant", args=[variant.pk]), headers=headers)
    assert queue.status_code == focus.status_code == 200
    for response, region in ((queue, 'id="queue"'), (focus, 'id="focus"')):
        body = response.content.decode()
        assert region in body and "Variant copy here." in body
        assert ("<html" in body) is not hx


@pytest.mark.parametrize("hx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("group", ["copywriter", "marketing lead"])
def test_reviewers_of_either_role_can_decide(client, group, hx):
    user = UserFactory(groups=[group])
    client.force_login(user)
    variants = VariantFactory.create_batch(3)
    headers = HX if hx else {}
    responses = [
        client.post(
            reverse("review:approve", args=[variants[0].pk]), {"revision": 0}, headers=headers
        ),
        client.post(
            reverse("review:reject", args=[variants[1].pk]),
            {"reason": "Off brand"},
            headers=headers,
        ),
        client.post(
            reverse("review:regenerate", args=[variants[2].pk]), {"note": "Warmer"}, headers=headers
        ),
    ]
    assert {r.status_code for r in responses} == ({200} if hx else {302})
    assert [v.status for v in Variant.objects.order_by("pk")] == [
        Variant.Status.PUBLISHED,
        Variant.Status.REJECTED,
        Variant.Status.QUEUED,
    ]
    assert {e.user for v in variants for e in v.review_events.all()} == {user}


def test_a_history_restore_gets_the_whole_page(client, copywriter):
    VariantFactory()
    body = client.get(QUEUE, headers={**HX, "HX-History-Restore-Request": "true"}).content.decode()
    assert "<html" in body


def test_an_approval_in_the_focus_view_returns_the_focus_region_with_an_undo_button(
    client, copywriter
):
    variant = VariantFactory()
    response = client.post(
        reverse("review:approve", args=[variant.pk]),
        {"revision": 0, "view": "focus"},
        headers=HX,
    )
    body = response.content.decode()
    assert response.status_code == 200 and 'id="focus"' in body and "<html" not in body
    event = variant.review_events.get()
    assert reverse("review:undo", args=[event.pk]) in body and "Undo approved" in body
    assert "Published" in body


def test_an_approval_in_a_queue_row_returns_the_row_with_an_undo_button(client, copywriter):
    variant = VariantFactory()
    response = client.post(
        reverse("review:approve", args=[variant.pk]) + "?status=in_review",
        {"revision": 0, "view": "row"},
        headers=HX,
    )
    body = response.content.decode()
    assert f'id="variant-{variant.pk}"' in body and "Undo approved" in body


def test_a_plain_decision_from_the_focus_view_redirects_back_to_it_with_the_filters(
    client, copywriter
):
    variant = VariantFactory()
    url = reverse("review:reject", args=[variant.pk]) + "?status=in_review&language=en"
    response = client.post(url, {"reason": "Too long", "view": "focus", "revision": 0})
    assert response.status_code == 302
    assert response["Location"] == (
        reverse("review:variant", args=[variant.pk]) + "?status=in_review&language=en"
    )
    # The page it lands on offers to undo the decision, without JavaScript.
    body = client.get(response["Location"]).content.decode()
    assert reverse("review:undo", args=[variant.review_events.get().pk]) in body


def test_editing_then_approving_records_the_diff_and_keeps_the_original(client, copywriter):
    variant = VariantFactory(text="Run far in comfort.")
    client.post(
        reverse("review:approve", args=[variant.pk]),
        {"revision": 0, "text": "Run far, in comfort, every day.", "view": "focus"},
        headers=HX,
    )
    variant.refresh_from_db()
    assert variant.text == "Run far, in comfort, every day."
    assert variant.original_text == "Run far in comfort."
    event = variant.review_events.get()
    assert (event.action, event.text_before) == ("edit", "Run far in comfort.")
    body = client.get(reverse("review:variant", args=[variant.pk])).content.decode()
    assert "<del>comfort.</del> <ins>comfort, every day.</ins>" in body
    assert "Edited from what the model wrote" in body


def test_rejecting_records_the_listed_reason_with_the_reviewers_words(client, copywriter):
    variant = VariantFactory()
    client.post(
        reverse("review:reject", args=[variant.pk]),
        {"reason": "Factually wrong", "detail": "It is not waterproof", "revision": 0},
        headers=HX,
    )
    assert variant.review_events.get().reason == "Factually wrong: It is not waterproof"


def test_other_as_a_reason_needs_words(client, copywriter):
    variant = VariantFactory()
    response = client.post(
        reverse("review:reject", args=[variant.pk]), {"reason": "Other", "revision": 0}, headers=HX
    )
    assert "Give a reason" in response.content.decode()
    variant.refresh_from_db()
    assert variant.status == Variant.Status.IN_REVIEW


def test_regenerating_with_a_note_queues_the_variant_again(client, copywriter):
    variant = VariantFactory()
    response = client.post(
        reverse("review:regenerate", args=[variant.pk]),
        {"note": "Mention the warranty", "revision": 0},
        headers=HX,
    )
    assert "Queued" in response.content.decode()
    variant.refresh_from_db()
    assert variant.status == Variant.Status.QUEUED
    assert variant.regeneration_note == "Mention the warranty"


@pytest.mark.parametrize("hx", [True, False], ids=["htmx", "plain"])
def test_a_stale_edit_is_refused_and_the_typed_text_is_shown_back(client, copywriter, hx):
    variant = VariantFactory(text="Model text.")
    services.variant_approve(variant=variant, user=UserFactory(username="lena"))
    typed = "My careful <em>rewrite</em> of this copy."
    response = client.post(
        reverse("review:approve", args=[variant.pk]),
        {"revision": 0, "text": typed, "view": "focus"},
        headers=HX if hx else {},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "Someone else decided this variant at" in body and "approved by lena" in body
    assert "My careful &lt;em&gt;rewrite&lt;/em&gt; of this copy." in body
    variant.refresh_from_db()
    assert variant.text == "Model text." and variant.review_events.count() == 1


def test_a_stale_edit_of_a_variant_still_in_review_comes_back_in_the_edit_box(client, copywriter):
    variant = VariantFactory(revision=3)  # e.g. written again since the form was made
    response = client.post(
        reverse("review:approve", args=[variant.pk]),
        {"revision": 2, "text": "Kept words", "view": "row"},
        headers=HX,
    )
    body = response.content.decode()
    assert "changed since you opened it" in body
    assert '<details class="edit" open>' in body and ">Kept words</textarea>" in body
    assert 'name="revision" value="3"' in body


def test_undo_over_htmx_puts_the_row_back_in_review_and_the_old_variant_live(client, copywriter):
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    newer = VariantFactory(
        prompt=live.prompt, product=live.product, segment=live.segment,
        prompt_version__prompt=live.prompt,
    )  # fmt: skip
    client.post(reverse("review:approve", args=[newer.pk]), {"revision": 0}, headers=HX)
    event = newer.review_events.get(action="approve")
    response = client.post(reverse("review:undo", args=[event.pk]), {"view": "row"}, headers=HX)
    body = response.content.decode()
    assert "back in review" in body and 'class="approve-form"' in body
    live.refresh_from_db()
    newer.refresh_from_db()
    assert live.status == Variant.Status.PUBLISHED and newer.status == Variant.Status.IN_REVIEW


def test_undo_without_htmx_from_the_queue_bar_redirects_to_the_queue(client, copywriter):
    variant = VariantFactory()
    client.post(reverse("review:reject", args=[variant.pk]), {"reason": "Too long"})
    body = client.get(QUEUE).content.decode()
    event = variant.review_events.get()
    assert "Your last decision: rejected" in body
    response = client.post(reverse("review:undo", args=[event.pk]), {"view": "queue"})
    assert response.status_code == 302 and response["Location"].startswith(QUEUE)
    variant.refresh_from_db()
    assert variant.status == Variant.Status.IN_REVIEW


def test_someone_elses_decision_cannot_be_undone(client, copywriter):
    variant = VariantFactory()
    services.variant_reject(variant=variant, user=UserFactory(), reason="Too long")
    response = client.post(
        reverse("review:undo", args=[variant.review_events.get().pk]), {"view": "row"}, headers=HX
    )
    assert "your own" in response.content.decode()
    variant.refresh_from_db()
    assert variant.status == Variant.Status.REJECTED


def test_bulk_approval_over_htmx_reports_successes_and_refusals(client, copywriter):
    fresh = VariantFactory.create_batch(3)
    taken = VariantFactory()
    services.variant_reject(variant=taken, user=UserFactory(username="jo"), reason="Too long")
    data = {"ids": [v.pk for v in [*fresh, taken]], "action": "approve", f"rev-{taken.pk}": 0}
    response = client.post(reverse("review:bulk") + "?status=in_review", data, headers=HX)
    body = response.content.decode()
    assert 'id="queue"' in body and "<html" not in body
    assert "3 variants approved." in body and "1 refused" in body and "rejected by jo" in body
    assert Variant.objects.published().count() == 3


def test_bulk_rejection_without_htmx_redirects_with_messages(client, copywriter):
    variants = VariantFactory.create_batch(2)
    response = client.post(
        reverse("review:bulk") + "?status=in_review&language=en",
        {"ids": [v.pk for v in variants], "action": "reject", "reason": "Off brand"},
    )
    assert response.status_code == 302
    assert response["Location"] == QUEUE + "?status=in_review&language=en"
    assert Variant.objects.filter(status=Variant.Status.REJECTED).count() == 2
    body = client.get(response["Location"]).content.decode()
    assert "2 variants rejected" in body


def test_bulk_rejection_without_a_reason_decides_nothing(client, copywriter):
    variants = VariantFactory.create_batch(2)
    response = client.post(
        reverse("review:bulk"), {"ids": [v.pk for v in variants], "action": "reject"}, headers=HX
    )
    assert "Give a reason" in response.content.decode()
    assert not Variant.objects.exclude(status=Variant.Status.IN_REVIEW).exists()


def test_every_decision_form_carries_the_revision_and_the_csrf_token(client, copywriter):
    VariantFactory(revision=4)
    body = client.get(QUEUE).content.decode()
    for form in ("approve-form", "edit-form", "reject-form", "regenerate-form"):
        assert f'class="{form}"' in body
    assert body.count('name="revision" value="4"') == 4
    assert body.count("csrfmiddlewaretoken") >= 5  # the four forms, bulk, logout


def test_decisions_refuse_requests_without_a_csrf_token(copywriter):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(copywriter)
    variant = VariantFactory()
    for url in (
        reverse("review:approve", args=[variant.pk]),
        reverse("review:bulk"),
        reverse("review:undo", args=[_decided_elsewhere().pk]),
    ):
        assert client.post(url, {"ids": [variant.pk], "action": "approve"}).status_code == 403
    variant.refresh_from_db()
    assert variant.status == Variant.Status.IN_REVIEW


def test_the_focus_view_shows_everything_needed_to_decide(client, copywriter):
    segment = SegmentFactory(
        name="Trail runners", member_count=64,
        summary={"age_band": {"25-34": 0.5, "35-44": 0.3, "18-24": 0.15, "55+": 0.05}},
    )  # fmt: skip
    live = VariantFactory(status=Variant.Status.PUBLISHED, segment=segment, text="Live copy.")
    variant = VariantFactory(
        prompt=live.prompt, product=live.product, segment=segment,
        prompt_version__prompt=live.prompt, rationale="They run long.",
        checks=[
            {"name": "length", "passed": True, "message": "300 of 600 characters"},
            {"name": "overreach", "passed": False, "message": "Names 'trail' (12%)"},
        ],
        checks_failed=1, prompt_tokens=412, completion_tokens=96, latency_ms=840, cost="0.00123",
    )  # fmt: skip
    body = client.get(reverse("review:variant", args=[variant.pk])).content.decode()
    assert "They run long." in body
    assert body.index("overreach") < body.index("300 of 600")  # failed checks first
    assert "412 prompt" in body and "96 completion" in body and "840 ms" in body
    assert "$0.00123" in body
    assert "Trail runners" in body and "25-34 <b>50%</b>" in body and "+1 more" in body
    assert "Live copy." in body and "Approving this variant replaces it" in body


def test_the_focus_view_shows_the_audit_trail_with_who_and_when(client, copywriter):
    variant = VariantFactory(text="Old words here.")
    lead = UserFactory(username="lead-anna", groups=["marketing lead"])
    services.variant_approve(variant=variant, user=lead, text="New words here.")
    body = client.get(reverse("review:variant", args=[variant.pk])).content.decode()
    assert "Edited and approved</b> by lead-anna at" in body
    assert "<del>Old</del>" in body and "<ins>New</ins>" in body


def test_generated_text_is_escaped_in_the_focus_view_and_its_diff(client, copywriter):
    variant = VariantFactory(
        text="Fast <script>alert(1)</script> & light", rationale="<img src=x onerror=alert(2)>"
    )
    body = client.get(reverse("review:variant", args=[variant.pk])).content.decode()
    assert "<script>alert(1)</script>" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&amp;" in body and "&lt;img src=x onerror=alert(2)&gt;" in body


def test_the_focus_view_links_to_the_next_and_previous_variant_in_the_queue(client, copywriter):
    first, second, third = VariantFactory.create_batch(3)
    body = client.get(
        reverse("review:variant", args=[second.pk]) + "?status=in_review"
    ).content.decode()
    link = 'rel="{}" href="/review/variants/{}/?status=in_review"'
    assert link.format("prev", first.pk) in body and link.format("next", third.pk) in body


def test_the_focus_view_query_count_does_not_grow_with_its_history(
    client, copywriter, django_assert_max_num_queries
):
    variant = VariantFactory()
    user = UserFactory()
    for _ in range(6):
        services.variant_reject(variant=variant, user=user, reason="Too long")
        Variant.objects.filter(pk=variant.pk).update(status=Variant.Status.IN_REVIEW)
    VariantFactory.create_batch(5)
    # 15: one of them asks whether an experiment runs on the slot (its panel).
    with django_assert_max_num_queries(15):
        response = client.get(reverse("review:variant", args=[variant.pk]))
    assert response.content.decode().count('class="event event-reject"') == 6


def test_the_queue_and_focus_view_load_our_keyboard_script_and_help(client, copywriter):
    variant = VariantFactory()
    for url in (QUEUE, reverse("review:variant", args=[variant.pk])):
        body = client.get(url).content.decode()
        assert "/static/review/review.js" in body and 'id="keys-help"' in body


def test_the_focus_view_of_a_one_to_one_variant_shows_the_customers_usable_attributes(
    client, copywriter
):
    customer = CustomerFactory(
        attributes={"value_tier": "high", "email": "kim@example.com", "region": "north"}
    )
    variant = VariantFactory(segment=None, customer=customer)
    body = client.get(reverse("review:variant", args=[variant.pk])).content.decode()
    assert "Written for one customer" in body and "region" in body and "north" in body
    assert "kim@example.com" not in body


def test_bulk_decisions_are_bounded(client, copywriter):
    response = client.post(
        reverse("review:bulk"), {"ids": list(range(1, 150)), "action": "approve"}, headers=HX
    )
    assert "at most 100" in response.content.decode()


# --- the basics: roles, the page, one decision ---


def test_anonymous_users_are_sent_to_the_login_page(client):
    variant = VariantFactory()
    for response in (
        client.get(QUEUE),
        client.post(reverse("review:approve", args=[variant.pk])),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    variant.refresh_from_db()
    assert variant.status == Variant.Status.IN_REVIEW


def test_users_without_a_review_role_are_refused(client):
    client.force_login(UserFactory(username="outsider"))
    variant = VariantFactory()
    assert client.get(QUEUE).status_code == 403
    assert client.post(reverse("review:approve", args=[variant.pk])).status_code == 403


@pytest.mark.parametrize("group", ["copywriter", "marketing lead"])
def test_reviewers_see_variants_in_review_beside_the_base_copy(client, group):
    client.force_login(UserFactory(username=f"u-{group}", groups=[group]))
    variant = VariantFactory(text="Variant copy here.")
    VariantFactory(status=Variant.Status.PUBLISHED, text="Already live.")
    response = client.get(QUEUE)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Variant copy here." in body and variant.product.description in body
    assert "Already live." not in body


def test_the_queue_page_query_count_does_not_grow_with_variants(
    client, copywriter, django_assert_max_num_queries
):
    # session, user, role, page, status counts, runs, segments, prompts, last
    # decision, and the nav's groups: none of them per row.
    VariantFactory.create_batch(25)
    with django_assert_max_num_queries(12):
        client.get(QUEUE)


def test_generated_text_is_escaped(client, copywriter):
    VariantFactory(text="<script>alert(1)</script>", rationale="<b>bold</b>")
    body = client.get(QUEUE).content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;b&gt;bold&lt;/b&gt;" in body


def test_approving_over_htmx_returns_the_updated_row(client, copywriter):
    variant = VariantFactory()
    response = client.post(
        reverse("review:approve", args=[variant.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert f'id="variant-{variant.pk}"' in body and "Published" in body
    assert "<html" not in body
    variant.refresh_from_db()
    assert variant.status == Variant.Status.PUBLISHED
    assert variant.review_events.get().user == copywriter


def test_approving_without_htmx_redirects_back_to_the_queue(client, copywriter):
    variant = VariantFactory()
    response = client.post(reverse("review:approve", args=[variant.pk]))
    assert response.status_code == 302 and response["Location"] == QUEUE
    variant.refresh_from_db()
    assert variant.status == Variant.Status.PUBLISHED


def test_rejecting_over_htmx_needs_a_reason(client, copywriter):
    variant = VariantFactory()
    url = reverse("review:reject", args=[variant.pk])
    response = client.post(url, {"reason": ""}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and "Give a reason" in response.content.decode()
    response = client.post(url, {"reason": "Too pushy"}, headers={"HX-Request": "true"})
    assert "Rejected" in response.content.decode()
    variant.refresh_from_db()
    assert variant.status == Variant.Status.REJECTED


def test_a_late_second_decision_shows_a_clear_message(client, copywriter):
    variant = VariantFactory(status=Variant.Status.REJECTED)
    response = client.post(
        reverse("review:approve", args=[variant.pk]), headers={"HX-Request": "true"}
    )
    assert "not in review" in response.content.decode()
    variant.refresh_from_db()
    assert variant.status == Variant.Status.REJECTED


def test_decisions_need_post(client, copywriter):
    variant = VariantFactory()
    assert client.get(reverse("review:approve", args=[variant.pk])).status_code == 405
