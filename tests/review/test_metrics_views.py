"""The metrics dashboard, its CSV export and the flag button: roles, HTMX, escaping,
query counts; and the queue's underperforming filter and badge."""

import csv
import io
import json
import re

import pytest
from django.urls import reverse

from generation.models import Variant
from tests.factories import (
    PromptVersionFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
    engagement_create,
)

pytestmark = pytest.mark.django_db

METRICS = reverse("review:metrics")
CSV = reverse("review:metrics-csv")
FLAG = reverse("review:metrics-flag")
HX = {"HX-Request": "true"}
ROLES = {
    "copywriter": {"groups": ["copywriter"]},
    "lead": {"groups": ["marketing lead"]},
    "staff": {"is_staff": True},
}


@pytest.fixture
def data():
    """A prompt with a better variant, a worse one (edited, with hostile text) and their
    controls, in two segments with untrusted names."""
    version = PromptVersionFactory(number=1)
    prompt = version.prompt
    runners = SegmentFactory(name="<script>alert('segment')</script>")
    hikers = SegmentFactory(name="Hikers")
    good = VariantFactory(prompt_version=version, segment=runners, status="published")
    bad = VariantFactory(
        prompt_version=version,
        segment=hikers,
        status="published",
        text='=HYPERLINK("http://evil") <img src=x onerror=alert(1)>',
        original_text="What the model wrote.",
    )
    engagement_create(variant=good, impressions=1000, clicks=80, conversions=8)
    engagement_create(
        prompt=prompt, product=good.product, segment=runners, impressions=1000, clicks=50
    )
    engagement_create(variant=bad, impressions=1000, clicks=20, conversions=1)
    engagement_create(
        prompt=prompt, product=bad.product, segment=hikers, impressions=1000, clicks=60
    )
    return prompt, good, bad


def _login(client, role: str):
    user = UserFactory(username=role, **ROLES[role])
    client.force_login(user)
    return user


# --- roles ----------------------------------------------------------------------------


@pytest.mark.parametrize("hx", [False, True], ids=["plain", "htmx"])
def test_anonymous_users_are_sent_to_log_in_from_every_metrics_view(client, data, hx):
    prompt, _good, _bad = data
    for method, url, body in (
        ("get", METRICS, {}),
        ("get", CSV, {"prompt": prompt.slug}),
        ("post", FLAG, {"prompt": prompt.slug}),
    ):
        response = getattr(client, method)(url, body, headers=HX if hx else {})
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    assert not Variant.objects.filter(underperforming=True).exists()


def test_users_without_a_review_role_get_403(client, data):
    prompt, _good, _bad = data
    client.force_login(UserFactory(username="outsider"))
    assert client.get(METRICS).status_code == 403
    assert client.get(CSV, {"prompt": prompt.slug}).status_code == 403
    assert client.post(FLAG, {"prompt": prompt.slug}).status_code == 403


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("hx", [False, True], ids=["plain", "htmx"])
def test_every_reviewer_can_read_the_dashboard(client, data, role, hx):
    prompt, _good, _bad = data
    _login(client, role)
    response = client.get(METRICS, {"prompt": prompt.slug}, headers=HX if hx else {})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="metrics"' in body and ("<html" in body) is not hx
    assert "Per prompt version" in body and "Per segment" in body
    assert "Edited by a reviewer" in body and "two-proportion z-test" in body
    # Only leads and staff get the button that writes.
    assert ("Flag underperforming variants now" in body) is (role != "copywriter")


def test_the_page_loads_chartjs_and_our_script_from_our_own_static_files(client, data):
    _login(client, "copywriter")
    body = client.get(METRICS).content.decode()
    assert "/static/vendor/chartjs/chart.umd.min.js" in body
    assert "/static/review/metrics.js" in body
    assert "cdn" not in body.lower()


def test_the_metrics_nav_link_is_shown_to_reviewers(client, data):
    _login(client, "copywriter")
    assert f'href="{METRICS}"' in client.get(reverse("review:queue")).content.decode()


def test_copywriters_cannot_flag(client, data):
    prompt, _good, bad = data
    _login(client, "copywriter")
    assert client.post(FLAG, {"prompt": prompt.slug}).status_code == 403
    bad.refresh_from_db()
    assert not bad.underperforming


@pytest.mark.parametrize("role", ["lead", "staff"])
def test_leads_and_staff_flag_underperformers_from_the_dashboard(client, data, role):
    prompt, _good, bad = data
    _login(client, role)
    response = client.post(FLAG, {"prompt": prompt.slug}, follow=True)
    assert response.redirect_chain[-1][0] == f"{METRICS}?prompt={prompt.slug}"
    assert "1 variant of" in response.content.decode()
    bad.refresh_from_db()
    assert bad.underperforming


# --- content --------------------------------------------------------------------------


def test_the_dashboard_shows_the_figures_and_embeds_chart_data_as_json(client, data):
    prompt, good, _bad = data
    _login(client, "lead")
    response = client.get(METRICS, {"prompt": prompt.slug})
    body = response.content.decode()
    assert "8.00%" in body and "2.00%" in body  # the two variants' CTRs
    assert "60.0%" in body  # the good variant's uplift: 0.08 / 0.05 − 1
    match = re.search(
        r'<script id="metrics-chart-data" type="application/json">(.*?)</script>', body, re.S
    )
    chart = json.loads(match.group(1))
    assert [v["label"] for v in chart["versions"]] == [f"v{good.prompt_version.number}"]
    assert chart["control"]["ctr"] == pytest.approx(0.055)
    assert {s["label"] for s in chart["segments"]} == {
        "<script>alert('segment')</script>",
        "Hikers",
    }


def test_untrusted_text_is_escaped_in_the_page_and_in_the_chart_json(client, data):
    prompt, _good, _bad = data
    _login(client, "lead")
    body = client.get(METRICS, {"prompt": prompt.slug}).content.decode()
    assert "<script>alert(" not in body
    assert "<img src=x" not in body
    assert "&lt;script&gt;alert(" in body  # the table
    assert "\\u003Cscript\\u003Ealert(" in body  # json_script


def test_an_unknown_prompt_is_404(client, data):
    _login(client, "lead")
    assert client.get(METRICS, {"prompt": "nope"}).status_code == 404


def test_a_prompt_without_engagement_says_so(client):
    version = PromptVersionFactory()
    _login(client, "copywriter")
    body = client.get(METRICS, {"prompt": version.prompt.slug}).content.decode()
    assert "No engagement recorded for this prompt yet" in body


def test_with_no_prompt_at_all_the_page_says_so(client):
    _login(client, "copywriter")
    assert "No prompt yet" in client.get(METRICS).content.decode()


def test_the_dashboard_query_count_does_not_grow_with_variants(
    client, data, django_assert_max_num_queries
):
    prompt, good, _bad = data
    for _ in range(10):
        variant = VariantFactory(prompt_version=good.prompt_version, status="published")
        engagement_create(variant=variant, impressions=120, clicks=6)
        engagement_create(
            prompt=prompt,
            product=variant.product,
            segment=variant.segment,
            impressions=120,
            clicks=5,
        )
    _login(client, "lead")
    client.get(METRICS)  # warm the session and the user's groups
    # 12: two of them list the live slots and the experiments running on them.
    for headers in ({}, HX):
        with django_assert_max_num_queries(12):
            response = client.get(METRICS, {"prompt": prompt.slug}, headers=headers)
        assert response.status_code == 200


# --- CSV ------------------------------------------------------------------------------


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_the_csv_export_by_variant_has_a_header_and_defused_formulas(client, data):
    prompt, good, bad = data
    _login(client, "copywriter")
    response = client.get(CSV, {"prompt": prompt.slug, "by": "variant"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="metrics-{prompt.slug}-variant.csv"' in response["Content-Disposition"]
    header, *rows = _csv(response)
    assert header[:3] == ["prompt", "group", "variant_id"]
    assert {"impressions", "ctr", "ctr_uplift", "ctr_uplift_low", "ctr_p_value"} <= set(header)
    by_id = {row[header.index("variant_id")]: dict(zip(header, row, strict=True)) for row in rows}
    assert by_id[str(bad.pk)]["text"].startswith("'=HYPERLINK")
    assert by_id[str(bad.pk)]["ctr_verdict"] == "worse"
    assert float(by_id[str(bad.pk)]["ctr_uplift"]) < 0  # a negative number stays a number
    assert by_id[str(good.pk)]["impressions"] == "1000"


@pytest.mark.parametrize("by", ["version", "segment", "edited"])
def test_the_csv_export_of_each_table(client, data, by):
    prompt, *_ = data
    _login(client, "lead")
    response = client.get(CSV, {"prompt": prompt.slug, "by": by})
    header, *rows = _csv(response)
    assert header[:2] == ["prompt", "group"] and "variant_id" not in header
    assert rows and all(len(row) == len(header) for row in rows)
    if by == "segment":
        names = {row[1] for row in rows}
        assert "<script>alert('segment')</script>" in names  # text, not HTML: unescaped


def test_an_unknown_by_is_400_naming_it(client, data):
    prompt, *_ = data
    _login(client, "lead")
    response = client.get(CSV, {"prompt": prompt.slug, "by": "colour"})
    assert response.status_code == 400
    assert "'colour'" in response.content.decode()


def test_an_unknown_or_missing_prompt_in_the_csv_is_400(client, data):
    _login(client, "lead")
    response = client.get(CSV, {"prompt": "nope", "by": "variant"})
    assert response.status_code == 400 and "'nope'" in response.content.decode()
    assert client.get(CSV, {"by": "variant"}).status_code == 400


# --- the queue: filter and badge ------------------------------------------------------


def test_the_queue_filters_and_badges_underperforming_variants(client, data):
    _prompt, good, bad = data
    Variant.objects.filter(pk=bad.pk).update(underperforming=True)
    _login(client, "copywriter")
    response = client.get(reverse("review:queue"), {"status": "published", "underperforming": 1})
    body = response.content.decode()
    assert f'id="variant-{bad.pk}"' in body and f'id="variant-{good.pk}"' not in body
    assert "Underperforming</a>" in body
    everything = client.get(reverse("review:queue"), {"status": "published"}).content.decode()
    assert f'id="variant-{good.pk}"' in everything


def test_the_focus_view_shows_the_underperforming_flag(client, data):
    _prompt, good, bad = data
    Variant.objects.filter(pk=bad.pk).update(underperforming=True)
    _login(client, "copywriter")
    assert (
        "Underperforming</a>"
        in client.get(reverse("review:variant", args=[bad.pk])).content.decode()
    )
    assert (
        "Underperforming</a>"
        not in client.get(reverse("review:variant", args=[good.pk])).content.decode()
    )


# --- closing the loop: best performers become examples in the next version ---------------


def _studio_post(prompt, **changes) -> dict:
    version = prompt.current_version
    return {
        "template": version.template,
        "model": version.model,
        "temperature": version.temperature,
        "note": "",
        "examples_shown": "1",
        **changes,
    }


def test_the_studio_lists_best_performers_with_their_significance(client, data):
    prompt, good, bad = data
    _login(client, "lead")
    body = client.get(reverse("review:studio", args=[prompt.slug])).content.decode()
    assert "Best performers" in body
    assert f'name="example_variant" value="{good.pk}"' in body
    assert body.index(f'value="{good.pk}"') < body.index(f'value="{bad.pk}"')  # by CTR
    assert "significant" in body
    assert "&lt;img src=x" in body and "<img src=x" not in body  # the copy is escaped


def test_copywriters_cannot_open_the_studio_examples(client, data):
    prompt, good, _bad = data
    _login(client, "copywriter")
    url = reverse("review:studio-save", args=[prompt.slug])
    assert client.post(url, _studio_post(prompt, example_variant=[good.pk])).status_code == 403
    assert prompt.versions.count() == 1


@pytest.mark.parametrize("hx", [False, True], ids=["plain", "htmx"])
def test_saving_with_chosen_best_performers_stores_their_texts_as_examples(client, data, hx):
    prompt, good, bad = data
    _login(client, "lead")
    in_review = VariantFactory(prompt_version=good.prompt_version, text="Not approved yet.")
    foreign = VariantFactory(status="published", text="Another prompt's copy.")
    post = _studio_post(prompt, example_variant=[bad.pk, good.pk, in_review.pk, foreign.pk])

    response = client.post(
        reverse("review:studio-save", args=[prompt.slug]), post, headers=HX if hx else {}
    )

    assert response.status_code == (200 if hx else 302)
    version = prompt.versions.order_by("-number").first()
    # Only the examples changed, which is a change worth a version.
    assert version.number == 2 and version.template == good.prompt_version.template
    assert version.examples == [bad.text, good.text]  # in the order ticked


def test_the_next_versions_messages_carry_the_examples_in_the_prefix(client, data):
    prompt, good, _bad = data
    _login(client, "lead")
    client.post(
        reverse("review:studio-save", args=[prompt.slug]),
        _studio_post(prompt, example_variant=[good.pk]),
    )
    version = prompt.versions.get(number=2)
    from generation import prompting

    system, user = prompting.render(
        version=version,
        prompt=prompt,
        brand=prompt.brand,
        product=good.product,
        segment=good.segment,
    ).messages
    assert (
        system["content"].endswith(f'<examples>\n[\n "{good.text}"\n]\n</examples>')
        and good.text not in user["content"]
    )


def test_the_preview_shows_the_ticked_examples(client, data):
    prompt, good, _bad = data
    _login(client, "lead")
    post = _studio_post(
        prompt,
        example_variant=[good.pk],
        preview_product=good.product.sku,
        preview_segment=good.segment.slug,
    )
    response = client.post(reverse("review:studio-preview", args=[prompt.slug]), post, headers=HX)
    body = response.content.decode()
    assert "&lt;examples&gt;" in body and good.text in body


def test_examples_carry_over_unless_unticked(client, data):
    prompt, good, bad = data
    _login(client, "lead")
    save = reverse("review:studio-save", args=[prompt.slug])
    client.post(save, _studio_post(prompt, example_variant=[good.pk, bad.pk]))
    # A save from a form without the examples section keeps them (and a new template).
    post = _studio_post(prompt, template="Shorter. " + prompt.current_version.template)
    del post["examples_shown"]
    client.post(save, post)
    assert prompt.versions.get(number=3).examples == [good.text, bad.text]
    # The studio shows them ticked; unticking the first drops it.
    body = client.get(reverse("review:studio", args=[prompt.slug])).content.decode()
    assert 'name="keep_example" value="0" checked' in body and "already one" in body
    client.post(save, _studio_post(prompt, keep_example=["1"]))
    assert prompt.versions.get(number=4).examples == [bad.text]


def test_saving_the_same_examples_again_is_refused_as_unchanged(client, data):
    prompt, good, _bad = data
    _login(client, "lead")
    save = reverse("review:studio-save", args=[prompt.slug])
    client.post(save, _studio_post(prompt, example_variant=[good.pk]))
    response = client.post(save, _studio_post(prompt, keep_example=["0"]), headers=HX)
    assert "Nothing changed since v2" in response.content.decode()
    assert prompt.versions.count() == 2


def test_too_many_examples_are_refused_and_nothing_is_saved(client, data):
    prompt, *_ = data
    _login(client, "lead")
    many = [
        VariantFactory(prompt_version=prompt.current_version, status="retired", text=f"Copy {i}")
        for i in range(6)
    ]
    response = client.post(
        reverse("review:studio-save", args=[prompt.slug]),
        _studio_post(prompt, example_variant=[v.pk for v in many]),
        headers=HX,
    )
    assert "at most 5 examples" in response.content.decode()
    assert prompt.versions.count() == 1


def test_rolling_back_restores_that_versions_examples(client, data):
    prompt, good, _bad = data
    _login(client, "lead")
    client.post(
        reverse("review:studio-save", args=[prompt.slug]),
        _studio_post(prompt, example_variant=[good.pk]),
    )
    client.post(
        reverse("review:studio-rollback", args=[prompt.slug, 1]),
        {"confirm": "1"},
    )
    assert prompt.current_version.number == 3 and prompt.current_version.examples == []
