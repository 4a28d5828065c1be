"""Decisions over the API: approve, edit then approve, reject, regenerate; who may."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from generation.models import Variant
from review.auth import api_token_create
from review.models import ReviewEvent
from tests.factories import PromptVersionFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

API = "/api/v1/variants"
GROUPS = {"copywriter": ["copywriter"], "lead": ["marketing lead"], "staff": [], "nobody": []}


def as_(role: str) -> APIClient:
    client = APIClient()
    if role in ("read", "write"):
        _token, key = api_token_create(name=f"{role} client", kind=role)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    elif role != "anonymous":
        user = UserFactory(username=role, groups=GROUPS[role], is_staff=role == "staff")
        client.force_authenticate(user)
    return client


@pytest.fixture
def variant():
    return VariantFactory(text="Made for your daily miles.", revision=2)


DECISIONS = [
    ("approve", {}),
    ("reject", {"reason": "Off brand"}),
    ("regenerate", {"note": "shorter"}),
]


@pytest.mark.parametrize("action, payload", DECISIONS)
@pytest.mark.parametrize(
    "role, expected",
    [("anonymous", 401), ("nobody", 403), ("read", 403), ("write", 403)],
)
def test_api_tokens_and_people_who_do_not_review_never_decide(
    role, expected, action, payload, variant
):
    response = as_(role).post(
        f"{API}/{variant.pk}/{action}/", {"revision": 2, **payload}, format="json"
    )
    assert response.status_code == expected
    variant.refresh_from_db()
    assert variant.status == Variant.Status.IN_REVIEW and variant.revision == 2
    assert not ReviewEvent.objects.exists()


@pytest.mark.parametrize("role", ["copywriter", "lead", "staff"])
def test_reviewers_approve_as_themselves(role, variant):
    response = as_(role).post(f"{API}/{variant.pk}/approve/", {"revision": 2}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "published" and body["revision"] == 3
    assert body["review_events"][0]["action"] == "approve"
    assert body["review_events"][0]["user"] == role
    variant.refresh_from_db()
    assert variant.status == Variant.Status.PUBLISHED


def test_the_api_refuses_whom_the_review_page_refuses(client, variant):
    """Same helper, same answer: a signed-in person outside the review groups."""
    user = UserFactory(username="outsider")
    client.force_login(user)
    page = client.post(reverse("review:approve", args=[variant.pk]), {"revision": 2})
    api = APIClient()
    api.force_authenticate(user)
    response = api.post(f"{API}/{variant.pk}/approve/", {"revision": 2}, format="json")
    assert page.status_code == response.status_code == 403
    assert (
        response.json()["detail"] == "Only copywriters, marketing leads and staff review variants"
    )


def test_a_personal_token_decides_as_its_person(variant):
    user = UserFactory(username="cw", groups=["copywriter"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    response = client.post(
        f"{API}/{variant.pk}/reject/", {"revision": 2, "reason": "Too long"}, format="json"
    )
    assert response.status_code == 200
    assert ReviewEvent.objects.get().user == user


def test_approving_with_edited_text_keeps_the_models_text(variant):
    response = as_("copywriter").post(
        f"{API}/{variant.pk}/approve/",
        {"revision": 2, "text": "  Built for every mile.  "},
        format="json",
    )
    body = response.json()
    assert body["status"] == "published" and body["text"] == "Built for every mile."
    assert body["original_text"] == "Made for your daily miles."
    event = ReviewEvent.objects.get()
    assert event.action == ReviewEvent.Action.EDIT
    assert (event.text_before, event.text_after) == (
        "Made for your daily miles.",
        "Built for every mile.",
    )


def test_approving_retires_the_slots_live_variant(variant):
    live = VariantFactory(
        prompt_version=PromptVersionFactory(prompt=variant.prompt),
        product=variant.product,
        segment=variant.segment,
        status=Variant.Status.PUBLISHED,
        prompt=variant.prompt,
    )
    as_("lead").post(f"{API}/{variant.pk}/approve/", {"revision": 2}, format="json")
    live.refresh_from_db()
    assert live.status == Variant.Status.RETIRED


@pytest.mark.parametrize("action, payload", DECISIONS)
def test_a_stale_revision_is_409_with_who_decided_and_changes_nothing(action, payload, variant):
    other = UserFactory(username="bea", groups=["copywriter"])
    client = APIClient()
    client.force_authenticate(other)
    first = client.post(
        f"{API}/{variant.pk}/reject/", {"revision": 2, "reason": "Off brand"}, format="json"
    )
    assert first.status_code == 200
    response = as_("copywriter").post(
        f"{API}/{variant.pk}/{action}/", {"revision": 2, **payload}, format="json"
    )
    assert response.status_code == 409
    body = response.json()
    assert body["detail"].startswith("Someone else decided this variant at ")
    assert body["detail"].endswith(": rejected by bea")
    assert (body["revision"], body["status"]) == (3, "rejected")
    assert ReviewEvent.objects.count() == 1


@pytest.mark.parametrize("action, payload", DECISIONS)
def test_a_decision_on_a_variant_not_in_review_names_its_status(action, payload):
    published = VariantFactory(status=Variant.Status.PUBLISHED, revision=1)
    response = as_("copywriter").post(
        f"{API}/{published.pk}/{action}/", {"revision": 1, **payload}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "status": [
            f"Variant {published.pk} is published, not in review; "
            "someone may have decided it already"
        ]
    }


@pytest.mark.parametrize("action, payload", DECISIONS)
def test_a_decision_must_quote_the_revision(action, payload, variant):
    client = as_("copywriter")
    response = client.post(f"{API}/{variant.pk}/{action}/", payload, format="json")
    assert response.status_code == 400 and "revision" in response.json()
    response = client.post(
        f"{API}/{variant.pk}/{action}/", {"revision": "two", **payload}, format="json"
    )
    assert response.status_code == 400 and "revision" in response.json()
    variant.refresh_from_db()
    assert variant.status == Variant.Status.IN_REVIEW


def test_rejecting_needs_a_reason(variant):
    client = as_("copywriter")
    for payload in ({"reason": "  "}, {"reason": "Other"}, {"reason": "Other", "detail": " "}):
        response = client.post(
            f"{API}/{variant.pk}/reject/", {"revision": 2, **payload}, format="json"
        )
        assert response.status_code == 400
        assert response.json() == {"reason": ["Give a reason for rejecting"]}, payload
    response = client.post(
        f"{API}/{variant.pk}/reject/",
        {"revision": 2, "reason": "Other", "detail": "Mentions a discontinued colour"},
        format="json",
    )
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    assert ReviewEvent.objects.get().reason == "Other: Mentions a discontinued colour"


def test_regenerating_queues_the_variant_again_with_the_note(
    variant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = as_("copywriter").post(
            f"{API}/{variant.pk}/regenerate/",
            {"revision": 2, "note": "Mention the warranty"},
            format="json",
        )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "queued" and body["regeneration_note"] == "Mention the warranty"
    assert body["review_events"][0]["action"] == "regenerate"
    assert len(callbacks) == 1  # generate_variants, after commit


def test_deciding_an_unknown_variant_is_404():
    response = as_("copywriter").post(f"{API}/999999/approve/", {"revision": 0}, format="json")
    assert response.status_code == 404
