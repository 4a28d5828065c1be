"""The queue's reads: filters, status counts, keyset pages, near-duplicates, word diffs."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from generation.models import Variant
from review import queue as q
from tests.factories import (
    ProductFactory,
    PromptVersionFactory,
    RunFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

QUEUE = reverse("review:queue")
HX = {"HX-Request": "true"}


@pytest.fixture
def copywriter(client):
    user = UserFactory(username="cw", groups=["copywriter"])
    client.force_login(user)
    return user


def _shown(response) -> list[int]:
    """The pks of the variant rows a queue response shows, in order."""
    rows = re.findall(
        r'<article class="variant[^"]*" id="variant-(\d+)"', response.content.decode()
    )
    return [int(pk) for pk in rows]


def _fail(name: str) -> list[dict]:
    return [
        {"name": "length", "passed": True, "message": "ok"},
        {"name": name, "passed": False, "message": "bad"},
    ]


# --- filters ---------------------------------------------------------------------------


def test_the_queue_shows_variants_in_review_by_default_and_other_statuses_on_request(
    client, copywriter
):
    waiting = VariantFactory()
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    assert _shown(client.get(QUEUE)) == [waiting.pk]
    assert _shown(client.get(QUEUE, {"status": "published"})) == [live.pk]


def test_the_queue_filters_by_prompt_product_segment_language_check_and_run(client, copywriter):
    base = VariantFactory(language="en")
    by_prompt = VariantFactory(language="en")
    by_sku = VariantFactory(product=ProductFactory(sku="TRAIL-9", name="Ridge Boot"))
    by_segment = VariantFactory(segment=SegmentFactory(slug="runners-high"))
    german = VariantFactory(language="de")
    flagged = VariantFactory(checks=_fail("overreach"), checks_failed=1)
    other_flag = VariantFactory(checks=_fail("length"), checks_failed=1)
    run = RunFactory()
    in_run = VariantFactory(run=run, prompt_version=run.prompt_version)

    cases = {
        "prompt": (by_prompt.prompt.slug, [by_prompt]),
        "product": ("trail-", [by_sku]),  # the start of a SKU, whatever the case
        "segment": ("runners-high", [by_segment]),
        "language": ("de", [german]),
        "check": ("overreach", [flagged]),
        "run": (run.pk, [in_run]),
    }
    for name, (value, expected) in cases.items():
        assert _shown(client.get(QUEUE, {name: value})) == [v.pk for v in expected], name
    assert _shown(client.get(QUEUE, {"product": "ridge"})) == [by_sku.pk]  # name search
    assert base.pk in _shown(client.get(QUEUE)) and other_flag.pk in _shown(client.get(QUEUE))


def test_filters_combine_and_links_keep_them(client, copywriter):
    german = VariantFactory(language="de", checks=_fail("language"), checks_failed=1)
    VariantFactory(language="de")
    response = client.get(QUEUE, {"language": "de", "check": "language"})
    assert _shown(response) == [german.pk]
    body = response.content.decode()
    focus = reverse("review:variant", args=[german.pk])
    assert f'href="{focus}?status=in_review&amp;language=de&amp;check=language"' in body


def test_invalid_filter_values_are_left_out_and_said_so(client, copywriter):
    variant = VariantFactory()
    response = client.get(QUEUE, {"status": "nonsense", "run": "abc", "language": "<b>"})
    assert response.status_code == 200
    assert _shown(response) == [variant.pk]
    body = response.content.decode()
    assert "Left out:" in body and "<b>" not in body.split("Left out:")[1][:300]


def test_the_filter_form_works_with_and_without_htmx(client, copywriter):
    VariantFactory(language="de")
    plain = client.get(QUEUE, {"language": "de"}).content.decode()
    partial = client.get(QUEUE, {"language": "de"}, headers=HX).content.decode()
    assert '<form id="filters"' in plain and 'method="get"' in plain and "<html" in plain
    assert partial.lstrip().startswith('<div id="queue"') and "<html" not in partial
    assert 'hx-push-url="true"' in partial and 'hx-target="#queue"' in partial


def test_status_counts_follow_the_other_filters_in_one_query(django_assert_num_queries):
    VariantFactory.create_batch(2, language="de")
    VariantFactory(language="de", status=Variant.Status.REJECTED)
    VariantFactory(language="en")
    with django_assert_num_queries(1):
        counts = q.status_counts({"status": "published", "language": "de"})
    assert counts == {"in_review": 2, "rejected": 1}


def test_the_queue_shows_the_counts_per_status(client, copywriter):
    VariantFactory.create_batch(3)
    VariantFactory(status=Variant.Status.REJECTED)
    body = client.get(QUEUE).content.decode()
    assert 'In review <span class="count">3</span>' in body
    assert 'Rejected <span class="count">1</span>' in body


# --- order and pages -------------------------------------------------------------------


def test_variants_with_failed_checks_come_first_then_the_oldest(client, copywriter):
    now = timezone.now()
    old = VariantFactory()
    new = VariantFactory()
    one_fail = VariantFactory(checks=_fail("length"), checks_failed=1)
    two_fails = VariantFactory(checks_failed=2)
    Variant.objects.filter(pk=old.pk).update(created=now - timedelta(hours=2))
    Variant.objects.filter(pk=new.pk).update(created=now - timedelta(hours=1))
    assert _shown(client.get(QUEUE)) == [two_fails.pk, one_fail.pk, old.pk, new.pk]


def _walk(qs, size):
    """Every page forward from the first, then back again from the last."""
    pages = [q.page_fetch(qs, size=size)]
    while pages[-1].next_key:
        pages.append(q.page_fetch(qs, after=pages[-1].next_key, size=size))
    back = [pages[-1]]
    while back[-1].previous_key:
        back.append(q.page_fetch(qs, before=back[-1].previous_key, size=size))
    return pages, back


def test_keyset_pages_cover_every_variant_once_in_order_both_ways():
    created = timezone.now()
    variants = VariantFactory.create_batch(23)
    for i, v in enumerate(variants):
        # Ties on created and on checks_failed, so the id breaks them.
        Variant.objects.filter(pk=v.pk).update(checks_failed=i % 3, created=created)
    expected = list(
        Variant.objects.order_by("-checks_failed", "created", "id").values_list("pk", flat=True)
    )
    forward, backward = _walk(Variant.objects.in_review(), size=5)
    assert [v.pk for page in forward for v in page.variants] == expected
    assert [len(p.variants) for p in forward] == [5, 5, 5, 5, 3]
    assert [v.pk for page in reversed(backward) for v in page.variants] == expected
    assert backward[-1].first and not forward[-1].next_key


def test_deciding_variants_on_a_page_does_not_skip_any_on_the_next(client, copywriter):
    variants = VariantFactory.create_batch(25)
    first = client.get(QUEUE)
    assert _shown(first) == [v.pk for v in variants[:20]]
    # Someone decides the whole first page while this reviewer reads it.
    Variant.objects.filter(pk__in=[v.pk for v in variants[:20]]).update(
        status=Variant.Status.PUBLISHED
    )
    next_link = first.context["next_qs"]
    assert _shown(client.get(f"{QUEUE}?{next_link}")) == [v.pk for v in variants[20:]]


def test_a_bad_cursor_shows_the_first_page(client, copywriter):
    variant = VariantFactory()
    for cursor in ("garbage", "1.2", "99.99999999999999999999.1", "-1.5.5"):
        assert _shown(client.get(QUEUE, {"after": cursor})) == [variant.pk], cursor


def test_the_queue_page_costs_the_same_queries_deep_in_a_large_queue(
    client, copywriter, django_assert_max_num_queries
):
    version = PromptVersionFactory()
    products = ProductFactory.create_batch(15)
    segments = SegmentFactory.create_batch(10)
    Variant.objects.bulk_create(
        Variant(
            prompt=version.prompt, prompt_version=version, product=p, segment=s,
            status=Variant.Status.IN_REVIEW, text=f"Copy {p.pk} for {s.pk}",
            checks_failed=(p.pk + s.pk) % 3,
        )
        for p in products for s in segments
    )  # fmt: skip
    response = client.get(QUEUE)
    for _ in range(4):  # a few pages in
        response = client.get(f"{QUEUE}?{response.context['next_qs']}")
    with django_assert_max_num_queries(13):  # 13: the reviewer's languages
        response = client.get(f"{QUEUE}?{response.context['next_qs']}")
    assert len(_shown(response)) == 20
    with django_assert_max_num_queries(13):  # 13: the reviewer's languages
        client.get(QUEUE, {"check": "length", "product": "AeroStride"}, headers=HX)


# --- near-duplicates -------------------------------------------------------------------

TEXT = (
    "The AeroStride Runner keeps your daily miles light and cushioned, with breathable "
    "mesh that keeps feet cool from the first step to the last stretch of the run."
)


def test_near_identical_variants_of_one_product_and_version_are_grouped(client, copywriter):
    version = PromptVersionFactory()
    product = ProductFactory()
    twins = [
        VariantFactory(prompt_version=version, product=product, text=TEXT),
        VariantFactory(prompt_version=version, product=product, text=TEXT.replace("cool", "fresh")),
        VariantFactory(prompt_version=version, product=product, text=TEXT + " Go."),
    ]
    different = VariantFactory(
        prompt_version=version, product=product, text="Built for trail days in the rain."
    )
    other_product = VariantFactory(prompt_version=version, text=TEXT)
    body = client.get(QUEUE).content.decode()
    assert body.count("near-identical variants</strong>") == 1
    assert "3 near-identical variants</strong>" in body
    group = body.split('class="dup-group"')[1].split("</section>")[0]
    for twin in twins:
        assert f'name="ids" value="{twin.pk}"' in group
    for alone in (different, other_product):
        assert f'id="variant-{alone.pk}"' not in group


def test_deciding_a_near_duplicate_group_together(client, copywriter):
    version = PromptVersionFactory()
    product = ProductFactory()
    twins = [
        VariantFactory(prompt_version=version, product=product, text=TEXT),
        VariantFactory(prompt_version=version, product=product, text=TEXT + " Now."),
    ]
    body = client.get(QUEUE).content.decode()
    group = body.split('class="dup-group"')[1].split("</header>")[0]
    assert "Decide together" in group and reverse("review:bulk") in group
    data = {"ids": [t.pk for t in twins], "action": "reject", "reason": "Off brand"}
    for twin in twins:
        data[f"rev-{twin.pk}"] = 0
    response = client.post(reverse("review:bulk") + "?status=in_review", data, headers=HX)
    assert "2 variants rejected." in response.content.decode()


def test_near_identical_uses_shingles_and_a_word_ratio():
    assert q.near_identical(TEXT, TEXT.replace("cool", "fresh"))
    assert q.near_identical("Light and fast shoe.", "Light and fast shoes.") is False
    assert q.near_identical("Light, fast and cushioned", "light fast and cushioned")
    assert not q.near_identical(TEXT, "Built for trail days in the rain and the mud.")


def test_grouping_keeps_the_page_order_and_only_groups_variants_in_review():
    version = PromptVersionFactory()
    product = ProductFactory()
    a = VariantFactory(prompt_version=version, product=product, text=TEXT)
    b = VariantFactory(prompt_version=version, product=product, text="Something else entirely.")
    c = VariantFactory(prompt_version=version, product=product, text=TEXT)
    d = VariantFactory(
        prompt_version=version, product=product, text=TEXT, status=Variant.Status.PUBLISHED
    )
    entries = q.queue_entries([a, b, c, d])
    assert [[v.pk for v in e.variants] for e in entries] == [[a.pk, c.pk], [b.pk], [d.pk]]


# --- word diff -------------------------------------------------------------------------


def test_word_diff_marks_removed_and_added_words_and_keeps_whitespace():
    diff = q.word_diff("Light and quick shoe.\nFor roads.", "Light, quick shoe.\nFor trails.")
    assert diff.left == [
        ("del", "Light and"), ("same", " quick shoe.\nFor "), ("del", "roads."),
    ]  # fmt: skip
    assert diff.right == [
        ("ins", "Light,"), ("same", " quick shoe.\nFor "), ("ins", "trails."),
    ]  # fmt: skip
    assert diff.changed and not q.word_diff("Same words", "Same words").changed


def test_the_word_diff_escapes_every_token(client, copywriter):
    product = ProductFactory(description="Plain <b>base</b> copy.")
    variant = VariantFactory(product=product, text="Plain <script>alert(1)</script> copy.")
    body = client.get(reverse("review:variant", args=[variant.pk])).content.decode()
    assert "<script>alert(1)</script>" not in body and "<b>base</b>" not in body
    assert "<ins>&lt;script&gt;alert(1)&lt;/script&gt;</ins>" in body
    assert "<del>&lt;b&gt;base&lt;/b&gt;</del>" in body


def test_the_segment_summary_lists_the_top_values_and_their_shares():
    rows = q.segment_summary(
        {"region": {"north": 0.1, "south": 0.6, "east": 0.2, "west": 0.1}, "tier": {"high": 1}}
    )
    assert rows == [
        {"attribute": "region", "values": [("south", 60), ("east", 20), ("north", 10)], "more": 1},
        {"attribute": "tier", "values": [("high", 100)], "more": 0},
    ]


def test_reject_reasons_combine_the_list_and_the_reviewers_words():
    assert q.reject_reason("Too long", "") == "Too long"
    assert q.reject_reason("Too long", "by 40 characters") == "Too long: by 40 characters"
    assert q.reject_reason("Other", "") == ""
    assert q.reject_reason("Other", "Wrong season") == "Other: Wrong season"
    assert q.reject_reason("Too pushy", "") == "Too pushy"  # free text from older forms
