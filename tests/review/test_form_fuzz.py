"""The HTML forms, fuzzed: every page a person posts to (and every page's query
string) gets generated values in the fields our templates name, hostile ones among
them (NUL bytes, non-ASCII digits, deep JSON, huge texts, markup). None may answer
5xx; bad input is a page or a 400 that says what is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.factories import UserFactory
from tests.test_role_matrix import MATRIX, _kwargs, _world

pytestmark = pytest.mark.django_db

TEMPLATES = Path(django_settings.BASE_DIR) / "templates"
# The segment builder's rows and the studio's sample rows are formsets: their names
# (rule-0-attribute, sample-0-sku, ...) are rendered from the form, not written in the
# template.
FORMSET_FIELDS = {
    *(f"rule-{i}-{name}" for i in range(2) for name in ("attribute", "op", "value", "upper")),
    "rule-TOTAL_FORMS",
    "rule-INITIAL_FORMS",
    *(f"sample-{i}-{name}" for i in range(2) for name in ("sku", "segment")),
    "sample-TOTAL_FORMS",
    "sample-INITIAL_FORMS",
}
# Every field name a review page's forms post: the fuzzer fills these.
FIELDS = sorted(
    {
        name
        for page in TEMPLATES.glob("review/*.html")
        for name in re.findall(r'name="([a-z_0-9-]+)"', page.read_text())
    }
    | FORMSET_FIELDS
)
HOSTILE = [
    "\x00",
    "a\x00b",
    "²",
    "٣",
    "-1",
    "0",
    "1e309",
    "NaN",
    "9" * 400,
    "9" * 20,  # just past a 64-bit integer: an `__in` lookup does not check overflow
    "[" * 5000 + "]" * 5000,
    '{"a":' * 3000 + "1" + "}" * 3000,
    "<script>alert(1)</script>",
    "{{ customer.email }}",
    "' OR 1=1 --",
    "x" * 20000,
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "de-DE-x-" + "a" * 300,
]
VALUES = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=60), st.integers().map(str))
FORMS = st.dictionaries(
    st.sampled_from(FIELDS), st.one_of(VALUES, st.lists(VALUES, max_size=3)), max_size=6
)
POSTED = sorted(
    {name for name, method, _roles in MATRIX if method == "post" and name.startswith("review:")}
)
PAGES = sorted(
    {name for name, method, _roles in MATRIX if method == "get" and name.startswith("review:")}
)


@pytest.fixture
def lead_world(client):
    world = _world()
    client.force_login(
        UserFactory(username="fuzz-lead", groups=["marketing lead", "copywriter"], is_staff=True)
    )
    return client, world


def _url(name: str, world: dict) -> str:
    return reverse(name, kwargs=_kwargs(name, world))


def _fuzz(send, examples: int) -> None:
    """Send `examples` generated forms (and HTMX or not); none may answer 5xx."""

    @hypothesis_settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(form=FORMS, htmx=st.booleans())
    def run(form, htmx):
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        response = send(form, headers)
        assert response.status_code < 500, (form, response.status_code)

    run()


@pytest.mark.parametrize("name", POSTED)
def test_no_generated_form_gets_a_server_error(lead_world, name):
    client, world = lead_world
    url = _url(name, world)
    _fuzz(lambda form, headers: client.post(url, form, **headers), examples=25)


@pytest.mark.parametrize("name", PAGES)
def test_no_generated_query_string_gets_a_server_error(lead_world, name):
    client, world = lead_world
    url = _url(name, world)
    _fuzz(lambda query, headers: client.get(url, query, **headers), examples=15)
