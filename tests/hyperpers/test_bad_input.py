"""Malformed input is a 400 that names what is wrong, never a 500 (issue 15, item 20):
deep JSON, NUL bytes in a path, query, form or JSON string, non-ASCII digits, and an
id that is not a number."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from generation.models import GenerationRun
from review.auth import api_token_create
from tests.factories import CustomerFactory, PromptVersionFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture
def lead(client):
    user = UserFactory(username="lead", groups=["marketing lead"], is_staff=True)
    client.force_login(user)
    return user


def _api(kind: str) -> APIClient:
    client = APIClient()
    _token, key = api_token_create(name=f"{kind} client", kind=kind)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _detail(response) -> str:
    return response.json()["detail"]


def test_5000_deep_json_to_the_events_endpoint_is_a_400():
    response = _api("write").post(reverse("api-events"), DEEP, content_type="application/json")
    assert response.status_code == 400
    assert "nests deeper than 64 levels" in _detail(response)


def test_5000_deep_json_to_the_segment_preview_is_a_400(lead):
    client = APIClient()
    client.force_authenticate(lead)
    body = '{"rules": ' + DEEP + "}"
    response = client.post(reverse("api-segments-preview"), body, content_type="application/json")
    assert response.status_code == 400
    assert "nests deeper than 64 levels" in _detail(response)


def test_a_nul_inside_a_json_string_is_a_400_not_a_database_error():
    body = json.dumps({"events": [{"event_id": "a\u0000b", "kind": "impression"}]})
    response = _api("write").post(reverse("api-events"), body, content_type="application/json")
    assert response.status_code == 400
    assert "NUL character" in _detail(response)


def test_a_nul_in_a_query_parameter_is_a_400_naming_it(client, lead):
    response = client.get(reverse("review:metrics-csv") + "?prompt=%00")
    assert response.status_code == 400
    assert "The query parameter &#x27;prompt&#x27; holds a NUL byte" in response.content.decode()


def test_a_nul_in_the_path_is_a_400():
    CustomerFactory(external_id="C1")
    response = _api("write").delete("/api/v1/customers/C1%00/")
    assert response.status_code == 400
    assert _detail(response) == "The path holds a NUL byte"


def test_non_ascii_digits_in_bulk_ids_are_refused_naming_the_value(client, lead):
    # The bulk form reads ids (review/forms.py: BulkForm): a refusal on the queue page,
    # not a 400 page, and nothing decided.
    variant = VariantFactory(status="in_review")
    response = client.post(
        reverse("review:bulk"), {"ids": ["²", str(variant.pk)], "action": "approve"}, follow=True
    )
    assert response.status_code == 200
    assert [m.message for m in response.context["messages"]] == [
        "Variants are named by number, not '²'"
    ]
    variant.refresh_from_db()
    assert variant.status == "in_review"


def test_non_ascii_digits_in_the_studios_examples_are_refused_beside_the_field(client, lead):
    version = PromptVersionFactory(template="Write about {product_name}.")
    product, segment = VariantFactory(prompt_version=version).product, None
    data = {
        "template": "Shorter: write about {product_name}.",
        "model": version.model,
        "temperature": version.temperature,
        "note": "",
        "preview_product": product.sku,
        "preview_segment": segment or "",
        "examples_shown": "1",
        "example_variant": ["١٢"],  # Arabic-Indic digits: "١٢".isdigit() is True
    }
    response = client.post(reverse("review:studio-save", args=[version.prompt.slug]), data)
    # The studio's examples form (review/forms.py: ExamplesForm) names the value on the
    # page, and no version is saved.
    assert response.status_code == 200
    assert "No variant is numbered &#x27;١٢&#x27;" in response.content.decode()
    assert version.prompt.versions.count() == 1


def test_a_variant_that_is_not_a_number_on_retry_variant_is_refused(client, lead):
    variant = VariantFactory(status="failed")
    run = GenerationRun.objects.create(prompt_version=variant.prompt_version)
    url = reverse("review:run-action", args=[run.pk, "retry-variant"])
    response = client.post(url, {"variant": "abc"}, follow=True)
    assert response.status_code == 200
    assert [m.message for m in response.context["messages"]] == ["The run has no variant abc"]
    variant.refresh_from_db()
    assert variant.status == "failed"


def test_a_percent_sign_before_00_is_not_a_nul(client, lead):
    # The middleware parses the query only when its raw text could hold a NUL: %2500
    # decodes to the text "%00", which is no NUL byte.
    response = client.get(reverse("review:metrics-csv") + "?prompt=%2500")
    assert "holds a NUL byte" not in response.content.decode()
    response = client.get(reverse("review:metrics-csv") + "?pro%00mpt=x")
    assert response.status_code == 400
    assert "The query parameter &#x27;pro" in response.content.decode()
