import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from generation.models import Variant
from tests.factories import ProductFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/live/"


@pytest.fixture
def api():
    token = Token.objects.create(user=UserFactory(username="shop"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def _params(variant, **overrides):
    return {
        "prompt": variant.prompt.slug,
        "product": variant.product.sku,
        "segment": variant.segment.slug,
        **overrides,
    }


def test_the_live_endpoint_needs_a_token():
    variant = VariantFactory()
    assert APIClient().get(URL, _params(variant)).status_code == 401


def test_the_published_variant_is_served(api):
    live = VariantFactory(status=Variant.Status.PUBLISHED, text="Live copy")
    response = api.get(URL, _params(live))
    assert response.status_code == 200
    assert response.json() == {
        "prompt": live.prompt.slug,
        "product": live.product.sku,
        "segment": live.segment.slug,
        "fallback": False,
        "variant_id": live.pk,
        "prompt_version": live.prompt_version.number,
        "text": "Live copy",
    }


def test_without_a_published_variant_the_base_copy_is_the_fallback(api):
    in_review = VariantFactory(status=Variant.Status.IN_REVIEW)
    body = api.get(URL, _params(in_review)).json()
    assert body["fallback"] is True and body["variant_id"] is None
    assert body["text"] == in_review.product.description


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prompt", "nope", "Unknown prompt 'nope'"),
        ("product", "NOPE-1", "Unknown product 'NOPE-1'"),
        ("segment", "nope", "Unknown segment 'nope'"),
    ],
)
def test_unknown_names_get_404_naming_which(api, field, value, message):
    variant = VariantFactory()
    ProductFactory()
    response = api.get(URL, _params(variant, **{field: value}))
    assert response.status_code == 404
    assert response.json() == {"detail": message}


def test_a_missing_parameter_gets_400_naming_it(api):
    variant = VariantFactory()
    params = _params(variant)
    del params["segment"]
    response = api.get(URL, params)
    assert response.status_code == 400
    assert "segment" in response.json()
