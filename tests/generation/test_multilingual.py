"""Language as a dimension of the work: tags at import, translated base copy, a slot
per language the prompt writes in, the estimate and regeneration by language."""

import pytest

from generation import checks, prompting, services
from generation.importers import ImportFileError, read_products
from generation.models import Customer, GenerationRun, Product, Prompt, Variant
from tests.factories import (
    BrandFactory,
    ProductFactory,
    PromptVersionFactory,
    SegmentFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

MAGENTO_HEADER = "sku,store_view_code,product_type,categories,name,description,visibility,price\n"


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


# --- imports ---------------------------------------------------------------------------


def test_customer_language_tags_are_stored_canonically_and_a_bad_one_is_a_named_bad_row(
    tmp_path,
):
    good = _write(tmp_path, "c.csv", "external_id,language\nC1,de_CH\nC2,EN-gb\nC3,\n")
    services.customers_import(path=good)
    assert dict(Customer.objects.values_list("external_id", "language")) == {
        "C1": "de-ch",
        "C2": "en-gb",
        "C3": "en",
    }

    bad = _write(tmp_path, "bad.csv", "external_id,language\nC4,fr\nC5,xx-yy\n")
    with pytest.raises(ImportFileError) as caught:
        services.customers_import(path=bad)
    assert "line 3" in str(caught.value) and "'xx-yy' is not a language tag" in str(caught.value)
    assert not Customer.objects.filter(external_id="C4").exists()  # nothing half-written


def test_our_csv_reads_translated_base_copy_from_language_columns(tmp_path):
    path = _write(
        tmp_path,
        "p.csv",
        "sku,name,description,description:de,name:de,description:fr_CH,color\n"
        "A1,Chaz Hoodie,A warm hoodie.,<p>Ein warmer Hoodie.</p>,Chaz Kapuzenpullover,"
        "Un sweat chaud.,red\n"
        "A2,Tee,A tee.,,,,blue\n",
    )

    services.products_import(path=path)

    [a1, a2] = read_products(path)
    assert a1.translations == {
        "de": {"name": "Chaz Kapuzenpullover", "description": "Ein warmer Hoodie."},
        "fr-ch": {"description": "Un sweat chaud."},
    }
    assert a1.attributes == {"color": "red"} and a2.translations == {}
    product = Product.objects.get(sku="A1")
    assert product.base_copy("de-at") == ("Chaz Kapuzenpullover", "Ein warmer Hoodie.", "de")
    assert product.base_copy("fr-ch")[1:] == ("Un sweat chaud.", "fr-ch")
    assert product.base_copy("it") == ("Chaz Hoodie", "A warm hoodie.", "")


@pytest.mark.parametrize(
    ("header", "row", "column", "message"),
    [
        ("description:klingon", "x", "description:klingon", "'klingon' is not a language tag"),
        ("name:de", "Name", "description:de", "a de name needs a de description"),
    ],
)
def test_a_bad_translation_column_is_named(tmp_path, header, row, column, message):
    path = _write(tmp_path, "p.csv", f"sku,name,description,{header}\nA1,N,D,{row}\n")

    with pytest.raises(ImportFileError) as caught:
        read_products(path)

    assert caught.value.column == column and message in caught.value.message


def test_magento_store_view_rows_become_translations(tmp_path):
    path = _write(
        tmp_path,
        "export.csv",
        MAGENTO_HEADER
        + 'MH01,,simple,Men/Tops,Chaz Hoodie,"<p>A warm hoodie.</p>","Catalog, Search",52\n'
        + 'MH01,de_ch,simple,,,"<p>Ein warmer Hoodie.</p>","Catalog, Search",\n'
        + 'MH01,german,simple,,Chaz Kapuzenpullover,"<p>Warm.</p>","Catalog, Search",\n'
        + 'MH01,fr,simple,,,"","Catalog, Search",\n',  # no translated description: none kept
    )

    [hoodie] = read_products(path, store_views={"german": "de"})

    assert hoodie.description == "A warm hoodie."
    assert hoodie.translations == {
        "de-ch": {"name": "Chaz Hoodie", "description": "Ein warmer Hoodie."},
        "de": {"name": "Chaz Kapuzenpullover", "description": "Warm."},
    }


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        (
            'MH01,german,simple,,,"x","Catalog, Search",\n',
            3,
            "store view 'german' names no language",
        ),
        ('MH02,de,simple,,,"x","Catalog, Search",\n', 3, "which has no default row"),
        (
            'MH01,de,simple,,,"x","Catalog, Search",\nMH01,DE,simple,,,"y","Catalog, Search",\n',
            4,
            "already has a de row on line 3",
        ),
    ],
)
def test_a_bad_store_view_row_is_named_and_nothing_is_read(tmp_path, rows, line, message):
    path = _write(
        tmp_path,
        "export.csv",
        MAGENTO_HEADER
        + 'MH01,,simple,Men/Tops,Chaz Hoodie,"A warm hoodie.","Catalog, Search",52\n'
        + rows,
    )

    with pytest.raises(ImportFileError) as caught:
        read_products(path)

    assert caught.value.line == line and message in caught.value.message


# --- slots per language ----------------------------------------------------------------

MIXED = {"en-us": 0.30, "de-de": 0.18, "fr-fr": 0.18, "de-ch": 0.15, "es-es": 0.10, "en-gb": 0.08}


@pytest.fixture
def mixed():
    version = PromptVersionFactory(prompt__brand=BrandFactory())
    segment = SegmentFactory(summary={"language": MIXED, "region": {"north": 1.0}})
    english = SegmentFactory(summary={"language": {"en": 1.0}})
    return version.prompt, segment, english


def test_a_segment_gets_a_slot_per_language_a_tenth_of_its_members_read(mixed):
    prompt, segment, english = mixed
    products = ProductFactory.create_batch(2)

    run = services.run_create(
        prompt=prompt, products=products, segments=[segment, english], check_endpoint=False
    )

    slots = sorted(Variant.objects.filter(run=run).values_list("segment_id", "language"))
    per_segment = {segment.pk: ["de", "en", "es", "fr"], english.pk: ["en"]}
    assert slots == sorted(
        (s, tag) for s, tags in per_segment.items() for tag in tags for _ in products
    )
    assert run.total == 10
    assert run.scope["languages"] == {segment.slug: ["en", "de", "fr", "es"], english.slug: ["en"]}


def test_a_regional_slot_exists_only_when_the_prompt_lists_it(mixed):
    prompt, segment, _english = mixed
    prompt.languages = ["de-ch", "de"]
    prompt.save(update_fields=["languages"])

    run = services.run_create(
        prompt=prompt, products=[ProductFactory()], segments=[segment], check_endpoint=False
    )

    assert sorted(Variant.objects.filter(run=run).values_list("language", flat=True)) == [
        "de",
        "de-ch",
    ]
    # A second run writes nothing twice: one variant per version, slot and language.
    again = services.run_create(
        prompt=prompt,
        products=list(Product.objects.all()),
        segments=[segment],
        check_endpoint=False,
    )
    assert again.total == 0


def test_the_share_threshold_is_the_prompts(mixed):
    prompt, segment, _english = mixed
    prompt.language_min_share = 20
    prompt.save(update_fields=["language_min_share"])

    assert prompt.segment_languages(segment) == ["en", "de"]


def test_the_estimate_multiplies_slots_by_languages_and_says_so(mixed):
    prompt, _segment, _english = mixed
    ProductFactory.create_batch(3)
    prompt.languages = [f"{tag}" for tag in ("en", "de", "fr", "es", "it", "nl", "pt", "pl")]
    prompt.save(update_fields=["languages"])

    estimate = services.run_estimate_for(prompt=prompt)

    assert estimate.slots == 3 * 2 * 8
    assert dict(estimate.languages) == {tag: 6 for tag in prompt.languages}
    assert "48 slots in 8 languages (en 6, de 6," in str(estimate)
    assert not GenerationRun.objects.exists()  # an estimate starts nothing


def test_render_writes_in_the_slots_language_from_its_base_copy(mixed):
    prompt, segment, _english = mixed
    version = prompt.current_version
    product = ProductFactory(translations={"de": {"description": "Ein warmer Hoodie."}})

    german = prompting.render(
        version=version, prompt=prompt, brand=prompt.brand, product=product, segment=segment,
        language="de-ch",
    )  # fmt: skip
    french = prompting.render(
        version=version, prompt=prompt, brand=prompt.brand, product=product, segment=segment,
        language="fr",
    )  # fmt: skip

    assert (
        german.language == "de-ch"
        and '"description": "Ein warmer Hoodie."' in german.messages[1]["content"]
    )
    assert '"description_language": "de"' in german.messages[1]["content"]
    assert '"description_language": "default"' in french.messages[1]["content"]
    assert "de 33% (de-de 18%, de-ch 15%)" in prompting.summary_text(segment.summary)


def test_regeneration_covers_each_language_slot_that_had_a_variant(mixed):
    prompt, segment, _english = mixed
    product = ProductFactory()
    old = prompt.current_version
    for tag in ("en", "de"):
        VariantFactory(prompt_version=old, product=product, segment=segment, language=tag)
    services.prompt_version_create(prompt=prompt, template=old.template, model=old.model, note="v2")

    run = GenerationRun.objects.get(prompt_version=prompt.current_version)

    assert sorted(Variant.objects.filter(run=run).values_list("language", flat=True)) == [
        "de",
        "en",
    ]
    assert set(Variant.objects.filter(prompt_version=old).values_list("status", flat=True)) == {
        Variant.Status.SUPERSEDED
    }


def test_a_prompt_set_to_forty_languages_shows_the_slot_count_before_anything_starts(mixed):
    prompt, _segment, _english = mixed
    ProductFactory.create_batch(5)
    tags = ["en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "da", "fi", "nb", "cs", "sk",
            "hu", "ro", "bg", "el", "tr", "ru", "uk", "ar", "he", "hi", "th", "vi", "id", "ms",
            "ja", "ko", "zh", "lt", "lv", "et", "sl", "hr", "sr", "ca", "eu", "gl"]  # fmt: skip
    prompt.languages = tags
    prompt.save(update_fields=["languages"])

    estimate = services.run_estimate_for(prompt=prompt)

    assert len(tags) == 40 and estimate.slots == 5 * 2 * 40
    assert "400 slots in 40 languages" in str(estimate) and "+28 more" in str(estimate)
    assert Prompt.objects.get(pk=prompt.pk).languages == tags


# --- checks per language ---------------------------------------------------------------


def test_banned_phrases_can_be_listed_per_language(mixed):
    prompt, _segment, _english = mixed
    brand = prompt.brand

    services.brand_update(
        brand=brand,
        voice="Plain and true.",
        banned_phrases=["miracle", "[de] Wunder", "[de-CH] grüezi", "[fr] miracle"],
        protected_terms=[],
        user=None,
    )

    brand.refresh_from_db()
    assert brand.banned_phrases == ["miracle"]
    assert brand.banned_phrases_by_language == {
        "de": ["Wunder"],
        "de-ch": ["grüezi"],
        "fr": ["miracle"],
    }
    assert brand.banned_for("de-ch") == ["miracle", "Wunder", "grüezi"]
    assert brand.banned_for("de-de") == ["miracle", "Wunder"]
    assert brand.banned_for("en") == ["miracle"]
    german = checks.check_banned_phrases("Ein Wunder von Schuh", phrases=brand.banned_for("de"))
    english = checks.check_banned_phrases("Ein Wunder von Schuh", phrases=brand.banned_for("en"))
    assert (german.passed, english.passed) == (False, True)


def test_a_banned_phrase_for_an_unknown_language_is_refused_naming_it(mixed):
    prompt, _segment, _english = mixed

    with pytest.raises(services.BrandError, match="'klingon' is not a language tag"):
        services.brand_update(
            brand=prompt.brand, voice="v", banned_phrases=["[klingon] Qapla"], protected_terms=[],
            user=None,
        )  # fmt: skip


def test_the_length_limit_counts_characters_as_written():
    composed = "Café " * 4  # 20 characters, é as one code point
    decomposed = "Cafe\u0301 " * 4  # the same text, é as e + a combining accent

    assert checks.check_length(composed, max_length=20).passed
    assert checks.check_length(decomposed, max_length=20).passed
    assert checks.check_length(decomposed, max_length=20).message == "20 of 20 characters"


def test_the_estimate_counts_per_language_only_the_slots_still_to_write(mixed):
    prompt, segment, _english = mixed
    first, _second = ProductFactory.create_batch(2)
    VariantFactory(
        prompt_version=prompt.current_version, product=first, segment=segment, language="de"
    )

    estimate = services.run_estimate_for(prompt=prompt)

    # segment: en, de, fr, es; english: en; for two products, less first's de.
    assert estimate.slots == 2 * 5 - 1
    assert dict(estimate.languages) == {"en": 4, "de": 1, "fr": 2, "es": 2}
    assert sum(n for _tag, n in estimate.languages) == estimate.slots
