"""The services behind the prompt studio and the brand voice editor."""

import re
from decimal import Decimal

import pytest

from generation import prompting, services
from generation.models import GenerationRun, PromptVersion, Variant
from generation.prompting import PromptTemplateError
from tests.conftest import configure_writer, slot_completions
from tests.factories import (
    BrandFactory,
    ProductFactory,
    PromptVersionFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

TEMPLATE = "Write about {product_name} for {segment_name} in {language}."


@pytest.fixture(autouse=True)
def patient_enough(settings):
    settings.LLM_MAX_ATTEMPTS = 2
    settings.LLM_BACKOFF_MAX_SECONDS = 0.05


def _completions(server) -> list[dict]:
    return slot_completions(server)


def _counts() -> tuple[int, int, int]:
    return Variant.objects.count(), PromptVersion.objects.count(), GenerationRun.objects.count()


# --- brand_update ------------------------------------------------------------------------


def test_brand_update_trims_lines_and_drops_empty_and_repeated_ones():
    brand = BrandFactory()
    services.brand_update(
        brand=brand,
        voice="  We speak plainly.  \n",
        banned_phrases=["  miracle ", "", "Miracle", "best in the world", "   "],
        protected_terms=["Northwind", "Northwind", "northwind ", "AeroStride"],
        user=UserFactory(),
    )
    brand.refresh_from_db()
    assert brand.voice == "We speak plainly."
    # The banned check ignores case, so "Miracle" repeats "miracle"; protected terms
    # are verbatim, so "northwind" is another term.
    assert brand.banned_phrases == ["miracle", "best in the world"]
    assert brand.protected_terms == ["Northwind", "northwind", "AeroStride"]


def test_brand_update_refuses_an_empty_voice_and_writes_nothing():
    brand = BrandFactory()
    with pytest.raises(services.BrandError, match="voice cannot be empty"):
        services.brand_update(
            brand=brand, voice=" \n ", banned_phrases=["new"], protected_terms=[], user=None
        )
    brand.refresh_from_db()
    assert brand.voice.startswith("We speak plainly") and "new" not in brand.banned_phrases


def test_brand_update_refuses_a_protected_term_that_contains_a_banned_phrase():
    brand = BrandFactory()
    with pytest.raises(services.BrandError, match="'Miracle Mile'"):
        services.brand_update(
            brand=brand,
            voice="Plain.",
            banned_phrases=["miracle"],
            protected_terms=["Miracle Mile", "Northwind"],
            user=None,
        )
    brand.refresh_from_db()
    assert brand.voice != "Plain."


# --- prompt_preview ---------------------------------------------------------------------


def test_preview_renders_exactly_what_a_saved_version_would_send():
    version = PromptVersionFactory(template=TEMPLATE)
    product, segment = ProductFactory(), SegmentFactory()

    rendered = services.prompt_preview(
        prompt=version.prompt, template=TEMPLATE, product=product, segment=segment
    )

    expected = prompting.render(
        version=version,
        prompt=version.prompt,
        brand=version.prompt.brand,
        product=product,
        segment=segment,
    )
    assert rendered.messages == expected.messages
    assert rendered.messages[0]["content"].startswith(version.prompt.brand.voice)
    assert PromptVersion.objects.count() == 1


def test_preview_names_the_unknown_placeholder():
    version = PromptVersionFactory()
    with pytest.raises(PromptTemplateError, match=re.escape("Unknown placeholder '{audience}'")):
        services.prompt_preview(
            prompt=version.prompt,
            template="Write for {audience}",
            product=ProductFactory(),
            segment=SegmentFactory(),
        )


def test_preview_refuses_a_format_the_value_cannot_take():
    # Format specs are refused outright (issue 15): placeholders are bare names.
    version = PromptVersionFactory()
    with pytest.raises(PromptTemplateError, match="has a format spec"):
        services.prompt_preview(
            prompt=version.prompt,
            template="At most {max_length:s} characters",
            product=ProductFactory(),
            segment=SegmentFactory(),
        )


# --- prompt_try ----------------------------------------------------------------------------


def test_trying_writes_copy_through_the_endpoint_and_saves_nothing(offline_writer):
    version = PromptVersionFactory()
    VariantFactory(prompt_version=version)
    pairs = [(ProductFactory(), SegmentFactory()) for _ in range(3)]
    before = _counts()

    results = services.prompt_try(
        prompt=version.prompt,
        template="TRY-MARKER " + TEMPLATE,
        model="offline-writer-1",
        temperature=0.3,
        pairs=pairs,
    )

    assert _counts() == before
    sent = _completions(offline_writer)
    assert len(sent) == 3
    assert all("TRY-MARKER" in r["body"]["messages"][1]["content"] for r in sent)
    assert {r["body"]["temperature"] for r in sent} == {0.3}
    assert [(r.product, r.segment) for r in results] == pairs
    for result in results:
        assert not result.error
        assert result.copy and result.rationale and result.checks
        assert result.prompt_tokens > 0 and result.completion_tokens > 0
        assert result.latency_ms is not None and result.cost > 0


def test_trying_more_than_five_samples_is_refused_before_any_call(offline_writer):
    version = PromptVersionFactory()
    pairs = [(ProductFactory(), SegmentFactory()) for _ in range(6)]
    with pytest.raises(services.StudioError, match="at most 5 samples"):
        services.prompt_try(
            prompt=version.prompt, template=TEMPLATE, model="m", temperature=0.7, pairs=pairs
        )
    assert offline_writer.requests == []


def test_trying_without_samples_picks_five_different_ones(offline_writer):
    version = PromptVersionFactory()
    products = ProductFactory.create_batch(6)
    segments = SegmentFactory.create_batch(6)
    for product, segment in zip(products, segments, strict=True):
        VariantFactory(prompt_version=version, product=product, segment=segment)

    results = services.prompt_try(
        prompt=version.prompt,
        template=TEMPLATE,
        model="offline-writer-1",
        temperature=0.7,
        pairs=[],
    )

    assert len(results) == 5 == len(_completions(offline_writer))
    assert len({r.product.pk for r in results}) == 5 == len({r.segment.pk for r in results})


def test_sample_pairs_cover_every_product_and_segment_before_repeating():
    ProductFactory.create_batch(2)
    SegmentFactory.create_batch(3)
    pairs = services.prompt_sample_pairs(prompt=PromptVersionFactory().prompt)
    assert len(pairs) == 5 == len(set(pairs))
    assert {p.pk for p, _ in pairs[:2]} == {p.pk for p, _ in pairs}


def test_trying_against_an_unreachable_endpoint_names_it(settings):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    version = PromptVersionFactory()
    with pytest.raises(services.RunError, match=re.escape("127.0.0.1:9")):
        services.prompt_try(
            prompt=version.prompt,
            template=TEMPLATE,
            model="offline-writer-1",
            temperature=0.7,
            pairs=[(ProductFactory(), SegmentFactory())],
        )


def test_a_sample_the_endpoint_fails_shows_the_error_and_the_others_still_come(offline_writer):
    version = PromptVersionFactory()
    services.endpoint_check(model="offline-writer-1")  # probed now, remembered for the try
    configure_writer(offline_writer, fail_first_n=2)  # both attempts of one sample

    results = services.prompt_try(
        prompt=version.prompt,
        template=TEMPLATE,
        model="offline-writer-1",
        temperature=0.7,
        pairs=[(ProductFactory(), SegmentFactory())],
    )

    assert "Gave up after 2 attempts: HTTP 503" in results[0].error
    assert not results[0].copy


# --- prompt_impact, prompt_save, prompt_rollback -----------------------------------------


@pytest.fixture
def prompt_with_variants():
    """v1 over 2 products × 2 segments: (p1, s1) in review, (p1, s2) published,
    (p2, s1) queued, and no variant for (p2, s2)."""
    v1 = PromptVersionFactory(template=TEMPLATE, number=1)
    p1, p2 = ProductFactory.create_batch(2)
    s1, s2 = SegmentFactory.create_batch(2)
    VariantFactory(prompt_version=v1, product=p1, segment=s1, status="in_review")
    VariantFactory(prompt_version=v1, product=p1, segment=s2, status="published")
    VariantFactory(prompt_version=v1, product=p2, segment=s1, status="queued")
    return v1.prompt


def test_impact_counts_what_a_save_would_regenerate_supersede_and_keep(prompt_with_variants):
    prompt = prompt_with_variants

    impact = services.prompt_impact(
        prompt=prompt, model="offline-writer-1", template="Shorter: " + TEMPLATE
    )

    assert impact.number == 2
    assert (impact.products, impact.segments, impact.slots, impact.existing_slots) == (2, 2, 3, 3)
    assert (impact.in_review, impact.queued, impact.superseded) == (1, 1, 2)
    assert impact.published == 1
    assert impact.estimate.slots == 3 and impact.estimate.prompt_tokens > 0
    assert impact.estimate.cost > Decimal(0)
    assert impact.unchanged_since is None
    assert PromptVersion.objects.count() == 1 and not GenerationRun.objects.exists()


def test_impact_says_when_nothing_changed(prompt_with_variants):
    impact = services.prompt_impact(
        prompt=prompt_with_variants, model="offline-writer-1", template=TEMPLATE
    )
    assert impact.unchanged_since == 1


def test_saving_makes_the_version_and_the_run_the_impact_announced(prompt_with_variants):
    prompt = prompt_with_variants
    template = "Shorter: " + TEMPLATE
    impact = services.prompt_impact(prompt=prompt, model="offline-writer-1", template=template)
    lead = UserFactory()

    version = services.prompt_save(
        prompt=prompt,
        template=template,
        model="offline-writer-1",
        temperature=0.7,
        note="  Shorter  ",
        user=lead,
    )

    assert (version.number, version.note, version.author) == (2, "Shorter", lead)
    run = version.runs.get()
    assert run.total == impact.slots == 3  # exactly the slots that had a variant
    statuses = Variant.objects.filter(prompt_version__number=1).values_list("status", flat=True)
    assert sorted(statuses) == ["published", "superseded", "superseded"]


def test_saving_an_unchanged_edit_is_refused(prompt_with_variants):
    with pytest.raises(services.StudioError, match="Nothing changed since v1"):
        services.prompt_save(
            prompt=prompt_with_variants,
            template=TEMPLATE,
            model="offline-writer-1",
            temperature=0.7,
        )
    assert PromptVersion.objects.count() == 1


def test_saving_with_a_model_the_endpoint_lacks_is_refused(offline_writer, prompt_with_variants):
    with pytest.raises(services.RunError, match="no model 'gpt-nowhere'"):
        services.prompt_save(
            prompt=prompt_with_variants, template=TEMPLATE, model="gpt-nowhere", temperature=0.7
        )
    assert PromptVersion.objects.count() == 1 and not GenerationRun.objects.exists()


def test_rollback_saves_the_old_version_again_as_the_newest(prompt_with_variants):
    prompt = prompt_with_variants
    v1 = prompt.current_version
    services.prompt_save(
        prompt=prompt, template="Other: " + TEMPLATE, model=v1.model, temperature=1.1
    )
    lead = UserFactory()

    v3 = services.prompt_rollback(prompt=prompt, version=v1, user=lead)

    assert v3.number == 3 and v3.note == "Rollback to v1" and v3.author == lead
    assert (v3.template, v3.model, v3.temperature) == (v1.template, v1.model, v1.temperature)
    assert v3.runs.get().total == 3
    v1.refresh_from_db()
    assert v1.number == 1  # versions are never edited


def test_rolling_back_to_the_current_version_is_refused(prompt_with_variants):
    prompt = prompt_with_variants
    with pytest.raises(services.StudioError, match="already the current version"):
        services.prompt_rollback(prompt=prompt, version=prompt.current_version, user=None)
    other = PromptVersionFactory()
    with pytest.raises(services.StudioError, match="not a version of"):
        services.prompt_rollback(prompt=prompt, version=other, user=None)
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1
