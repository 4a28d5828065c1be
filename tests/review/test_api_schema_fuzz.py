"""Schemathesis against our OpenAPI schema: generated requests, in-process over WSGI.

Every operation gets requests built from the schema (valid and not), sent with a
credential that may call it; none may answer 5xx, and each answer must match what
the schema says about its status and body.
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from generation.models import Variant
from hyperpers.wsgi import application
from review.auth import api_token_create
from review.delivery import Exposure
from review.services.experiments import experiment_start
from tests.factories import CustomerFactory, UserFactory, VariantFactory


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    # Like Django's test client: a request must not close the connection that holds
    # the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


# Rows that exist, one dict of names per variant, so that generated requests reach
# past the 404s: filled by the `credentials` fixture, read inside the test.
KNOWN: list[dict] = []
# A running experiment (on the first row's slot), for /experiments/{id}/ paths.
EXPERIMENTS: list[int] = []


@pytest.fixture
def credentials(db) -> dict[str, str]:
    """A credential for each kind of caller, and data for the calls to find."""
    variants = [
        VariantFactory(status=status)
        for status in (Variant.Status.PUBLISHED, Variant.Status.RETIRED, Variant.Status.IN_REVIEW)
    ]
    customer = CustomerFactory()
    KNOWN[:] = [
        {
            "prompt": v.prompt.slug,
            "product": v.product.sku,
            "products": ",".join(x.product.sku for x in variants),
            "segment": v.segment.slug,
            "customer": customer.external_id,
            "variant": v.pk,
            "exposure_id": Exposure(v.prompt_id, v.product_id, v.segment_id, None, v.pk).encode(),
            "key": f"v{v.pk}",
        }
        for v in variants
    ]
    EXPERIMENTS[:] = [experiment_start(variant_ids=[variants[0].pk], user=None).pk]
    lead = UserFactory(username="fuzz-lead", is_staff=True, groups=["marketing lead"])
    return {
        "read": f"Bearer {api_token_create(name='fuzz read', kind='read')[1]}",
        "write": f"Bearer {api_token_create(name='fuzz write', kind='write')[1]}",
        "person": f"Token {Token.objects.create(user=lead).key}",
    }


# Loaded at collection (schemathesis's from_fixture does not run on pytest 9); the
# schema view reads no table.
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)


def _grounded(value, row: dict | None = None):
    """The generated value with the names we know replaced by those of one row.

    The row is chosen by a hash of the generated value, so that hypothesis's
    shrinking stays deterministic; an audience given twice keeps only one of the two.
    """
    row = row or KNOWN[hash(repr(value)) % len(KNOWN)]
    if isinstance(value, list):
        return [_grounded(v, row) for v in value]
    if not isinstance(value, dict):
        return value
    grounded = {
        k: row[k] if k in row else _grounded(v, row) if isinstance(v, dict | list) else v
        for k, v in value.items()
    }
    if "segment" in grounded and "customer" in grounded:
        del grounded["customer" if hash(repr(value)) % 2 else "segment"]
    return grounded


def _poisoned(value):
    """The value with a NUL byte in every string (PostgreSQL refuses NUL in text)."""
    if isinstance(value, str):
        return value + "\x00"
    if isinstance(value, list):
        return [_poisoned(v) for v in value]
    if isinstance(value, dict):
        return {k: _poisoned(v) for k, v in value.items()}
    return value


DEEP = [[[]]]
for _ in range(500):  # json.dumps itself recurses: 5,000 deep is sent raw elsewhere
    DEEP = [DEEP]


def _credential(path: str, credentials: dict[str, str]) -> str:
    if path.startswith("/api/v1/live"):
        return credentials["read"]
    if path.startswith("/api/v1/events"):
        return credentials["write"]
    return credentials["person"]


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_generated_request_gets_a_server_error(case, credentials):
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    headers = {"Authorization": _credential(case.path, credentials)}
    case.call_and_validate(headers=headers, checks=checks)
    # Again with names of rows that exist, to get past the 404s into the logic.
    if isinstance(case.query, dict):
        case.query = _grounded(case.query)
    if isinstance(case.body, dict | list):
        case.body = _grounded(case.body)
    if isinstance(case.path_parameters, dict):
        case.path_parameters = _grounded(case.path_parameters)
        if case.path.startswith("/api/v1/experiments/") and "id" in case.path_parameters:
            case.path_parameters["id"] = EXPERIMENTS[0]
    case.call_and_validate(headers=headers, checks=checks)
    # Malformed on purpose (issue 15): NUL bytes in every string, and a body nested 500
    # deep (tests/hyperpers/test_bad_input.py sends 5,000). A 4xx, never a 5xx.
    if isinstance(case.query, dict):
        case.query = _poisoned(case.query)
    if isinstance(case.path_parameters, dict):
        case.path_parameters = _poisoned(case.path_parameters)
    if isinstance(case.body, dict):
        case.body = {**_poisoned(case.body), "nested": DEEP}
    case.call_and_validate(headers=headers, checks=[not_a_server_error])
