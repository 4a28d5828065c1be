"""Segment rules, the segment builder pages and API, and the prompt privacy page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from generation import services
from generation.models import Segment, SegmentRuleError, rule_matches, segment_rules_clean
from tests.factories import (
    CustomerFactory,
    ProductFactory,
    PromptVersionFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
)
from tests.review.test_rest_api import API, as_

pytestmark = pytest.mark.django_db


# --- rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ("high", "high", True),
        ("high", "low", False),
        (3, "3", True),
        (True, "true", True),
        (["north", "east"], "east", True),
        (["north", "east"], "south", False),
        ({"gte": 25, "lt": 35}, 25, True),
        ({"gte": 25, "lt": 35}, "34.9", True),
        ({"gte": 25, "lt": 35}, 35, False),
        ({"gt": 25}, 25, False),
        ({"lte": 10}, 10, True),
        ({"gte": 25}, "n/a", False),
        ({"gte": 25}, True, False),
        ({"lt": "2020-01-01"}, "2019-12-31", True),
        ({"lt": "2020-01-01"}, "2020-01-01", False),
        ("high", None, False),
        ({"gte": 0}, "", False),
    ],
)
def test_a_rule_matches_values(rule, value, expected):
    assert rule_matches(rule, value) is expected


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({}, "cannot be empty"),
        ({"tier": ""}, "Rule on 'tier': the value is empty"),
        ({"tier": []}, "one of needs a list of values"),
        ({"age": {"from": 3}}, "a range has bounds gte, gt, lte, lt, not from"),
        ({"age": {"gte": 3, "lt": "x"}}, "bounds are all numbers or all texts"),
        ({"age": {"gte": 3, "gt": 4}}, "one lower and one upper bound"),
        ({"tier": {"a": [1]}}, "a range has bounds"),
        ({"tier": None}, "give a value, a list of values or a range"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_attribute(rules, message):
    with pytest.raises(SegmentRuleError) as error:
        segment_rules_clean(rules)
    assert message in str(error.value)


def test_a_segment_with_ranges_counts_its_members_and_summarises_the_rest():
    for age, region in [(24, "north"), (25, "north"), (30, "south"), (34, "south"), (40, "n")]:
        CustomerFactory(attributes={"age": age, "region": region, "value_tier": "high"})
    segment = services.segment_save(
        name="Late twenties", rules={"age": {"gte": 25, "lt": 35}, "value_tier": ["high", "mid"]}
    )
    assert (segment.slug, segment.member_count) == ("late-twenties", 3)
    assert segment.summary["region"] == {"south": 0.6667, "north": 0.3333}
    assert "age" not in segment.summary and "value_tier" not in segment.summary
    assert segment.describe_rules() == "age from 25 and under 35; value_tier is high or mid"


def test_the_delivery_resolves_a_customer_through_range_rules():
    from review.delivery import segment_for

    SegmentFactory(slug="young", rules={"age": {"lt": 30}})
    SegmentFactory(slug="young-north", rules={"age": {"lt": 30}, "region": ["north"]})
    assert segment_for({"age": 22, "region": "north"}).slug == "young-north"
    assert segment_for({"age": "22", "region": "south"}).slug == "young"
    assert segment_for({"age": 31}) is None


# --- API ---------------------------------------------------------------------------------


def test_leads_define_segments_over_the_api_and_reviewers_read_them():
    CustomerFactory(attributes={"value_tier": "high", "region": "north"})
    body = {"name": "North VIPs", "rules": {"value_tier": "high", "region": ["north"]}}
    assert as_("copywriter").post(f"{API}/segments/", body, format="json").status_code == 403
    response = as_("lead").post(f"{API}/segments/", body, format="json")
    assert response.status_code == 201, response.content
    assert (response.json()["slug"], response.json()["member_count"]) == ("north-vips", 1)
    assert as_("copywriter").get(f"{API}/segments/north-vips/").json()["name"] == "North VIPs"

    again = as_("lead").post(f"{API}/segments/", body, format="json")
    assert again.status_code == 400 and "already exists" in str(again.json()["slug"])
    changed = as_("lead").put(
        f"{API}/segments/north-vips/",
        {"name": "North VIPs", "rules": {"value_tier": "low"}},
        format="json",
    )
    assert changed.json()["member_count"] == 0
    assert as_("lead").delete(f"{API}/segments/north-vips/").status_code == 204
    assert as_("lead").get(f"{API}/segments/north-vips/").status_code == 404


def test_a_personal_attribute_in_rules_over_the_api_is_400_naming_rules():
    # The refusal is about the rules; before errors had one base class, a message-prefix
    # guess filed it under "name".
    response = as_("lead").post(
        f"{API}/segments/", {"name": "By mail", "rules": {"email": "x"}}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["rules"]
    assert "email is personal" in response.json()["rules"][0]
    assert not Segment.objects.filter(name="By mail").exists()


def test_more_rules_than_the_builder_can_show_are_refused_over_the_api():
    rules = {f"attribute_{n}": "x" for n in range(51)}
    response = as_("lead").post(f"{API}/segments/", {"name": "Many", "rules": rules}, format="json")
    assert response.status_code == 400
    assert response.json() == {"rules": ["Rules: at most 50, not 51"]}


def test_a_bad_rule_over_the_api_is_400_naming_rules():
    response = as_("lead").post(
        f"{API}/segments/", {"name": "X", "rules": {"age": {"from": 1}}}, format="json"
    )
    assert response.status_code == 400
    assert "a range has bounds" in response.json()["rules"][0]


def test_a_segment_with_copy_cannot_be_deleted():
    variant = VariantFactory()
    response = as_("lead").delete(f"{API}/segments/{variant.segment.slug}/")
    assert response.status_code == 409 and "review history" in response.json()["detail"]
    assert Segment.objects.filter(pk=variant.segment_id).exists()


def test_preview_counts_without_saving():
    CustomerFactory.create_batch(3, attributes={"value_tier": "high"})
    response = as_("lead").post(
        f"{API}/segments/preview/", {"rules": {"value_tier": "high"}}, format="json"
    )
    assert response.json()["member_count"] == 3
    assert not Segment.objects.exists()


# --- pages -------------------------------------------------------------------------------


@pytest.fixture
def lead(client):
    client.force_login(UserFactory(username="lead", groups=["marketing lead"]))
    return client


RULE_FIELDS = ("attribute", "op", "value", "upper")


def _rule_rows(*rows: tuple[str, str, str, str]) -> dict:
    """The builder's rows (attribute, operator, value, upper bound) as its formset
    posts them: rule-0-attribute, ..., and the management form."""
    data: dict = {"rule-TOTAL_FORMS": len(rows), "rule-INITIAL_FORMS": 0}
    for i, row in enumerate(rows):
        data |= {f"rule-{i}-{name}": v for name, v in zip(RULE_FIELDS, row, strict=True)}
    return data


def test_the_builder_creates_a_segment_from_rule_rows(lead):
    CustomerFactory(attributes={"value_tier": "high", "age": 30})
    CustomerFactory(attributes={"value_tier": "high", "age": 50})
    response = lead.post(
        reverse("review:segment-new"),
        {
            "name": "High, 25 to 40",
            **_rule_rows(
                ("value_tier", "is", "high", ""), ("age", "range", "25", "40"), ("", "is", "", "")
            ),
        },
    )
    assert response.status_code == 302
    segment = Segment.objects.get()
    assert segment.rules == {"value_tier": "high", "age": {"gte": 25, "lt": 40}}
    assert segment.member_count == 1
    page = lead.get(reverse("review:segments"))
    assert "age from 25 and under 40; value_tier is high" in page.content.decode()


def test_the_builder_shows_what_is_wrong_and_keeps_the_rows(lead):
    response = lead.post(
        reverse("review:segment-new"),
        {"name": "Odd", **_rule_rows(("age", "range", "", ""))},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Rule 1: give a lower bound, an upper bound or both" in page
    assert 'value="age"' in page
    assert not Segment.objects.exists()


def test_count_members_answers_the_htmx_partial(lead):
    CustomerFactory.create_batch(2, attributes={"region": "north", "value_tier": "low"})
    response = lead.post(
        reverse("review:segment-preview"),
        _rule_rows(("region", "one_of", "north, east", "")),
        headers={"HX-Request": "true"},
    )
    page = response.content.decode()
    assert response.status_code == 200 and page.lstrip().startswith('<div id="segment-preview"')
    assert "<b>2</b> customers where region is north or east" in page
    assert not Segment.objects.exists()


def test_every_combination_makes_segments_from_the_page(lead):
    CustomerFactory(attributes={"value_tier": "high"})
    CustomerFactory(attributes={"value_tier": "low"})
    response = lead.post(reverse("review:segments-generate"), {"by": ["value_tier"]})
    assert response.status_code == 302
    assert sorted(Segment.objects.values_list("slug", flat=True)) == ["high", "low"]


@pytest.mark.parametrize("url_name", ["review:segments", "review:segment-new"])
def test_segment_pages_are_for_leads(client, url_name):
    assert client.get(reverse(url_name)).status_code == 302  # to the login page
    client.force_login(UserFactory(groups=["copywriter"]))
    assert client.get(reverse(url_name)).status_code == 403


def test_editing_a_segment_through_its_page(lead):
    segment = SegmentFactory(slug="tier-high", rules={"value_tier": "high"})
    page = lead.get(reverse("review:segment", args=[segment.slug])).content.decode()
    assert 'value="value_tier"' in page
    response = lead.post(
        reverse("review:segment", args=[segment.slug]),
        {"name": "Low", **_rule_rows(("value_tier", "is", "low", ""))},
    )
    assert response.status_code == 302
    segment.refresh_from_db()
    assert (segment.name, segment.rules) == ("Low", {"value_tier": "low"})


# --- privacy -------------------------------------------------------------------------------


def test_the_privacy_page_shows_what_is_sent_and_what_is_withheld(lead):
    version = PromptVersionFactory()
    ProductFactory()
    CustomerFactory(
        external_id="CUST-777777",
        attributes={"value_tier": "high", "email": "ann@example.com", "region": "north"},
    )
    version.prompt.allowed_attributes = ["value_tier"]
    version.prompt.save()
    page = lead.get(reverse("review:privacy", args=[version.prompt.slug])).content.decode()
    assert "sent: on the allowlist" in page
    assert "withheld: personal: never sent" in page
    assert "withheld: not on the allowlist" in page
    sent = page.split("Exactly what is sent")[1]
    assert "&quot;value_tier&quot;: &quot;high&quot;" in sent
    assert "ann@example.com" not in sent and "north" not in sent
    # The id appears once, naming whose message it is, never inside the messages.
    assert sent.count("CUST-777777") == 2  # the sentence and the customer field's value
    assert "CUST-777777" not in sent.split("<pre")[1]


def test_saving_the_allowlist_and_policy_from_the_privacy_page(lead):
    version = PromptVersionFactory()
    url = reverse("review:privacy", args=[version.prompt.slug])
    lead.post(url, {"form": "allowlist", "allowed": ["region", "value_tier"]})
    lead.post(url, {"form": "policy", "review_policy": "sample", "review_sample_percent": "5"})
    version.prompt.refresh_from_db()
    assert version.prompt.allowed_attributes == ["region", "value_tier"]
    assert (version.prompt.review_policy, version.prompt.review_sample_percent) == ("sample", 5)
    response = lead.post(url, {"form": "allowlist", "allowed": ["email"]}, follow=True)
    assert "email is personal and never sent" in response.content.decode()


def test_a_lead_sets_the_prompts_languages_on_its_settings_page(lead):
    version = PromptVersionFactory()
    SegmentFactory(name="Mixed", summary={"language": {"en-us": 0.6, "de-ch": 0.3, "it": 0.1}})
    url = reverse("review:privacy", args=[version.prompt.slug])

    page = lead.get(url).content.decode()
    assert "en 60% (en-us 60%), de 30% (de-ch 30%), it 10%" in page
    assert "<td>en, de, it</td>" in page

    lead.post(url, {"form": "languages", "languages": "de-CH, fr", "language_min_share": "25"})
    version.prompt.refresh_from_db()
    assert (version.prompt.languages, version.prompt.language_min_share) == (["de-ch", "fr"], 25)
    assert "<td>de-ch, fr</td>" in lead.get(url).content.decode()

    refused = lead.post(url, {"form": "languages", "languages": "de, elvish"}, follow=True)
    assert "&#x27;elvish&#x27; is not a language tag" in refused.content.decode()
    version.prompt.refresh_from_db()
    assert version.prompt.languages == ["de-ch", "fr"]


def test_building_every_combination_never_overwrites_a_hand_made_segment():
    CustomerFactory(attributes={"value_tier": "high"})
    services.segment_save(slug="high", name="High spenders", rules={"value_tier": ["high"]})
    SegmentFactory(slug="low", name="Hand-made", rules={"region": "south"})
    CustomerFactory(attributes={"value_tier": "low"})
    with pytest.raises(services.SegmentError, match="'low' exists with rules on region"):
        services.segments_build(by=["value_tier"])
    assert Segment.objects.get(slug="low").rules == {"region": "south"}


def test_a_language_rule_resolves_customers_at_delivery():
    from review.delivery import segment_for

    SegmentFactory(slug="german", rules={"language": "de"})
    customer = CustomerFactory(language="de", attributes={})
    assert segment_for(customer.segment_attributes()).slug == "german"
