"""The queue by language: the filter, near-duplicates within one language, and the
focus view's base copy in the variant's language."""

import pytest
from django.urls import reverse

from generation.models import Variant
from review import queue as q
from review.forms import QueueFilters
from tests.factories import (
    ProductFactory,
    PromptVersionFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

QUEUE = reverse("review:queue")


@pytest.fixture
def copywriter(client):
    client.force_login(UserFactory(username="cw", groups=["copywriter"]))


@pytest.fixture
def slots():
    """One product and segment with variants in review in en, de and de-ch."""
    version = PromptVersionFactory()
    product = ProductFactory(
        description="A warm hoodie.",
        translations={"de": {"description": "Ein warmer Kapuzenpullover."}},
    )
    segment = SegmentFactory(
        summary={"language": {"en": 0.5, "de-de": 0.3, "de-ch": 0.2}},
    )
    return {
        tag: VariantFactory(
            prompt_version=version, product=product, segment=segment, language=tag, text=text
        )
        for tag, text in (
            ("en", "Warm and ready for the trail."),
            ("de", "Warm und bereit für den Trail."),
            ("de-ch", "Warm und bereit für den Trail!"),
        )
    }


def test_a_base_language_filter_takes_its_regional_tags_and_a_regional_one_only_itself(slots):
    def shown(language: str) -> set[str]:
        values = QueueFilters({"language": language}).values()
        return set(q.variants_filtered(values).values_list("language", flat=True))

    assert shown("de") == {"de", "de-ch"}
    assert shown("de-CH") == {"de-ch"}
    assert shown("") == {"en", "de", "de-ch"}


def test_a_malformed_language_filter_is_reported_and_left_out(client, copywriter, slots):
    response = client.get(QUEUE, {"language": "klingon"})

    assert response.status_code == 200
    body = response.content.decode()
    assert "&#x27;klingon&#x27; is not a language tag" in body
    assert all(v.text in body for v in slots.values())


def test_the_queue_offers_base_languages_beside_regional_tags(client, copywriter, slots):
    body = client.get(QUEUE).content.decode()

    for tag in ("<option>de</option>", "<option>de-ch</option>", "<option>de-de</option>"):
        assert tag in body


def test_near_duplicates_are_grouped_within_one_language_only(slots):
    variants = list(Variant.objects.filter(pk__in=[v.pk for v in slots.values()]).order_by("pk"))
    twin = VariantFactory(
        prompt_version=slots["de"].prompt_version,
        prompt=slots["de"].prompt,
        product=slots["de"].product,
        segment=SegmentFactory(),
        language="de",
        text="Warm und bereit für den Trail.",
    )

    entries = q.queue_entries([*variants, twin])

    groups = [sorted(v.language for v in e.variants) for e in entries]
    # de-ch's near-identical copy stays apart from de's: two languages, two slots.
    assert sorted(groups) == [["de", "de"], ["de-ch"], ["en"]]


def test_the_focus_view_shows_the_base_copy_in_the_variants_language_or_says_it_had_none(
    client, copywriter, slots
):
    german = client.get(reverse("review:variant", args=[slots["de-ch"].pk])).content.decode()
    english = client.get(reverse("review:variant", args=[slots["en"].pk])).content.decode()
    french = VariantFactory(
        prompt_version=slots["en"].prompt_version,
        product=slots["en"].product,
        segment=slots["en"].segment,
        language="fr",
        text="Chaud.",
    )
    fallback = client.get(reverse("review:variant", args=[french.pk])).content.decode()

    assert "Base copy in de" in german and "Ein warmer Kapuzenpullover." in german
    assert "written from the default-language base copy" not in german
    assert "No fr base copy in the catalog" in fallback and "A warm hoodie." in fallback
    # English is the prompt's default language: its base copy is the default one.
    assert "A warm hoodie." in english and "base copy in the catalog" not in english


# --- a reviewer's own languages ---------------------------------------------------------


def _reviewer(client, languages: list[str]):
    from review.models import ReviewerProfile

    user = UserFactory(username="de-reviewer", groups=["copywriter"])
    ReviewerProfile.objects.create(user=user, languages=languages)
    client.force_login(user)
    return user


def test_a_reviewers_default_queue_shows_their_languages_first(client, slots):
    _reviewer(client, ["de"])

    body = client.get(QUEUE).content.decode()
    everything = client.get(QUEUE, {"language": "all"}).content.decode()

    assert slots["de"].text in body and slots["de-ch"].text in body
    assert slots["en"].text not in body
    assert "Showing your languages: de" in body
    assert "language=all" in body  # the link to every language
    assert all(v.text in everything for v in slots.values())
    # "every language" stays chosen: the select says so, and links keep it.
    assert '<option value="all" selected>every language</option>' in everything
    assert "Showing your languages" not in everything


def test_a_reviewer_with_a_regional_tag_reviews_the_whole_language(client, slots):
    _reviewer(client, ["de-AT"])

    body = client.get(QUEUE).content.decode()

    assert slots["de"].text in body and slots["de-ch"].text in body
    assert slots["en"].text not in body


def test_with_nothing_left_in_their_languages_the_queue_shows_every_language(client, slots):
    _reviewer(client, ["de"])
    Variant.objects.filter(language__startswith="de").update(status=Variant.Status.REJECTED)

    body = client.get(QUEUE).content.decode()

    assert slots["en"].text in body
    assert "Nothing left to review in your languages (de)" in body


def test_asking_for_mine_keeps_to_them_even_when_none_is_left(client, slots):
    _reviewer(client, ["fr"])

    body = client.get(QUEUE, {"language": "mine"}).content.decode()

    assert not any(v.text in body for v in slots.values())


def test_a_reviewer_without_languages_sees_every_language(client, copywriter, slots):
    body = client.get(QUEUE).content.decode()

    assert all(v.text in body for v in slots.values())
    assert "Showing your languages" not in body


def test_a_reviewer_names_their_languages_on_their_profile(client):
    from review.models import ReviewerProfile

    user = UserFactory(username="multi", groups=["copywriter"])
    client.force_login(user)
    url = reverse("review:profile")

    bad = client.post(url, {"languages": "de, klingon"})
    good = client.post(url, {"languages": "DE-ch; fr , de-CH"})

    assert bad.status_code == 400
    assert "&#x27;klingon&#x27; is not a language tag" in bad.content.decode()
    assert good.status_code == 200 and "Saved." in good.content.decode()
    assert ReviewerProfile.objects.get(user=user).languages == ["de-ch", "fr"]
    assert 'value="de-ch, fr"' in client.get(url).content.decode()
