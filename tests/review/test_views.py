import pytest
from django.urls import reverse

from generation.models import Variant
from tests.factories import UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

QUEUE = reverse("review:queue")


@pytest.fixture
def copywriter(client):
    user = UserFactory(username="cw", groups=["copywriter"])
    client.force_login(user)
    return user


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
