"""Language tags, shares by base language, the languages a prompt writes in, and
negotiation (generation.languages)."""

import pytest

from generation import languages
from generation.languages import LanguageTagError


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("en", "en"),
        ("de_CH", "de-ch"),
        ("EN-us", "en-us"),
        ("en-UK", "en-gb"),  # UK is not an ISO region; the registry maps it to GB
        ("iw", "he"),  # deprecated code replaced
        ("zh-Hant-TW", "zh-hant-tw"),
        ("fr-FR-x-shop", "fr-fr"),  # private use dropped: language, script, region kept
        (" pt-BR ", "pt-br"),
    ],
)
def test_a_tag_is_stored_as_its_canonical_lower_case_form(given, stored):
    assert languages.language_tag(given) == stored


@pytest.mark.parametrize("bad", ["", "  ", "english", "xx", "de-", "123", "und", "x" * 40, 5])
def test_a_malformed_or_unknown_tag_is_refused_naming_it(bad):
    with pytest.raises(LanguageTagError) as caught:
        languages.language_tag(bad)
    if isinstance(bad, str) and bad.strip() and len(bad) < 30:
        assert repr(bad.strip())[1:-1] in str(caught.value)


# The segment: 30% en-us, 18% de-de, 18% fr-fr, 15% de-ch, 10% es-es, 8% en-gb.
PANTS_MEDIUM = {
    "en-us": 0.30,
    "de-de": 0.18,
    "fr-fr": 0.18,
    "de-ch": 0.15,
    "es-es": 0.10,
    "en-gb": 0.08,
}


def test_shares_are_counted_by_base_language_with_their_tags():
    text = languages.shares_text(PANTS_MEDIUM)

    assert text == (
        "en 38% (en-us 30%, en-gb 8%), de 33% (de-de 18%, de-ch 15%), "
        "fr 18% (fr-fr 18%), es 10% (es-es 10%)"
    )
    assert str(languages.base_shares({"it": 0.05})[0]) == "it 5%"


def test_a_prompt_writes_in_every_base_language_that_reaches_the_share():
    assert languages.languages_for(PANTS_MEDIUM) == ["en", "de", "fr", "es"]
    assert languages.languages_for(PANTS_MEDIUM, min_share=0.2) == ["en", "de"]
    # None reaches it: the largest one still gets copy.
    assert languages.languages_for({"fr": 0.4, "de": 0.35, "it": 0.25}, min_share=0.5) == ["fr"]
    assert languages.languages_for({}, fallback="de-ch") == ["de"]


def test_an_explicit_list_is_taken_as_it_is_regional_tags_included():
    assert languages.languages_for(PANTS_MEDIUM, explicit=["de-ch", "de", "de"]) == [
        "de-ch",
        "de",
    ]


def test_accept_language_is_read_by_q_value_and_checked():
    assert languages.accept_language("fr;q=0.5, de-CH, de;q=0.9, *;q=0.1") == [
        "de-ch",
        "de",
        "fr",
        "*",
    ]
    assert languages.accept_language("en;q=0") == []
    assert languages.accept_language("") == []
    with pytest.raises(LanguageTagError, match="not a list of language tags"):
        languages.accept_language("de;q=high")
    with pytest.raises(LanguageTagError, match="'klingon'"):
        languages.accept_language("klingon")


@pytest.mark.parametrize(
    ("wanted", "available", "language", "reason"),
    [
        (["de-ch", "de"], ["en", "de-ch", "de"], "de-ch", "exact"),
        (["de-ch"], ["en", "de"], "de", "base_language"),
        (["de"], ["en", "de-ch"], "de-ch", "base_language"),
        (["it", "fr"], ["en", "fr"], "fr", "exact"),
        (["it"], ["en", "fr"], "en", "no_variant_in_language"),
        (["it"], ["fr"], None, "no_variant_in_language"),
        ([], ["en", "fr"], "en", "default"),
        (["*"], ["fr", "en"], "en", "default"),
    ],
)
def test_negotiation_takes_the_exact_tag_then_the_base_language_then_the_default(
    wanted, available, language, reason
):
    choice = languages.negotiate(wanted, available, default="en")

    assert (choice.language, choice.reason) == (language, reason)
