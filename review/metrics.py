"""Engagement metrics: how variants do against the base copy (the control).

Two halves:

* the statistics, pure functions of counts (no Django): rates, a two-proportion
  z-test and the uplift's confidence interval;
* the aggregation, a constant number of queries over EngagementEvent (conditional
  Count/Sum grouped by variant, segment and product), and the rows the dashboard,
  the CSV export, the prompt studio and the underperformer flag are made of.

The method, as the dashboard explains it:

1. A group's click-through rate is clicks / impressions, its conversion rate
   conversions / impressions. Its control is the base copy shown in its place: for one
   variant, the base-copy impressions of the same prompt, product and segment (same
   prompt and product for a one-to-one variant); for a segment row, the base copy of
   the prompt in that segment; for a language, the base copy served in that language;
   for a prompt version and for edited / unedited, the prompt's base copy overall.
2. The verdict (better, worse, no significant difference) comes from one method: a
   two-proportion z-test with the pooled standard error (the score test of equal rates),
   two-sided, and the sign of the difference. *Underperforming* is "worse" by it.
3. The difference's confidence interval is Newcombe's hybrid score interval (Wilson
   intervals of each arm combined, Newcombe 1998, method 10): it stays sensible at 0
   clicks, where the Wald interval collapses to a point. Uplift = rate / control rate
   − 1, its interval the difference's divided by the control rate, cut at −100%. The
   interval and the test agree but for differences at the very edge of significance.
4. No verdict ("not enough data") below the minimum impressions in either arm, nor
   while an arm expects fewer than 5 successes at the pooled rate: the test's normal
   approximation does not hold there (bench/metrics.py measures the false positives).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from statistics import NormalDist
from typing import TypedDict

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, QuerySet, Sum

from generation.models import Prompt, Segment, Variant
from review.models import EngagementEvent

# Read through getattr: the defaults hold until settings.py names them
# (METRICS_MIN_IMPRESSIONS, METRICS_CONFIDENCE from the environment).
DEFAULT_MIN_IMPRESSIONS = 100
DEFAULT_CONFIDENCE = 0.95
# Below this many expected successes in an arm (at the pooled rate) the z-test's normal
# approximation fails: e.g. 2 clicks in 100 against 50 in 10,000 reads as p = 0.04.
MIN_EXPECTED_SUCCESSES = 5
TOP_VARIANTS = 5
_NORMAL = NormalDist()


def min_impressions() -> int:
    return int(getattr(settings, "METRICS_MIN_IMPRESSIONS", DEFAULT_MIN_IMPRESSIONS))


def confidence_level() -> float:
    return float(getattr(settings, "METRICS_CONFIDENCE", DEFAULT_CONFIDENCE))


# --- the statistics --------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One rate of a group against the same rate of its control."""

    rate: float | None  # None without impressions
    control_rate: float | None
    difference: float | None = None  # rate − control rate
    difference_low: float | None = None
    difference_high: float | None = None
    uplift: float | None = None  # rate / control rate − 1; None when the control rate is 0
    uplift_low: float | None = None
    uplift_high: float | None = None
    z: float | None = None
    p_value: float | None = None
    confidence: float = DEFAULT_CONFIDENCE
    enough_data: bool = False

    @property
    def significant(self) -> bool:
        """The z-test rejects "same rate as the control" at the chosen confidence."""
        return self.enough_data and self.p_value is not None and self.p_value < 1 - self.confidence

    @property
    def worse(self) -> bool:
        """Significantly worse: the z-test rejects equal rates, and the rate is lower."""
        return self.significant and self.difference is not None and self.difference < 0

    @property
    def better(self) -> bool:
        return self.significant and self.difference is not None and self.difference > 0

    # Percentages for the templates (the rates themselves stay fractions).
    @property
    def rate_pct(self) -> float | None:
        return None if self.rate is None else self.rate * 100

    @property
    def control_rate_pct(self) -> float | None:
        return None if self.control_rate is None else self.control_rate * 100

    @property
    def uplift_pct(self) -> float | None:
        return None if self.uplift is None else self.uplift * 100

    @property
    def uplift_low_pct(self) -> float | None:
        return None if self.uplift_low is None else self.uplift_low * 100

    @property
    def uplift_high_pct(self) -> float | None:
        return None if self.uplift_high is None else self.uplift_high * 100

    @property
    def verdict(self) -> str:
        if not self.enough_data:
            return "not enough data"
        if self.worse:
            return "worse"
        if self.better:
            return "better"
        return "no significant difference"


def rate(successes: int, trials: int) -> float | None:
    return successes / trials if trials else None


def z_critical(confidence: float) -> float:
    """The two-sided critical value: 1.96 for 95%."""
    return _NORMAL.inv_cdf(1 - (1 - confidence) / 2)


def two_proportion_test(x1: int, n1: int, x0: int, n0: int) -> tuple[float, float]:
    """(z, two-sided p-value) of H0: p1 = p0, with the pooled standard error.

    Both arms all-success or all-failure (pooled SE 0): no evidence, z 0 and p 1.
    """
    pooled = (x1 + x0) / (n1 + n0)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    if se == 0:
        return 0.0, 1.0
    z = (x1 / n1 - x0 / n0) / se
    return z, 2 * (1 - _NORMAL.cdf(abs(z)))


def wilson_interval(x: int, n: int, *, confidence: float) -> tuple[float, float]:
    """The Wilson score interval of one proportion x / n."""
    z = z_critical(confidence)
    p = x / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(
    x1: int, n1: int, x0: int, n0: int, *, confidence: float
) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p1 − p0 (method 10 of Newcombe 1998):
    each arm's Wilson interval, combined. 56/70 − 48/80 gives [0.0524, 0.3339]."""
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson_interval(x1, n1, confidence=confidence)
    l0, u0 = wilson_interval(x0, n0, confidence=confidence)
    below = math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    above = math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return p1 - p0 - below, p1 - p0 + above


def compare(
    successes: int,
    trials: int,
    control_successes: int,
    control_trials: int,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    min_trials: int = DEFAULT_MIN_IMPRESSIONS,
) -> Comparison:
    """Compare a group's rate with its control's (see the module docstring).

    A client can post more clicks than impressions; successes are capped at the
    trials so that no rate goes above 1 and the variances stay real.
    """
    x1, n1 = min(successes, trials), trials
    x0, n0 = min(control_successes, control_trials), control_trials
    if not n1 or not n0:
        return Comparison(rate(x1, n1), rate(x0, n0), confidence=confidence)
    p1, p0 = x1 / n1, x0 / n0
    z, p_value = two_proportion_test(x1, n1, x0, n0)
    low, high = difference_interval(x1, n1, x0, n0, confidence=confidence)
    uplift = uplift_low = uplift_high = None
    if p0 > 0:
        # A rate cannot fall below 0, so neither can the uplift below −100%.
        uplift, uplift_low, uplift_high = p1 / p0 - 1, max(low / p0, -1.0), high / p0
    return Comparison(
        rate=p1,
        control_rate=p0,
        difference=p1 - p0,
        difference_low=low,
        difference_high=high,
        uplift=uplift,
        uplift_low=uplift_low,
        uplift_high=uplift_high,
        z=z,
        p_value=p_value,
        confidence=confidence,
        enough_data=n1 >= min_trials
        and n0 >= min_trials
        and min(n1, n0) * (x1 + x0) / (n1 + n0) >= MIN_EXPECTED_SUCCESSES
        and min(n1, n0) * (1 - (x1 + x0) / (n1 + n0)) >= MIN_EXPECTED_SUCCESSES,
    )


# --- counts and rows -------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    value: Decimal = Decimal(0)

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            self.conversions + other.conversions,
            self.value + other.value,
        )

    @staticmethod
    def total(counts) -> Counts:
        return sum(counts, Counts())


@dataclass
class Row:
    """One line of a metrics table: a group, its counts, its control's, the comparisons."""

    label: str
    counts: Counts
    control: Counts
    ctr: Comparison
    conversion: Comparison
    key: object = None  # what the row is about: a version number, a segment id, a variant
    variant: Variant | None = None
    extra: dict = field(default_factory=dict)


class _Thresholds(TypedDict):
    """The keywords every row of one table is built with (row_build's)."""

    confidence: float
    min_trials: int


def row_build(
    *, label: str, counts: Counts, control: Counts, confidence: float, min_trials: int, **kw
) -> Row:
    def versus(attribute: str) -> Comparison:
        return compare(
            getattr(counts, attribute),
            counts.impressions,
            getattr(control, attribute),
            control.impressions,
            confidence=confidence,
            min_trials=min_trials,
        )

    return Row(label, counts, control, versus("clicks"), versus("conversions"), **kw)


# --- aggregation -----------------------------------------------------------------------

Kind = EngagementEvent.Kind
_COUNTS = {
    "impressions": Count("id", filter=Q(kind=Kind.IMPRESSION)),
    "clicks": Count("id", filter=Q(kind=Kind.CLICK)),
    "conversions": Count("id", filter=Q(kind=Kind.CONVERSION)),
    "value": Sum("value", filter=Q(kind=Kind.CONVERSION)),
}


def _money(value) -> Decimal:
    # SQLite sums decimals as floats: back to cents.
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


def _grouped(events: QuerySet, *keys: str) -> dict[tuple, Counts]:
    """One GROUP BY: the counts of each combination of `keys`."""
    rows = events.order_by().values(*keys).annotate(**_COUNTS)
    return {
        tuple(r[k] for k in keys): Counts(
            r["impressions"], r["clicks"], r["conversions"], _money(r["value"])
        )
        for r in rows
    }


@dataclass
class _Engagement:
    """What two GROUP BYs tell about the events in scope, summed every way we need."""

    # (variant, segment of the event) → counts of the variant's exposures
    treated: dict[tuple[int, int | None], Counts]
    # (prompt, product, segment) → counts of base-copy exposures
    control: dict[tuple[int, int, int | None], Counts]
    # language served → counts, of the variants' exposures and of the base copy's
    treated_by_language: dict[str, Counts]
    control_by_language: dict[str, Counts]

    def control_for_slot(self, prompt_id: int, product_id: int, segment_id: int | None) -> Counts:
        return self.control.get((prompt_id, product_id, segment_id), Counts())

    def control_for_product(self, prompt_id: int, product_id: int) -> Counts:
        return Counts.total(
            c for (pr, pd, _s), c in self.control.items() if pr == prompt_id and pd == product_id
        )

    def variant_counts(self) -> dict[int, Counts]:
        out: dict[int, Counts] = defaultdict(Counts)
        for (variant_id, _segment), c in self.treated.items():
            out[variant_id] += c
        return out


def _summed(grouped: dict[tuple, Counts], key) -> dict:
    out: dict = defaultdict(Counts)
    for k, c in grouped.items():
        out[key(k)] += c
    return dict(out)


def _engagement(events: QuerySet) -> _Engagement:
    # The language is in both GROUP BYs, so the per-language table costs no query of its
    # own; the other tables sum it out.
    treated = _grouped(events.filter(variant__isnull=False), "variant_id", "segment_id", "language")
    control = _grouped(
        events.filter(variant__isnull=True), "prompt_id", "product_id", "segment_id", "language"
    )
    return _Engagement(
        treated=_summed(treated, lambda k: k[:2]),
        control=_summed(control, lambda k: k[:3]),
        treated_by_language=_summed(treated, lambda k: k[-1]),
        control_by_language=_summed(control, lambda k: k[-1]),
    )


def _variant_control(engagement: _Engagement, variant: Variant) -> Counts:
    if variant.segment_id is not None:
        return engagement.control_for_slot(
            variant.prompt_id, variant.product_id, variant.segment_id
        )
    # A one-to-one variant: the base copy of the product for every audience.
    return engagement.control_for_product(variant.prompt_id, variant.product_id)


def _variant_rows(
    engagement: _Engagement, variants: dict[int, Variant], *, confidence: float, min_trials: int
) -> list[Row]:
    rows = []
    for variant_id, counts in engagement.variant_counts().items():
        variant = variants.get(variant_id)
        if variant is None:
            continue
        rows.append(
            row_build(
                label=f"Variant {variant.pk}",
                counts=counts,
                control=_variant_control(engagement, variant),
                confidence=confidence,
                min_trials=min_trials,
                key=variant.pk,
                variant=variant,
                extra={"edited": is_edited(variant)},
            )
        )
    return rows


UNKNOWN_LANGUAGE = "Unknown (the exposure id named no language)"


def _language_rows(engagement: _Engagement, *, confidence: float, min_trials: int) -> list[Row]:
    """One row per language served: the variants in it against the base copy in it.

    The control is the base copy served in the same language, so a language whose
    readers click more does not make its variants look better.
    """
    treated, control = engagement.treated_by_language, engagement.control_by_language
    return sorted(
        (
            row_build(
                label=tag or UNKNOWN_LANGUAGE,
                counts=treated.get(tag, Counts()),
                control=control.get(tag, Counts()),
                key=tag,
                confidence=confidence,
                min_trials=min_trials,
            )
            for tag in set(treated) | set(control)
        ),
        key=lambda r: (r.key == "", r.key),
    )


def is_edited(variant: Variant) -> bool:
    """Approved with a reviewer's edit: the text differs from what the model wrote."""
    return bool(variant.original_text) and variant.text != variant.original_text


def _by_ctr_uplift(row: Row) -> tuple:
    ctr = row.ctr
    return (ctr.enough_data, ctr.uplift if ctr.uplift is not None else -math.inf, row.key)


@dataclass
class PromptMetrics:
    prompt: Prompt
    confidence: float
    min_impressions: int
    overall: Row  # every variant of the prompt together against the base copy
    control: Counts
    versions: list[Row]
    segments: list[Row]
    languages: list[Row]  # by the language the copy was served in (exposure ids say it)
    edited: list[Row]
    variants: list[Row]  # best CTR uplift first, those without enough data last
    top: list[Row]
    bottom: list[Row]

    @property
    def has_data(self) -> bool:
        return bool(self.overall.counts.impressions or self.control.impressions)


VARIANT_RELATED = ("product", "segment", "customer", "prompt_version")


def prompt_metrics(
    *,
    prompt: Prompt,
    confidence: float | None = None,
    min_trials: int | None = None,
    top: int = TOP_VARIANTS,
) -> PromptMetrics:
    """The dashboard's tables for one prompt in four queries, however many events.

    1. Two GROUP BYs: the variants' events by variant and segment, the base copy's by
       product and segment.
    2. The variants and segments those name.
    3. Sum the counts per variant, version, segment and edited / unedited, and
       compare each with its control.
    """
    confidence = confidence or confidence_level()
    min_trials = min_impressions() if min_trials is None else min_trials
    engagement = _engagement(EngagementEvent.objects.filter(prompt=prompt))
    variant_ids = {v for v, _s in engagement.treated}
    variants = {
        v.pk: v
        for v in Variant.objects.filter(pk__in=variant_ids, prompt=prompt).select_related(
            *VARIANT_RELATED
        )
    }
    segment_ids = {s for _v, s in engagement.treated} | {s for _p, _d, s in engagement.control}
    # Keyed by int | None, as the segment ids of the counts are (None: no segment).
    segments: dict[int | None, Segment] = {
        s.pk: s for s in Segment.objects.filter(pk__in=segment_ids - {None})
    }
    build: _Thresholds = {"confidence": confidence, "min_trials": min_trials}

    control = Counts.total(engagement.control.values())
    variant_rows = _variant_rows(engagement, variants, **build)
    overall = row_build(
        label="All variants",
        counts=Counts.total(r.counts for r in variant_rows),
        control=control,
        **build,
    )

    by_version: dict[int, Counts] = defaultdict(Counts)
    by_edit: dict[bool, Counts] = defaultdict(Counts)
    for r in variant_rows:
        assert r.variant is not None  # _variant_rows() gives every row its variant
        by_version[r.variant.prompt_version.number] += r.counts
        by_edit[r.extra["edited"]] += r.counts
    versions = [
        row_build(label=f"v{n}", counts=c, control=control, key=n, **build)
        for n, c in sorted(by_version.items())
    ]
    edited = [
        row_build(label=label, counts=by_edit[flag], control=control, key=flag, **build)
        for flag, label in ((False, "Unedited"), (True, "Edited by a reviewer"))
        if flag in by_edit
    ]

    segment_treated: dict[int | None, Counts] = defaultdict(Counts)
    for (variant_id, segment_id), c in engagement.treated.items():
        if variant_id in variants:
            segment_treated[segment_id] += c
    segment_control: dict[int | None, Counts] = defaultdict(Counts)
    for (_p, _d, segment_id), c in engagement.control.items():
        segment_control[segment_id] += c

    def segment_label(pk: int | None) -> str:
        return segments[pk].name if pk in segments else "No segment"

    segment_rows = sorted(
        (
            row_build(
                label=segment_label(pk),
                counts=segment_treated.get(pk, Counts()),
                control=segment_control.get(pk, Counts()),
                key=pk,
                extra={"segment": segments.get(pk)},
                **build,
            )
            for pk in set(segment_treated) | set(segment_control)
        ),
        key=lambda r: (r.label == "No segment", r.label.lower()),
    )

    ranked = sorted(variant_rows, key=_by_ctr_uplift, reverse=True)
    judged = [r for r in ranked if r.ctr.enough_data and r.ctr.uplift is not None]
    # Fewer than 2 × top judged: split them, so that no variant is both top and bottom.
    half = min(top, (len(judged) + 1) // 2)
    best, worst = judged[:half], judged[half:][::-1][:top]
    return PromptMetrics(
        prompt=prompt,
        confidence=confidence,
        min_impressions=min_trials,
        overall=overall,
        control=control,
        versions=versions,
        segments=segment_rows,
        languages=_language_rows(engagement, **build),
        edited=edited,
        variants=ranked,
        top=best,
        bottom=worst,
    )


def best_performers(*, prompt: Prompt, limit: int = TOP_VARIANTS) -> list[Row]:
    """The prompt's published or retired variants with the best click-through rates.

    Those with enough data come first (a variant shown ten times can have any rate),
    then by CTR; every row says whether its difference from the control is significant.
    """
    live = {Variant.Status.PUBLISHED, Variant.Status.RETIRED}
    rows = [
        r
        for r in prompt_metrics(prompt=prompt, top=0).variants
        if r.variant is not None and r.variant.status in live and r.counts.impressions
    ]
    rows.sort(key=lambda r: (r.ctr.enough_data, r.ctr.rate or 0, r.key), reverse=True)
    return rows[:limit]


def metrics_flag_underperformers(*, prompt: Prompt | None = None) -> int:
    """Set Variant.underperforming on the variants whose click-through rate is
    significantly worse than their control's, and clear it on the others; return how
    many are flagged now. Variants without enough data are never flagged.

    A service (it writes), kept here beside the statistics it applies. Two GROUP BYs,
    one read of the variants, two UPDATEs, however many variants.
    """
    events = EngagementEvent.objects.all()
    scope = Variant.objects.all()
    if prompt is not None:
        events, scope = events.filter(prompt=prompt), scope.filter(prompt=prompt)
    engagement = _engagement(events)
    variant_ids = {v for v, _s in engagement.treated}
    variants = {
        v.pk: v
        for v in scope.filter(pk__in=variant_ids).only(
            "pk", "prompt_id", "product_id", "segment_id", "text", "original_text"
        )
    }
    rows = _variant_rows(
        engagement, variants, confidence=confidence_level(), min_trials=min_impressions()
    )
    worse = {r.key for r in rows if r.ctr.worse}
    with transaction.atomic():
        scope.filter(pk__in=worse, underperforming=False).update(underperforming=True)
        scope.filter(underperforming=True).exclude(pk__in=worse).update(underperforming=False)
    return len(worse)


# --- export ----------------------------------------------------------------------------

EXPORTS = ("variant", "version", "segment", "language", "edited")


_RATE_COLUMNS = (
    "{0}",
    "{0}_control",
    "{0}_uplift",
    "{0}_uplift_low",
    "{0}_uplift_high",
    "{0}_p_value",
    "{0}_verdict",
)
_VARIANT_COLUMNS = (
    "variant_id",
    "prompt_version",
    "product",
    "audience",
    "status",
    "edited",
    "underperforming",
    "text",
)
_COUNT_COLUMNS = (
    "impressions",
    "clicks",
    "conversions",
    "conversion_value",
    "control_impressions",
    "control_clicks",
    "control_conversions",
    "enough_data",
)


def export_columns(by: str) -> list[str]:
    """The CSV header of one table; `by` is one of EXPORTS."""
    if by not in EXPORTS:
        raise ValueError(f"Unknown 'by' value '{by}'; use one of: {', '.join(EXPORTS)}")
    return [
        "prompt",
        "group",
        *(_VARIANT_COLUMNS if by == "variant" else ()),
        *_COUNT_COLUMNS,
        *(c.format("ctr") for c in _RATE_COLUMNS),
        *(c.format("conversion_rate") for c in _RATE_COLUMNS),
    ]


def _comparison_columns(prefix: str, c: Comparison) -> dict:
    values = (c.rate, c.control_rate, c.uplift, c.uplift_low, c.uplift_high, c.p_value, c.verdict)
    return {column.format(prefix): v for column, v in zip(_RATE_COLUMNS, values, strict=True)}


def _audience_key(variant: Variant) -> str:
    """The variant's segment's slug, or else its customer's external id."""
    if variant.segment:
        return variant.segment.slug
    # The variant_segment_xor_customer constraint: a variant without a segment has a customer.
    assert variant.customer is not None
    return variant.customer.external_id


def export_rows(metrics: PromptMetrics, by: str) -> list[dict]:
    """The rows of one table as flat dicts keyed by export_columns(by), for the CSV."""
    export_columns(by)  # refuses an unknown `by`
    rows = {
        "variant": metrics.variants,
        "version": metrics.versions,
        "segment": metrics.segments,
        "language": metrics.languages,
        "edited": metrics.edited,
    }[by]
    out = []
    for r in rows:
        head: dict = {"prompt": metrics.prompt.slug, "group": r.label}
        if r.variant is not None:
            v = r.variant
            head |= {
                "variant_id": v.pk,
                "prompt_version": v.prompt_version.number,
                "product": v.product.sku,
                "audience": _audience_key(v),
                "status": v.status,
                "edited": r.extra.get("edited", False),
                "underperforming": v.underperforming,
                "text": v.text,
            }
        out.append(
            head
            | {
                "impressions": r.counts.impressions,
                "clicks": r.counts.clicks,
                "conversions": r.counts.conversions,
                "conversion_value": r.counts.value,
                "control_impressions": r.control.impressions,
                "control_clicks": r.control.clicks,
                "control_conversions": r.control.conversions,
                "enough_data": r.ctr.enough_data,
            }
            | _comparison_columns("ctr", r.ctr)
            | _comparison_columns("conversion_rate", r.conversion)
        )
    return out


# Spreadsheets run a cell that starts with one of these as a formula, also after leading
# whitespace (" =1+1", "\t=..."), and a tab or line break may start one; variant text and
# names are untrusted, so such a cell is written with a leading apostrophe. The
# full-width forms are there for spreadsheets that normalise them.
FORMULA_STARTS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
CONTROL_STARTS = ("\t", "\r", "\n")


def csv_safe(value: object) -> object:
    """A cell as written to the CSV: text that a spreadsheet would run is defused.

    Numbers stay numbers (a negative uplift is not a formula); None is an empty cell.
    """
    if value is None:
        return ""
    if isinstance(value, str) and (
        value.startswith(CONTROL_STARTS) or value.lstrip().startswith(FORMULA_STARTS)
    ):
        return "'" + value
    return value


def chart_data(metrics: PromptMetrics) -> dict:
    """What metrics.js draws, as plain JSON (the template embeds it with json_script)."""

    def ctr_interval(counts: Counts) -> list[float | None]:
        """The Wilson interval of one arm's CTR, for the error bars of the version chart."""
        if not counts.impressions:
            return [None, None]
        clicks = min(counts.clicks, counts.impressions)
        return list(wilson_interval(clicks, counts.impressions, confidence=metrics.confidence))

    return {
        "confidence": metrics.confidence,
        "control": {
            "ctr": rate(metrics.control.clicks, metrics.control.impressions),
            "interval": ctr_interval(metrics.control),
        },
        "versions": [
            {"label": r.label, "ctr": r.ctr.rate, "interval": ctr_interval(r.counts)}
            for r in metrics.versions
        ],
        "segments": [
            {
                "label": r.label,
                "ctr": r.ctr.rate,
                "uplift": r.ctr.uplift,
                "interval": [r.ctr.uplift_low, r.ctr.uplift_high],
                "enough": r.ctr.enough_data,
            }
            for r in metrics.segments
        ],
    }
