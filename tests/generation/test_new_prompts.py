"""Brands and prompts made from scratch: brand_create, a brand's new name,
prompt_create (from a starter) and prompt_duplicate (generation/services/prompts.py)."""

import pytest

from generation import services, starters
from generation.models import Brand, Prompt, PromptVersion
from generation.services import prompts as prompt_services
from tests.factories import BrandFactory, PromptVersionFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db


def _counts() -> tuple[int, int, int]:
    return Brand.objects.count(), Prompt.objects.count(), PromptVersion.objects.count()


# --- brands ---------------------------------------------------------------------------------


def test_brand_create_cleans_its_lists_as_an_update_does():
    brand = prompt_services.brand_create(
        name="  Tidewater  ",
        voice=" Calm and exact. ",
        banned_phrases=["miracle", "Miracle", "", "[de] Wunder"],
        protected_terms=["Tidewater", "Tidewater"],
        user=UserFactory(),
    )
    brand.refresh_from_db()
    assert (brand.name, brand.voice) == ("Tidewater", "Calm and exact.")
    assert brand.banned_phrases == ["miracle"]
    assert brand.banned_phrases_by_language == {"de": ["Wunder"]}
    assert brand.protected_terms == ["Tidewater"]


@pytest.mark.parametrize(
    ("name", "voice", "field", "message"),
    [
        ("   ", "Calm.", "name", "needs a name"),
        ("northwind athletics", "Calm.", "name", "There is a brand 'Northwind Athletics'"),
        ("x" * 121, "Calm.", "name", "at most 120"),
        ("Tidewater", " \n ", "voice", "voice cannot be empty"),
    ],
)
def test_brand_create_refuses_naming_the_field_and_writes_nothing(name, voice, field, message):
    BrandFactory()
    before = _counts()
    with pytest.raises(services.BrandError, match=message) as refused:
        prompt_services.brand_create(
            name=name, voice=voice, banned_phrases=[], protected_terms=[], user=None
        )
    assert refused.value.field == field
    assert _counts() == before


def test_a_bad_word_list_names_its_field():
    with pytest.raises(services.BrandError) as banned:
        prompt_services.brand_create(
            name="T", voice="V", banned_phrases=["[xx-!!] a"], protected_terms=[], user=None
        )
    with pytest.raises(services.BrandError) as protected:
        prompt_services.brand_create(
            name="T", voice="V", banned_phrases=["mile"], protected_terms=["Magic Mile"], user=None
        )
    assert (banned.value.field, protected.value.field) == ("banned_phrases", "protected_terms")
    assert not Brand.objects.filter(name="T").exists()


def test_a_brand_is_renamed_but_not_to_another_brands_name():
    brand, other = BrandFactory(), BrandFactory(name="Tidewater")
    services.brand_update(
        brand=brand, name="Northwind", voice="V", banned_phrases=[], protected_terms=[], user=None
    )
    brand.refresh_from_db()
    assert brand.name == "Northwind"
    with pytest.raises(services.BrandError, match="There is a brand 'Tidewater'") as refused:
        services.brand_update(
            brand=brand, name="TIDEWATER", voice="W", banned_phrases=[], protected_terms=[],
            user=None,
        )  # fmt: skip
    assert refused.value.field == "name"
    brand.refresh_from_db()
    assert (brand.name, brand.voice, other.name) == ("Northwind", "V", "Tidewater")


# --- prompt_create ----------------------------------------------------------------------------


def _create(**changes) -> Prompt:
    starter = starters.starter("sms")
    fields = {
        "name": "Spring SMS",
        "slug": "spring-sms",
        "brand": BrandFactory(),
        "channel": starter.channel,
        "max_length": starter.max_length,
        "model": "offline-writer-1",
        "template": starter.template,
        "languages": ["de_CH", "en", "de-ch"],
        "note": "From the starter 'SMS'",
    } | changes
    return prompt_services.prompt_create(**fields)


def test_a_prompt_is_created_with_its_first_version_and_nothing_to_write(offline_writer):
    lead = UserFactory()
    prompt = _create(user=lead)
    assert (prompt.slug, prompt.name, prompt.channel, prompt.max_length) == (
        "spring-sms", "Spring SMS", "sms", 160
    )  # fmt: skip
    assert prompt.languages == ["de-ch", "en"]
    (version,) = prompt.versions.all()
    assert (version.number, version.template, version.model, version.author) == (
        1, starters.starter("sms").template, "offline-writer-1", lead
    )  # fmt: skip
    assert version.note == "From the starter 'SMS'" and version.examples == []
    assert not version.runs.exists()


def test_an_empty_slug_is_made_from_the_name(offline_writer):
    assert _create(name="Spring SMS — DE", slug="").slug == "spring-sms-de"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"name": "  "}, "name", "needs a name"),
        ({"slug": "pdp"}, "slug", "There is a prompt with the slug 'pdp' already"),
        ({"slug": "new"}, "slug", "reserved"),
        ({"slug": "spring sms!"}, "slug", "is not a slug"),
        ({"name": "!!!", "slug": ""}, "slug", "no letters or digits"),
        ({"channel": "fax"}, "channel", "not a channel"),
        ({"max_length": 0}, "max_length", "1 to 10,000"),
        ({"languages": ["en", "xx-!!"]}, "languages", "'xx-!!' is not a language tag"),
        ({"model": " "}, "model", "Name the model"),
        ({"template": "Write for {customer_email}."}, "template", "Unknown placeholder"),
        ({"template": "   "}, "template", "The template is empty"),
        ({"template": "{max_length:>999}"}, "template", "format spec"),
    ],
)
def test_prompt_create_refuses_naming_the_field_and_writes_nothing(
    offline_writer, changes, field, message
):
    PromptVersionFactory(prompt__slug="pdp")
    before = _counts()
    with pytest.raises(services.StudioError, match=message) as refused:
        _create(**changes)
    assert refused.value.field == field
    assert _counts() == before
    # Refused before the endpoint was asked about the model.
    assert offline_writer.requests == []


def test_a_model_the_endpoint_lacks_is_refused_before_anything_is_written(offline_writer):
    brand = BrandFactory()
    before = _counts()
    with pytest.raises(services.RunError, match="has no model 'gpt-nonexistent'"):
        _create(model="gpt-nonexistent", brand=brand)
    assert _counts() == before


# --- prompt_duplicate ------------------------------------------------------------------------


def test_a_copy_takes_the_settings_and_the_current_version_but_no_variants():
    source = PromptVersionFactory(number=1, template="Old {product_name}.").prompt
    source.languages, source.review_policy, source.holdout_percent = ["de"], "sample", 5
    source.allowed_attributes, source.max_length, source.channel = ["value_tier"], 300, "email"
    source.save()
    current = PromptVersionFactory(
        prompt=source, number=2, template="New {product_name}.", temperature=0.3,
        examples=["Loved copy."],
    )  # fmt: skip
    VariantFactory(prompt_version=current)
    lead = UserFactory()

    copy = prompt_services.prompt_duplicate(prompt=source, name="PDP B", slug="pdp-b", user=lead)

    for field in prompt_services.COPIED_SETTINGS:
        assert getattr(copy, field) == getattr(source, field), field
    (version,) = copy.versions.all()
    assert (version.number, version.template, version.temperature, version.examples) == (
        1, "New {product_name}.", 0.3, ["Loved copy."]
    )  # fmt: skip
    assert (version.author, version.note) == (lead, f"Copied from {current}")
    assert not copy.variants.exists() and source.variants.count() == 1


def test_a_copy_under_a_slug_in_use_is_refused_and_nothing_is_written():
    source = PromptVersionFactory().prompt
    before = _counts()
    with pytest.raises(services.StudioError, match="already") as refused:
        prompt_services.prompt_duplicate(prompt=source, name="Copy", slug=source.slug)
    assert refused.value.field == "slug"
    assert _counts() == before
