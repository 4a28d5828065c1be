"""API tokens for leads: the page that lists, creates and revokes them
(review/views/tokens.py), and each token's last use (review/auth.py: token_used)."""

import hashlib
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from generation.models import Variant
from review import auth
from review.auth import api_token_create
from review.models import ApiToken
from tests.factories import UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

LIVE = "/api/v1/live/"
HX = {"HX-Request": "true"}


@pytest.fixture
def lead(client):
    user = UserFactory(username="lead", groups=["marketing lead"])
    client.force_login(user)
    return user


def _api(key: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


def _live(variant: Variant) -> dict:
    return {
        "prompt": variant.prompt.slug,
        "product": variant.product.sku,
        "segment": variant.segment.slug,
    }


# --- roles --------------------------------------------------------------------------------


def _urls(token: ApiToken) -> list[str]:
    return [reverse("review:tokens"), reverse("review:token-revoke", args=[token.pk])]


def test_anonymous_users_are_sent_to_log_in(client):
    token, _key = api_token_create(name="shop", kind="read")
    for url in _urls(token):
        for response in (client.get(url), client.post(url, {"name": "x", "kind": "read"})):
            assert response.status_code == 302 and "/login/" in response["Location"]
    token.refresh_from_db()
    assert ApiToken.objects.count() == 1 and token.revoked is None


def test_copywriters_neither_see_nor_make_nor_revoke_tokens(client):
    token, _key = api_token_create(name="shop", kind="read")
    client.force_login(UserFactory(username="cw", groups=["copywriter"]))
    for url in _urls(token):
        assert client.get(url).status_code == 403
        assert client.get(url, headers=HX).status_code == 403
        assert client.post(url, {"name": "mine", "kind": "write"}).status_code == 403
    token.refresh_from_db()
    assert ApiToken.objects.count() == 1 and token.revoked is None
    body = client.get(reverse("review:queue")).content.decode()
    assert reverse("review:tokens") not in body  # nor is it in their menu


def test_a_token_is_no_way_into_the_tokens_page(client):
    _token, key = api_token_create(name="shop", kind="write")
    response = client.get(reverse("review:tokens"), HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("role", ["lead", "staff"])
def test_leads_and_staff_see_every_token_with_its_story(client, role):
    groups = ["marketing lead"] if role == "lead" else []
    user = UserFactory(username=role, groups=groups, is_staff=role == "staff")
    client.force_login(user)
    shop, _ = api_token_create(name="web shop (prod)", kind="read", created_by=user)
    old, _ = api_token_create(name="old <b>tool</b>", kind="write")
    ApiToken.objects.filter(pk=old.pk).update(revoked=timezone.now())
    ApiToken.objects.filter(pk=shop.pk).update(last_used=timezone.now())

    response = client.get(reverse("review:tokens"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "web shop (prod)" in body and "old &lt;b&gt;tool&lt;/b&gt;" in body
    assert f"<code>{shop.prefix}…</code>" in body and role in body
    assert body.count("Revoke…") == 1  # the revoked one offers no revoke
    assert "never" in body  # the old tool's last use
    assert reverse("review:tokens") in body  # the menu


# --- creating: the key is shown once --------------------------------------------------------


@pytest.mark.parametrize("kind", ["read", "write"])
def test_a_new_tokens_key_is_shown_once_and_only_its_hash_is_kept(client, lead, kind):
    response = client.post(reverse("review:tokens"), {"name": "journey tool", "kind": kind})
    body = response.content.decode()
    token = ApiToken.objects.get()
    (key,) = {line.split('value="', 1)[1].split('"', 1)[0] for line in body.splitlines()
              if 'id="new-key"' in line}  # fmt: skip
    assert response.status_code == 200
    assert key.startswith(f"hp_{kind[0]}_") and token.prefix == key[:10]
    assert "will not show it again" in body
    assert "no-cache" in response["Cache-Control"] and "no-store" in response["Cache-Control"]
    assert (token.name, token.kind, token.created_by) == ("journey tool", kind, lead)
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(ApiToken.objects.values().get())  # only the hash is stored
    # Never again: not on the page, nor in the session's messages.
    assert key not in client.get(reverse("review:tokens")).content.decode()
    assert key not in client.get(reverse("review:queue")).content.decode()
    # And it works.
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    answer = _api(key).get(LIVE, _live(variant))
    assert answer.status_code == (200 if kind == "read" else 403)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "", "kind": "read"}, "Name the token after who uses it"),
        ({"name": "   ", "kind": "write"}, "Name the token after who uses it"),
        ({"name": "x" * 101, "kind": "read"}, "at most 100 characters"),
        ({"name": "shop"}, "Choose what it may do: read or write"),
        ({"name": "shop", "kind": "admin"}, "A token reads or writes"),
    ],
)
def test_a_bad_new_token_is_refused_beside_its_field_and_nothing_is_written(
    client, lead, data, message
):
    response = client.post(reverse("review:tokens"), data)
    body = response.content.decode()
    assert response.status_code == 400
    assert message in body and 'id="new-key"' not in body
    assert not ApiToken.objects.exists()


# --- revoking -----------------------------------------------------------------------------


def test_revoking_asks_first_then_the_api_refuses_the_token(client, lead):
    token, key = api_token_create(name="web shop", kind="read")
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    assert _api(key).get(LIVE, _live(variant)).status_code == 200  # in this process's cache

    confirm = client.get(reverse("review:token-revoke", args=[token.pk]))
    assert confirm.status_code == 200
    assert "Revoke web shop" in confirm.content.decode()
    token.refresh_from_db()
    assert token.revoked is None  # asking wrote nothing

    response = client.post(reverse("review:token-revoke", args=[token.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("review:tokens")
    token.refresh_from_db()
    assert token.revoked is not None
    refused = _api(key).get(LIVE, _live(variant))
    assert refused.status_code == 401
    assert refused.json() == {"detail": "API token 'web shop' was revoked."}
    page = client.get(reverse("review:tokens")).content.decode()
    assert "Revoked &#x27;web shop&#x27;" in page and "Revoke…" not in page


def test_revoking_twice_keeps_the_first_time(client, lead):
    token, _key = api_token_create(name="shop", kind="write")
    first = timezone.now() - timedelta(days=2)
    ApiToken.objects.filter(pk=token.pk).update(revoked=first)
    client.post(reverse("review:token-revoke", args=[token.pk]))
    token.refresh_from_db()
    assert token.revoked == first
    assert "was revoked already" in client.get(reverse("review:tokens")).content.decode()


def test_revoking_a_token_that_does_not_exist_is_a_404(client, lead):
    assert client.get(reverse("review:token-revoke", args=[999])).status_code == 404
    assert client.post(reverse("review:token-revoke", args=[999])).status_code == 404


# --- last use -----------------------------------------------------------------------------


def _updates(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "api" in q["sql"]]


@pytest.mark.parametrize("path", ["fast", "drf"])
def test_a_tokens_use_is_recorded_at_most_once_a_minute(path):
    """The live endpoint's fast path and DRF's authentication both record it; within
    the minute nothing is written, and not even asked of the database."""
    token, key = api_token_create(name="shop", kind="read")
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    # An Accept-Language header sends the request past the fast path, to DRF.
    headers = {} if path == "fast" else {"HTTP_ACCEPT_LANGUAGE": "en"}
    api = _api(key)
    assert token.last_used is None

    with CaptureQueriesContext(connection) as first:
        assert api.get(LIVE, _live(variant), **headers).status_code == 200
    token.refresh_from_db()
    assert token.last_used is not None and len(_updates(first)) == 1
    used = token.last_used

    with CaptureQueriesContext(connection) as again:
        for _ in range(5):
            assert api.get(LIVE, _live(variant), **headers).status_code == 200
    token.refresh_from_db()
    assert token.last_used == used and _updates(again) == []

    # A minute later in this process, while another process wrote it just now: the
    # conditional UPDATE leaves the row alone.
    auth._last_used_noted[token.key_hash] -= auth.LAST_USED_EVERY_SECONDS + 1
    api.get(LIVE, _live(variant), **headers)
    token.refresh_from_db()
    assert token.last_used == used

    # A minute later everywhere: written again.
    auth._last_used_noted[token.key_hash] -= auth.LAST_USED_EVERY_SECONDS + 1
    ApiToken.objects.filter(pk=token.pk).update(last_used=used - timedelta(minutes=2))
    api.get(LIVE, _live(variant), **headers)
    token.refresh_from_db()
    assert token.last_used > used


def test_an_unknown_or_revoked_token_records_no_use():
    token, key = api_token_create(name="shop", kind="read")
    ApiToken.objects.filter(pk=token.pk).update(revoked=timezone.now())
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    assert _api(key).get(LIVE, _live(variant)).status_code == 401
    token.refresh_from_db()
    assert token.last_used is None
