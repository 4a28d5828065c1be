"""review/metrics.py: the statistics against hand-worked numbers, the aggregation and its
query count, the export, and the underperformer flag."""

import math

import pytest
from django.core.management import call_command

from generation.models import Variant
from review import metrics
from review.tasks import flag_underperformers
from tests.factories import (
    PromptVersionFactory,
    SegmentFactory,
    VariantFactory,
    engagement_create,
)

# --- the statistics (no database) ------------------------------------------------------
#
# Reference numbers worked by hand for 60/1000 against 40/1000:
#   pooled p = 100/2000 = 0.05, SE = sqrt(0.05 × 0.95 × (1/1000 + 1/1000)) = 0.0097468
#   z = 0.02 / 0.0097468 = 2.05196, two-sided p = 2 × (1 − Φ(2.05196)) = 0.04017
# The difference's interval is Newcombe's hybrid score interval (method 10); its
# reference values are Table II of Newcombe (1998), Statistics in Medicine 17:873–890.


def test_two_proportion_test_matches_the_hand_worked_reference():
    z, p = metrics.two_proportion_test(60, 1000, 40, 1000)
    assert z == pytest.approx(2.05196, abs=1e-5)
    assert p == pytest.approx(0.04017, abs=1e-5)


@pytest.mark.parametrize(
    ("counts", "interval"),
    [
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
        ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ],
)
def test_the_difference_interval_matches_newcombes_published_values(counts, interval):
    low, high = metrics.difference_interval(*counts, confidence=0.95)
    assert (low, high) == (
        pytest.approx(interval[0], abs=1e-4),
        pytest.approx(interval[1], abs=1e-4),
    )


def test_the_uplift_interval_is_the_difference_interval_over_the_control_rate():
    c = metrics.compare(60, 1000, 40, 1000, confidence=0.95, min_trials=100)
    assert c.rate == 0.06 and c.control_rate == 0.04
    assert c.difference == pytest.approx(0.02)
    low, high = metrics.difference_interval(60, 1000, 40, 1000, confidence=0.95)
    assert (c.difference_low, c.difference_high) == (low, high)
    assert 0 < low < 0.02 < high
    assert c.uplift == pytest.approx(0.5)
    assert (c.uplift_low, c.uplift_high) == (pytest.approx(low / 0.04), pytest.approx(high / 0.04))
    assert c.significant and c.better and not c.worse and c.verdict == "better"


def test_zero_clicks_against_a_low_rate_is_not_flagged_worse():
    """Issue 15: 0/120 against 30/3,000 was flagged worse by the Wald interval (it
    collapses to a point at 0 clicks) while the page's own z-test said p = 0.27. One
    method now decides, and at 1.2 expected clicks it does not decide at all."""
    c = metrics.compare(0, 120, 30, 3000, min_trials=100)
    assert c.p_value == pytest.approx(0.27, abs=0.01)
    assert not c.worse and not c.significant
    assert c.difference_low < 0 < c.difference_high  # Newcombe's interval does not collapse
    assert c.verdict == "not enough data"
    # With enough expected clicks the same test decides, and the verdict follows its sign.
    worse = metrics.compare(0, 1000, 30, 3000, min_trials=100)
    assert worse.enough_data and worse.p_value < 0.05 and worse.worse


def test_the_verdict_always_agrees_with_the_z_test():
    for x1, n1, x0, n0 in [(60, 1000, 40, 1000), (45, 1000, 60, 1000), (12, 400, 300, 10000)]:
        c = metrics.compare(x1, n1, x0, n0)
        assert c.significant == (c.p_value < 0.05)
        assert c.worse == (c.significant and x1 / n1 < x0 / n0)


def test_a_wider_confidence_makes_the_same_difference_not_significant():
    c = metrics.compare(60, 1000, 40, 1000, confidence=0.99, min_trials=100)
    assert metrics.z_critical(0.99) == pytest.approx(2.575829, abs=1e-6)
    assert c.uplift_low < 0 < c.uplift_high
    assert not c.significant and c.verdict == "no significant difference"


def test_the_critical_value_for_95_percent_is_1_96():
    assert metrics.z_critical(0.95) == pytest.approx(1.959964, abs=1e-6)


def test_equal_rates_give_no_evidence():
    c = metrics.compare(50, 1000, 50, 1000)
    assert c.z == 0 and c.p_value == pytest.approx(1.0)
    assert c.uplift == 0 and c.uplift_low == -c.uplift_high


def test_a_large_drop_is_significantly_worse():
    # 20/1000 against 60/1000: z = −0.04 / sqrt(0.04 × 0.96 × 0.002) = −4.5644
    c = metrics.compare(20, 1000, 60, 1000)
    assert c.z == pytest.approx(-4.5644, abs=1e-4)
    assert c.p_value < 1e-4
    assert c.worse and c.uplift == pytest.approx(-2 / 3) and c.uplift_high < 0


def test_below_the_minimum_impressions_there_is_no_verdict():
    c = metrics.compare(0, 99, 60, 1000, min_trials=100)
    assert c.rate == 0 and c.p_value is not None
    assert not c.enough_data and not c.worse and not c.significant
    assert c.verdict == "not enough data"
    assert not metrics.compare(60, 1000, 5, 50, min_trials=100).enough_data  # small control


def test_a_control_without_clicks_has_no_relative_uplift():
    c = metrics.compare(10, 1000, 0, 1000)
    assert c.control_rate == 0 and c.uplift is None and c.difference == pytest.approx(0.01)


def test_no_impressions_gives_no_rate_and_no_test():
    c = metrics.compare(0, 0, 10, 100)
    assert c.rate is None and c.p_value is None and c.verdict == "not enough data"


def test_more_clicks_than_impressions_cannot_make_a_rate_above_one():
    c = metrics.compare(150, 100, 10, 100)
    assert c.rate == 1.0 and not math.isnan(c.difference_low)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        # Whitespace before the formula does not hide it (issue 15).
        (" =1+1", "' =1+1"),
        ("\t=cmd|' /C calc'!A0", "'\t=cmd|' /C calc'!A0"),
        ("\r+1", "'\r+1"),
        ("\n@SUM(A1)", "'\n@SUM(A1)"),
        ("\u00a0\u3000-2", "'\u00a0\u3000-2"),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("Plain copy", "Plain copy"),
        ("Copy - with a dash", "Copy - with a dash"),
        (-0.25, -0.25),
        (None, ""),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_defused(value, written):
    assert metrics.csv_safe(value) == written


def test_an_unknown_export_is_refused_naming_it():
    with pytest.raises(ValueError, match="'colour'"):
        metrics.export_columns("colour")


# --- aggregation -----------------------------------------------------------------------


@pytest.fixture
def slot_data(db):
    """One prompt, two segments, a published variant in each and one customer variant."""
    v1 = PromptVersionFactory()
    prompt = v1.prompt
    v2 = PromptVersionFactory(prompt=prompt)
    a, b = SegmentFactory(name="Runners"), SegmentFactory(name="Hikers")
    good = VariantFactory(prompt_version=v1, segment=a, status=Variant.Status.PUBLISHED)
    bad = VariantFactory(
        prompt_version=v2,
        segment=b,
        status=Variant.Status.PUBLISHED,
        text="Edited by a reviewer.",
        original_text="What the model wrote.",
    )
    engagement_create(variant=good, impressions=1000, clicks=80, conversions=10)
    engagement_create(prompt=prompt, product=good.product, segment=a, impressions=1000, clicks=50)
    engagement_create(variant=bad, impressions=1000, clicks=20, conversions=1)
    engagement_create(prompt=prompt, product=bad.product, segment=b, impressions=1000, clicks=60)
    return prompt, good, bad, a, b


def test_prompt_metrics_compare_each_variant_with_the_base_copy_of_its_slot(
    slot_data, django_assert_max_num_queries
):
    prompt, good, bad, _a, _b = slot_data
    with django_assert_max_num_queries(4):
        m = metrics.prompt_metrics(prompt=prompt, confidence=0.95, min_trials=100)
    rows = {r.key: r for r in m.variants}
    assert rows[good.pk].ctr.rate == 0.08 and rows[good.pk].ctr.control_rate == 0.05
    assert rows[bad.pk].ctr.control_rate == 0.06 and rows[bad.pk].ctr.worse
    assert rows[good.pk].conversion.rate == 0.01
    assert [r.key for r in m.top] == [good.pk] and [r.key for r in m.bottom] == [bad.pk]
    # The overall control is every base-copy impression of the prompt.
    assert m.control.impressions == 2000 and m.control.clicks == 110
    assert m.overall.counts.impressions == 2000 and m.overall.counts.clicks == 100


def test_versions_and_edits_are_compared_with_the_prompts_control_segments_with_theirs(
    slot_data,
):
    prompt, good, bad, _a, _b = slot_data
    m = metrics.prompt_metrics(prompt=prompt, confidence=0.95, min_trials=100)
    assert [(r.label, r.counts.clicks, r.control.clicks) for r in m.versions] == [
        (f"v{good.prompt_version.number}", 80, 110),
        (f"v{bad.prompt_version.number}", 20, 110),
    ]
    assert [(r.label, r.counts.clicks) for r in m.edited] == [
        ("Unedited", 80),
        ("Edited by a reviewer", 20),
    ]
    by_segment = {r.label: r for r in m.segments}
    assert by_segment["Runners"].control.clicks == 50
    assert by_segment["Hikers"].ctr.rate == 0.02 and by_segment["Hikers"].ctr.control_rate == 0.06


def test_the_query_count_does_not_grow_with_variants_and_events(db, django_assert_max_num_queries):
    version = PromptVersionFactory()
    for _ in range(8):
        variant = VariantFactory(prompt_version=version, status=Variant.Status.PUBLISHED)
        engagement_create(variant=variant, impressions=30, clicks=3)
        engagement_create(
            prompt=version.prompt,
            product=variant.product,
            segment=variant.segment,
            impressions=30,
            clicks=2,
        )
    with django_assert_max_num_queries(4):
        m = metrics.prompt_metrics(prompt=version.prompt)
    assert len(m.variants) == 8 and len(m.segments) == 8


def test_a_one_to_one_variant_is_compared_with_its_products_base_copy(db):
    from tests.factories import CustomerFactory

    version = PromptVersionFactory()
    variant = VariantFactory(
        prompt_version=version,
        segment=None,
        customer=CustomerFactory(),
        status=Variant.Status.PUBLISHED,
    )
    engagement_create(variant=variant, impressions=10, clicks=1)
    for segment in (SegmentFactory(), None):
        engagement_create(
            prompt=version.prompt, product=variant.product, segment=segment, impressions=10
        )
    (row,) = metrics.prompt_metrics(prompt=version.prompt).variants
    assert row.control.impressions == 20


def test_export_rows_carry_the_variant_text_and_every_column(slot_data):
    prompt, good, bad, _a, _b = slot_data
    m = metrics.prompt_metrics(prompt=prompt, confidence=0.95, min_trials=100)
    rows = metrics.export_rows(m, "variant")
    assert set(rows[0]) == set(metrics.export_columns("variant"))
    assert {r["text"] for r in rows} == {good.text, bad.text}
    assert "text" not in metrics.export_columns("segment")


def test_best_performers_are_live_variants_with_enough_data_first(slot_data):
    prompt, good, bad, _a, _b = slot_data
    tiny = VariantFactory(prompt=prompt, prompt_version=good.prompt_version)
    Variant.objects.filter(pk=tiny.pk).update(status=Variant.Status.RETIRED)
    engagement_create(variant=tiny, impressions=3, clicks=3)
    in_review = VariantFactory(prompt=prompt, prompt_version=good.prompt_version)
    engagement_create(variant=in_review, impressions=500, clicks=200)
    assert [r.key for r in metrics.best_performers(prompt=prompt)] == [good.pk, bad.pk, tiny.pk]


# --- flagging --------------------------------------------------------------------------


def test_a_variant_much_worse_than_its_control_with_enough_data_is_flagged(slot_data):
    prompt, good, bad, _a, _b = slot_data
    assert metrics.metrics_flag_underperformers(prompt=prompt) == 1
    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.underperforming and not good.underperforming


def test_a_variant_with_too_little_data_is_not_flagged_however_bad(db):
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    engagement_create(variant=variant, impressions=60, clicks=0)
    engagement_create(
        prompt=variant.prompt,
        product=variant.product,
        segment=variant.segment,
        impressions=1000,
        clicks=300,
    )
    assert metrics.metrics_flag_underperformers() == 0
    variant.refresh_from_db()
    assert not variant.underperforming


def test_the_flag_is_cleared_once_a_variant_is_no_longer_significantly_worse(slot_data):
    prompt, good, bad, _a, _b = slot_data
    Variant.objects.filter(pk=good.pk).update(underperforming=True)
    metrics.metrics_flag_underperformers(prompt=prompt)
    # More clicks arrive: the variant now matches its control.
    engagement_create(variant=bad, impressions=0, clicks=40)
    assert metrics.metrics_flag_underperformers(prompt=prompt) == 0
    assert not Variant.objects.filter(underperforming=True).exists()


def test_flagging_one_prompt_leaves_other_prompts_variants_alone(slot_data):
    prompt, _good, _bad, _a, _b = slot_data
    other = VariantFactory(status=Variant.Status.PUBLISHED)
    Variant.objects.filter(pk=other.pk).update(underperforming=True)
    metrics.metrics_flag_underperformers(prompt=prompt)
    assert Variant.objects.get(pk=other.pk).underperforming


def test_the_task_and_the_command_flag_like_the_service(slot_data, capsys):
    prompt, _good, bad, _a, _b = slot_data
    assert flag_underperformers() == 1
    Variant.objects.update(underperforming=False)
    call_command("flag_underperformers", "--prompt", prompt.slug)
    assert "1 variant" in capsys.readouterr().out
    assert Variant.objects.get(pk=bad.pk).underperforming


# --- simulated engagement for the demo -------------------------------------------------


def test_simulated_engagement_covers_every_variant_and_its_base_copy_once(db, capsys):
    from review.models import EngagementEvent

    # The draws depend only on the seed, the prompt's slug and the variants' order.
    version = PromptVersionFactory(prompt__slug="simulated")
    variants = [
        VariantFactory(prompt_version=version, status=Variant.Status.PUBLISHED, language=tag)
        for tag in ("en", "de", "fr")
    ]
    VariantFactory(prompt_version=version)  # in review: never shown

    call_command("simulate_engagement", "--prompt", version.prompt.slug, "--impressions", "300")

    events = EngagementEvent.objects.filter(prompt=version.prompt)
    impressions = events.filter(kind="impression")
    assert impressions.filter(variant__isnull=True).count() == 3 * 300  # one base copy a slot
    for variant in variants:
        assert impressions.filter(variant=variant).count() == 300
    m = metrics.prompt_metrics(prompt=version.prompt, min_trials=100)
    assert all(r.control.impressions == 300 for r in m.variants)
    # One variant is made clearly worse than the base copy of its slot.
    assert min(r.ctr.uplift for r in m.variants) < -0.4
    assert "flagged as underperforming" in capsys.readouterr().out
    # Each arm is served in its variant's language, the base copy in the same.
    assert {r.key: r.control.impressions for r in m.languages} == {"en": 300, "de": 300, "fr": 300}

    total = events.count()
    call_command("simulate_engagement", "--prompt", version.prompt.slug, "--impressions", "300")
    assert events.count() == total  # same seed, same event ids: counted once


def test_simulating_an_unknown_prompt_is_an_error(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="'nope'"):
        call_command("simulate_engagement", "--prompt", "nope")


def test_the_uplift_interval_never_goes_below_minus_100_percent():
    c = metrics.compare(1, 100, 3, 100, min_trials=10)
    assert c.difference_low / c.control_rate < -1
    assert c.uplift_low == -1.0 and c.uplift_high > 0


def test_languages_compare_the_copy_served_in_each_with_the_base_copy_in_the_same(db):
    """German readers click more: German variants are judged against German base copy,
    so a language's own rate never makes its variants look better."""
    variant = VariantFactory(status=Variant.Status.PUBLISHED, language="de")
    english = VariantFactory(
        prompt_version=variant.prompt_version, status=Variant.Status.PUBLISHED, language="en"
    )
    prompt, product, segment = variant.prompt, variant.product, variant.segment
    engagement_create(variant=variant, impressions=1000, clicks=60, language="de-ch")
    engagement_create(
        prompt=prompt, product=product, segment=segment, impressions=1000, clicks=60,
        language="de-ch",
    )  # fmt: skip
    engagement_create(variant=english, impressions=1000, clicks=30, language="en")
    engagement_create(
        prompt=prompt, product=product, segment=segment, impressions=1000, clicks=20, language="en"
    )
    engagement_create(variant=english, impressions=10, clicks=1)  # before ids had a language

    m = metrics.prompt_metrics(prompt=prompt, confidence=0.95, min_trials=100)

    rows = {r.key: r for r in m.languages}
    assert list(rows) == ["de-ch", "en", ""]
    assert rows["de-ch"].ctr.rate == 0.06 and rows["de-ch"].ctr.control_rate == 0.06
    assert not rows["de-ch"].ctr.significant
    assert rows["en"].ctr.rate == 0.03 and rows["en"].ctr.control_rate == 0.02
    assert rows[""].label == metrics.UNKNOWN_LANGUAGE and rows[""].counts.impressions == 10
    exported = metrics.export_rows(m, "language")
    assert [r["group"] for r in exported] == ["de-ch", "en", metrics.UNKNOWN_LANGUAGE]
    assert exported[1]["control_clicks"] == 20
