"""Personal attributes by their names' words and by their values, never in segment
rules, names or summaries (issue 15, items 1, 2 and 14)."""

from __future__ import annotations

import json

import pytest

from generation import checks, prompting, services
from generation.models import PersonalAttribute, Segment
from tests.factories import CustomerFactory, ProductFactory, PromptVersionFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "name",
    [
        "email", "email_address", "EmailAddress", "E-Mail", "e_mail", "phone_number",
        "mobilePhone", "surname", "full_name", "first name", "dob", "Date of Birth",
        "birth_date", "ip_address", "street_address", "postal_code", "zip", "loyalty_id",
        "customer_id", "name", "username",
    ],
)  # fmt: skip
def test_personal_attributes_are_recognised_by_their_words(name):
    assert checks.is_personal_attribute(name)
    assert name in prompting.personal_attributes()


@pytest.mark.parametrize(
    "name",
    [
        "value_tier", "preferred_subcategory", "region", "city", "age_band", "language",
        "discount_sensitivity", "product_name", "segment_id", "country", "lifetime_value",
    ],
)  # fmt: skip
def test_ordinary_attributes_are_not_personal(name):
    assert not checks.is_personal_attribute(name)


def test_an_import_marks_columns_whose_values_are_emails_or_phones_personal(tmp_path):
    path = tmp_path / "customers.jsonl"
    rows = [
        {"external_id": f"C{i}", "value_tier": "high", "contact": f"p{i}@example.com",
         "hotline": f"+49 30 1234 56{i:02d}", "region": "south"}
        for i in range(12)
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    Segment.objects.create(slug="high", name="High", rules={"value_tier": "high"})

    result = services.customers_import(path=path)

    assert result.personal == {
        "contact": "values look like e-mail addresses",
        "hotline": "values look like phone numbers",
    }
    assert "Marked personal" in str(result) and "contact (values look like e-mail" in str(result)
    assert set(PersonalAttribute.objects.values_list("name", flat=True)) == {"contact", "hotline"}
    personal = prompting.personal_attributes()
    assert "contact" in personal and "hotline" in personal and "region" not in personal
    # The summary holds no personal attribute, of either kind.
    summary = Segment.objects.get(slug="high").summary
    assert "region" in summary and "contact" not in summary and "hotline" not in summary


def test_summaries_never_hold_personal_attributes_even_before_a_recount():
    for i in range(3):
        CustomerFactory(attributes={"value_tier": "high", "email": f"a{i}@example.com"})
    segment = services.segment_save(name="High", rules={"value_tier": "high"})
    assert "email" not in segment.summary and segment.member_count == 3


@pytest.mark.parametrize("rules", [{"email": "a@example.com"}, {"phone_number": "+49301234"}])
def test_segments_refuse_personal_attributes_in_rules(rules):
    with pytest.raises(services.SegmentError, match="personal"):
        services.segment_save(name="By contact", rules=rules)
    with pytest.raises(services.SegmentError, match="personal"):
        services.segment_preview(rules=rules)


def test_segments_are_not_built_by_a_personal_attribute():
    CustomerFactory(attributes={"email": "a@example.com"})
    with pytest.raises(services.SegmentError, match="email is personal"):
        services.segments_build(by=["email"])


def test_a_segment_name_built_from_values_the_allowlist_keeps_out_is_not_sent():
    """segments_build names a segment after its values: with an allowlist of
    ["value_tier"], "south × high" would still send the region."""
    CustomerFactory(attributes={"region": "south", "value_tier": "high"})
    [segment] = services.segments_build(by=["region", "value_tier"])
    version = PromptVersionFactory(template="For {segment_name}: {product_name}.")
    prompt = version.prompt
    prompt.allowed_attributes = ["value_tier"]
    prompt.save()

    rendered = prompting.render(
        version=version, prompt=prompt, brand=prompt.brand, product=ProductFactory(),
        segment=segment,
    )  # fmt: skip
    sent = json.dumps(rendered.messages)

    assert segment.name == "south × high"
    assert "south" not in sent
    assert f"audience segment {segment.pk}" in sent
    data = rendered.messages[1]["content"].split("<data>\n", 1)[1].split("\n</data>", 1)[0]
    assert json.loads(data)["audience"]["rules"] == {"value_tier": "high"}
    # Allowed, the name goes as it is.
    prompt.allowed_attributes = []
    prompt.save()
    rendered = prompting.render(
        version=version, prompt=prompt, brand=prompt.brand, product=ProductFactory(),
        segment=segment,
    )  # fmt: skip
    assert "south × high" in json.dumps(rendered.messages, ensure_ascii=False)
