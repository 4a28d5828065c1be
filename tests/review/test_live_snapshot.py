"""The live endpoint's fast path and each web process's snapshot of live copy."""

import time
from datetime import timedelta

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from generation.models import Product, Variant
from review import delivery, services
from review.auth import api_token_create, lease_size, token_rate_wait
from review.models import ReviewEvent
from review.rest import live as api
from tests.factories import (
    CustomerFactory,
    PromptVersionFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

LIVE = "/api/v1/live/"
view = api._live_view


def _reader(**token_fields) -> APIClient:
    _token, key = api_token_create(name="shop", kind="read", **token_fields)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def reader():
    return _reader()


def _params(variant, **extra):
    return {
        "prompt": variant.prompt.slug,
        "product": variant.product.sku,
        "segment": variant.segment.slug,
        **extra,
    }


def _in_review_beside(live: Variant, text: str) -> Variant:
    return VariantFactory(
        status=Variant.Status.IN_REVIEW,
        prompt_version=PromptVersionFactory(prompt=live.prompt),
        product=live.product,
        segment=live.segment,
        text=text,
    )


@pytest.mark.parametrize("status", [Variant.Status.PUBLISHED, Variant.Status.IN_REVIEW])
def test_the_fast_path_answers_byte_for_byte_as_the_drf_view(reader, status, monkeypatch):
    handed_over = []
    monkeypatch.setattr(api, "_live_view", lambda request: handed_over.append(1) or view(request))
    # U+2028 and U+2029: DRF's renderer escapes them (JavaScript ends a string at either).
    variant = VariantFactory(
        status=status, text="Copy with “quotes”, ünïcode,\u2028a line and\u2029a paragraph"
    )
    fast = reader.get(LIVE, _params(variant))
    assert handed_over == []
    # A parameter the fast path does not know sends the request to LiveView, which
    # ignores it.
    slow = reader.get(LIVE, _params(variant, utm_source="mail"))
    assert handed_over == [1]
    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content
    published = status == Variant.Status.PUBLISHED
    assert (b"\\u2028" in fast.content) is published and "\u2028" not in fast.content.decode()
    for header in ("Content-Type", "ETag", "Cache-Control", "Vary"):
        assert fast[header] == slow[header], header
    assert fast.json()["source"] == ("segment" if published else "base_copy")


def test_the_fast_path_revalidates_with_the_etag(reader):
    variant = VariantFactory(status=Variant.Status.PUBLISHED)
    first = reader.get(LIVE, _params(variant))
    again = reader.get(LIVE, _params(variant), HTTP_IF_NONE_MATCH=f'"x", {first["ETag"]}')
    assert again.status_code == 304 and again["ETag"] == first["ETag"]
    assert again.content == b""


def test_an_approval_and_its_undo_reach_live_copy_at_once(reader):
    live = VariantFactory(status=Variant.Status.PUBLISHED, text="Old copy")
    assert reader.get(LIVE, _params(live)).json()["text"] == "Old copy"
    newer = _in_review_beside(live, "New copy")
    user = UserFactory()

    services.variant_approve(variant=newer, user=user)
    assert reader.get(LIVE, _params(live)).json()["text"] == "New copy"

    event = ReviewEvent.objects.filter(variant=newer).latest("id")
    services.decision_undo(event=event, user=user)
    assert reader.get(LIVE, _params(live)).json()["text"] == "Old copy"


def test_a_new_base_copy_reaches_the_fallback_at_once(reader):
    variant = VariantFactory(status=Variant.Status.IN_REVIEW)
    reader.get(LIVE, _params(variant))
    variant.product.description = "Rewritten base copy"
    variant.product.save()
    assert reader.get(LIVE, _params(variant)).json()["text"] == "Rewritten base copy"


def test_within_the_check_window_a_block_is_served_from_memory(reader, settings):
    settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS = 60
    variant = VariantFactory(status=Variant.Status.PUBLISHED, text="Remembered")
    reader.get(LIVE, _params(variant))
    with CaptureQueriesContext(connection) as queries:
        body = reader.get(LIVE, _params(variant)).json()
    assert body["text"] == "Remembered"
    # The token is remembered too (TOKEN_CACHE_SECONDS): nothing reaches the database.
    assert len(queries) == 0


def test_another_process_bumping_the_epoch_makes_this_one_reload(reader):
    """A write made elsewhere without a post_save here: only the epoch in Redis says so."""
    live = VariantFactory(status=Variant.Status.PUBLISHED, text="Before")
    reader.get(LIVE, _params(live))
    Variant.objects.filter(pk=live.pk).update(text="After")  # no signal
    assert reader.get(LIVE, _params(live)).json()["text"] == "Before"
    delivery.live_changed(
        prompt_id=live.prompt_id, segment_id=live.segment_id, product_id=live.product_id
    )
    assert reader.get(LIVE, _params(live)).json()["text"] == "After"


def test_what_no_epoch_announced_is_reloaded_after_the_maximum_age(reader, settings):
    live = VariantFactory(status=Variant.Status.PUBLISHED, text="Before")
    reader.get(LIVE, _params(live))
    Variant.objects.filter(pk=live.pk).update(text="After")  # no signal, no epoch
    assert reader.get(LIVE, _params(live)).json()["text"] == "Before"
    settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS = 0
    assert reader.get(LIVE, _params(live)).json()["text"] == "After"


def test_a_product_added_after_the_block_was_loaded_is_found(reader):
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    reader.get(LIVE, _params(live))
    # bulk_create sends no post_save: the block does not know the product, and the
    # request falls through to the database.
    Product.objects.bulk_create([Product(sku="NEW-1", name="New", description="Base")])
    body = reader.get(LIVE, _params(live, product="NEW-1")).json()
    assert (body["product"], body["text"], body["source"]) == ("NEW-1", "Base", "base_copy")


def test_a_block_over_the_row_limit_is_read_from_the_database(reader, settings):
    settings.DELIVERY_SNAPSHOT_MAX_ROWS = 1
    live = VariantFactory(status=Variant.Status.PUBLISHED, text="Live")
    other = VariantFactory(
        status=Variant.Status.PUBLISHED,
        prompt_version=live.prompt_version,
        segment=live.segment,
        text="Other",
    )
    assert reader.get(LIVE, _params(live)).json()["text"] == "Live"
    assert reader.get(LIVE, _params(other)).json()["text"] == "Other"
    block = delivery.snapshot.block(live.prompt.slug, live.segment.slug)
    assert block is not None and block.slots is None  # two products: too many to hold


def test_least_recently_used_blocks_go_first(reader, settings):
    settings.DELIVERY_SNAPSHOT_MAX_ROWS = 1
    first = VariantFactory(status=Variant.Status.PUBLISHED)
    second = VariantFactory(
        status=Variant.Status.PUBLISHED,
        prompt_version=first.prompt_version,
        product=first.product,
        segment=SegmentFactory(),
    )
    reader.get(LIVE, _params(first))
    reader.get(LIVE, _params(second))
    held = list(delivery.snapshot._blocks)
    assert held == [(second.prompt.slug, second.segment.slug, "")]  # no language asked
    assert reader.get(LIVE, _params(first)).json()["variant_id"] == first.pk


@pytest.fixture
def redis_down(monkeypatch):
    """Delivery's Redis client pointed at a port nobody listens on."""
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setattr(delivery, "_redis", lambda: dead)
    monkeypatch.setattr(delivery, "_redis_down_until", 0.0)
    yield
    monkeypatch.setattr(delivery, "_redis_down_until", 0.0)


def test_with_redis_down_live_copy_is_still_served(reader, redis_down):
    live = VariantFactory(status=Variant.Status.PUBLISHED, text="Still here")
    for _ in range(3):  # the first finds Redis down; the next ones leave it alone
        response = reader.get(LIVE, _params(live))
        assert response.status_code == 200
        assert response.json()["text"] == "Still here"
    assert delivery._redis_down_until > 0


def test_with_redis_down_an_approval_still_goes_through(redis_down):
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    newer = _in_review_beside(live, "Approved while Redis was down")
    services.variant_approve(variant=newer, user=UserFactory())
    newer.refresh_from_db()
    assert newer.status == Variant.Status.PUBLISHED


# ---------------------------------------------------------------- rate limit leases


def test_a_lease_is_one_request_unless_the_token_allows_thousands():
    assert [lease_size(r) for r in (1, 60, 1999, 2000, 5000, 10**9)] == [1, 1, 1, 2, 5, 100]


def test_a_busy_token_takes_requests_from_redis_a_lease_at_a_time():
    token, _key = api_token_create(name="busy shop", kind="read", rate_per_minute=5000)
    client = delivery._redis()

    def counted() -> int:
        keys = client.keys(f"hyperpers:rate:{token.key_hash}:*")
        return sum(int(client.get(k)) for k in keys)

    assert token_rate_wait(token) is None
    assert counted() == 5
    for _ in range(4):
        assert token_rate_wait(token) is None
    assert counted() == 5  # served from the lease
    assert token_rate_wait(token) is None
    assert counted() == 10


def test_a_lease_never_grants_past_the_limit():
    token, _key = api_token_create(name="edge shop", kind="read", rate_per_minute=2000)
    client = delivery._redis()
    if time.time() % 60 > 58:  # not across the turn of a minute
        time.sleep(60 - time.time() % 60)
    window = int(time.time() // 60)
    client.set(f"hyperpers:rate:{token.key_hash}:{window}", 1999, ex=120)
    assert token_rate_wait(token) is None  # the 2000th
    wait = token_rate_wait(token)
    assert wait is not None and 1 <= wait <= 60


def _two_buckets():
    """Two published variants of one prompt and segment, in different buckets."""
    first = VariantFactory(status=Variant.Status.PUBLISHED, text="First")
    second = VariantFactory(
        status=Variant.Status.PUBLISHED,
        prompt_version=first.prompt_version,
        segment=first.segment,
        text="Second",
    )
    assert first.product_id % delivery.BUCKETS != second.product_id % delivery.BUCKETS
    return first, second


def test_an_approval_makes_processes_read_one_bucket_again(reader):
    first, second = _two_buckets()
    reader.get(LIVE, _params(first))
    block = delivery.snapshot.block(first.prompt.slug, first.segment.slug)
    untouched = block.slots[second.product.sku]

    newer = _in_review_beside(first, "Approved")
    services.variant_approve(variant=newer, user=UserFactory())
    with CaptureQueriesContext(connection) as queries:
        assert reader.get(LIVE, _params(first)).json()["text"] == "Approved"
    (reload,) = [q["sql"] for q in queries if "LEFT JOIN" in q["sql"]]
    assert "WHERE p.id" in reload  # the bucket's products, not the whole block
    assert block.slots[second.product.sku] is untouched


def test_a_bucket_past_the_maximum_age_is_read_again_alone(reader, settings):
    first, second = _two_buckets()
    reader.get(LIVE, _params(first))
    Variant.objects.filter(pk__in=[first.pk, second.pk]).update(text="Changed quietly")
    block = delivery.snapshot.block(first.prompt.slug, first.segment.slug)
    block.loaded[first.product_id % delivery.BUCKETS] -= settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
    assert reader.get(LIVE, _params(first)).json()["text"] == "Changed quietly"
    assert reader.get(LIVE, _params(second)).json()["text"] == "Second"


def _due_by_age(block, *variants, settings):
    """Make the buckets of these variants' products due by age, and the block due for a
    check of its epochs."""
    for variant in variants:
        block.loaded[variant.product_id % delivery.BUCKETS] -= (
            settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
        )
    block.verified -= settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS


def _content_reads(queries) -> list[str]:
    """The queries that read a block's slots (not only their rows' versions)."""
    return [q["sql"] for q in queries if q["sql"].startswith("SELECT p.sku")]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row versions")
def test_a_bucket_due_by_age_with_nothing_changed_is_checked_not_read(reader, settings):
    """The safety net's check: one query of row versions, no copy read, the slot and
    its rendered answer kept, and the bucket deemed loaded now."""
    first, _second = _two_buckets()
    reader.get(LIVE, _params(first))
    block = delivery.snapshot.block(first.prompt.slug, first.segment.slug)
    slot, bucket = block.slots[first.product.sku], first.product_id % delivery.BUCKETS
    _due_by_age(block, first, settings=settings)
    with CaptureQueriesContext(connection) as queries:
        assert reader.get(LIVE, _params(first)).json()["text"] == "First"
    assert _content_reads(queries) == []
    # The slots' versions and their experiments' (none run here, but the check cannot
    # know), of the due bucket's products only.
    slots, experiments = [q["sql"] for q in queries if "xmin" in q["sql"]]
    assert "p.id = ANY" in slots and "e.product_id = ANY" in experiments
    assert block.slots[first.product.sku] is slot
    assert block.verified - block.loaded[bucket] < 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row versions")
@pytest.mark.parametrize(
    "change",
    ["variant text", "variant retired", "product renamed", "a variant published"],
)
def test_a_quiet_change_moves_the_digest_and_the_bucket_is_read(reader, settings, change):
    """Each kind of row the bucket is read from, written behind the app's back (no
    signal, no epoch), inside this test's one transaction (the same xmin: the ctid
    moves): the check finds it and reads the bucket again."""
    first, second = _two_buckets()
    version = PromptVersionFactory(prompt=first.prompt)  # before the block is read
    reader.get(LIVE, _params(first))
    block = delivery.snapshot.block(first.prompt.slug, first.segment.slug)
    params, expected = _params(first), "Changed"
    if change == "variant text":
        Variant.objects.filter(pk=first.pk).update(text="Changed")
    elif change == "variant retired":
        Variant.objects.filter(pk=first.pk).update(status=Variant.Status.RETIRED)
        expected = first.product.description
    elif change == "product renamed":
        Product.objects.filter(pk=first.product_id).update(sku="RENAMED")
        params, expected = {**params, "product": "RENAMED"}, "First"
    else:
        Variant.objects.filter(pk=first.pk).update(status=Variant.Status.RETIRED)
        Variant.objects.bulk_create(
            [
                Variant(
                    prompt=first.prompt,
                    prompt_version=version,
                    product=first.product,
                    segment=first.segment,
                    status=Variant.Status.PUBLISHED,
                    language=first.language,
                    text="Changed",
                )
            ]
        )
    _due_by_age(block, first, settings=settings)
    with CaptureQueriesContext(connection) as queries:
        assert reader.get(LIVE, params).json()["text"] == expected
    (read,) = _content_reads(queries)
    assert "p.id = ANY" in read
    assert block.slots[second.product.sku].text == "Second"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row versions")
def test_a_write_after_the_read_moves_the_digest_however_fast(reader, settings):
    """The digest a bucket keeps is of the rows it was read from: a quiet write just
    after a read (here, before the next request) is found at the next check."""
    first, _second = _two_buckets()
    newer = _in_review_beside(first, "Approved")
    services.variant_approve(variant=newer, user=UserFactory())  # the bucket's epoch moves
    reader.get(LIVE, _params(first))  # the bucket is read again, with its digest
    block = delivery.snapshot.block(first.prompt.slug, first.segment.slug)
    Variant.objects.filter(pk=newer.pk).update(text="Quietly after")
    _due_by_age(block, first, settings=settings)
    assert reader.get(LIVE, _params(first)).json()["text"] == "Quietly after"


def test_without_row_versions_a_bucket_due_by_age_is_read_whole(reader, settings, monkeypatch):
    """SQLite keeps no row versions (and a check that cannot tell says so): every
    bucket due by age is read again, as before the check existed."""
    first, _second = _two_buckets()
    reader.get(LIVE, _params(first))
    block = delivery.snapshot.block(first.prompt.slug, first.segment.slug)
    monkeypatch.setattr(delivery.Snapshot, "_versions", lambda self, block, buckets: None)
    slot = block.slots[first.product.sku]
    _due_by_age(block, first, settings=settings)
    with CaptureQueriesContext(connection) as queries:
        assert reader.get(LIVE, _params(first)).json()["text"] == "First"
    assert len(_content_reads(queries)) == 1
    assert block.slots[first.product.sku] is slot  # read again, and equal: kept


def test_a_digest_is_the_same_for_the_same_rows_in_any_order():
    """Digests are compared across processes (each with its own hash salt): the same
    rows give the same digest whatever order they come in; a version moved, or other
    stored languages for the bucket, give another."""
    block = delivery._Block(1, "p", 2, "s", {}, [], [], 0.0, 0.0)
    rows = [(0, "10 (0,1)"), (64, "10 (0,2) 11 (3,4) 9 (1,1)"), (1, "12 (5,5)")]
    stored = [()] * delivery.BUCKETS
    digests = delivery._digests(rows, block, stored)
    assert delivery._digests(rows[::-1], block, stored) == digests
    assert len(digests[0]) == 32 and digests[1] != digests[0]
    moved = delivery._digests([(0, "10 (0,1)"), (64, "10 (0,2) 11 (3,5) 9 (1,1)")], block, stored)
    assert moved[0] != digests[0] and moved[1] != digests[1]
    assert delivery._digests(rows, block, [("de",)] * delivery.BUCKETS)[0] != digests[0]
    assert delivery._digests(None, block, stored) is None


def _held_by_two_processes(reader, settings):
    """Two published variants in two buckets, held by this process's snapshot and by
    another's (a second Snapshot: its own claims and checks, the same Redis)."""
    first, second = _two_buckets()
    reader.get(LIVE, _params(first))
    other = delivery.Snapshot()
    mine = delivery.snapshot.block(first.prompt.slug, first.segment.slug)
    theirs = other.block(first.prompt.slug, first.segment.slug)
    assert mine.digests == theirs.digests  # the same rows: the same digests
    return first, second, mine, other, theirs


def _versions_reads(queries) -> list[str]:
    return [q["sql"] for q in queries if "xmin" in q["sql"]]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row versions")
def test_a_check_another_process_published_is_taken_not_repeated(reader, settings):
    """The fleet checks a bucket once per maximum age: a process whose bucket comes due
    takes another's check of the same rows as its own, with that check's time."""
    first, _second, mine, other, theirs = _held_by_two_processes(reader, settings)
    bucket = first.product_id % delivery.BUCKETS
    _due_by_age(mine, first, settings=settings)
    _due_by_age(theirs, first, settings=settings)
    before = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        other.block(first.prompt.slug, first.segment.slug)
    assert len(_versions_reads(queries)) == 2  # the other process checked: slots, experiments
    assert theirs.loaded[bucket] >= before

    with CaptureQueriesContext(connection) as queries:
        assert reader.get(LIVE, _params(first)).json()["text"] == "First"
    assert _versions_reads(queries) == [] and _content_reads(queries) == []
    assert mine.loaded[bucket] >= before  # deemed checked when the other one checked
    assert mine.loaded[bucket] <= time.monotonic()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row versions")
def test_a_published_check_of_other_rows_is_not_taken(reader, settings):
    """A process that missed a change (no epoch told it) holds a digest the other
    process's check no longer finds: it checks itself, and reads the bucket again."""
    first, _second, mine, other, theirs = _held_by_two_processes(reader, settings)
    Variant.objects.filter(pk=first.pk).update(text="Changed quietly")
    _due_by_age(mine, first, settings=settings)
    _due_by_age(theirs, first, settings=settings)
    other.block(first.prompt.slug, first.segment.slug)
    assert theirs.slots[first.product.sku].text == "Changed quietly"
    with CaptureQueriesContext(connection) as queries:
        assert reader.get(LIVE, _params(first)).json()["text"] == "Changed quietly"
    assert len(_content_reads(queries)) == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row versions")
def test_a_bucket_another_process_is_checking_waits_unless_overdue(reader, settings):
    """While another process holds the claim on a bucket (it is checking it), this one
    does not check it too: it serves what it holds until that check is published. A
    bucket overdue (twice the maximum age) is checked whatever the claim."""
    first, _second, mine, _other, _theirs = _held_by_two_processes(reader, settings)
    bucket = first.product_id % delivery.BUCKETS
    claim = delivery.CLAIM_PREFIX + delivery._check_field(mine, bucket)
    delivery._redis().set(claim, "another process", ex=30)
    _due_by_age(mine, first, settings=settings)
    due = mine.loaded[bucket]
    with CaptureQueriesContext(connection) as queries:
        assert reader.get(LIVE, _params(first)).json()["text"] == "First"
    assert _versions_reads(queries) == []
    assert mine.loaded[bucket] == due  # still due: next round, the other's check

    _due_by_age(mine, first, settings=settings)  # now twice the age
    with CaptureQueriesContext(connection) as queries:
        assert reader.get(LIVE, _params(first)).json()["text"] == "First"
    assert len(_versions_reads(queries)) == 2
    assert delivery._redis().get(claim) == b"another process"  # not taken: not given back


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row versions")
def test_a_check_gives_back_its_claim_and_publishes_what_it_found(reader, settings):
    first, _second, mine, _other, _theirs = _held_by_two_processes(reader, settings)
    bucket = first.product_id % delivery.BUCKETS
    field = delivery._check_field(mine, bucket)
    _due_by_age(mine, first, settings=settings)
    wall = time.time()
    reader.get(LIVE, _params(first))
    client = delivery._redis()
    assert client.get(delivery.CLAIM_PREFIX + field) is None
    digest, at, owner = delivery._published_check(client.hget(delivery.CHECKS_KEY, field))
    assert digest == mine.digests[bucket] and at >= wall
    assert owner == delivery.snapshot._owner()
    assert (
        0 < client.ttl(delivery.CHECKS_KEY) <= 2 * settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS + 60
    )


def _eventually(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


@pytest.mark.django_db(transaction=True)  # the checker thread reads on its own connection
def test_buckets_due_by_age_are_checked_by_a_thread_not_the_request(reader, settings):
    """The request that finds a bucket due by age serves what is held and reads nothing;
    the process's checker thread finds the quiet change, and the next request serves
    it. A bucket overdue (twice the age: the thread stuck) is checked by the request."""
    settings.DELIVERY_SNAPSHOT_BACKGROUND_CHECKS = True
    settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS = 30  # the thread's own round: not now
    first, second = _two_buckets()
    reader.get(LIVE, _params(first))
    block = delivery.snapshot.block(first.prompt.slug, first.segment.slug)
    Variant.objects.filter(pk=first.pk).update(text="Changed quietly")  # no signal, no epoch
    _due_by_age(block, first, settings=settings)
    with CaptureQueriesContext(connection) as queries:
        assert reader.get(LIVE, _params(first)).json()["text"] == "First"
    assert queries.captured_queries == []
    assert _eventually(lambda: block.slots[first.product.sku].text == "Changed quietly")
    assert reader.get(LIVE, _params(first)).json()["text"] == "Changed quietly"

    Variant.objects.filter(pk=second.pk).update(text="Overdue")
    _due_by_age(block, second, second, settings=settings)  # twice the age
    with CaptureQueriesContext(connection) as queries:
        assert reader.get(LIVE, _params(second)).json()["text"] == "Overdue"
    assert len(_content_reads(queries)) == 1


@pytest.mark.django_db(transaction=True)  # the checker thread reads on its own connection
def test_the_checker_thread_checks_due_buckets_on_its_own_clock(reader, settings):
    """With no request at all, a bucket that comes due is checked within a round of the
    thread (DELIVERY_SNAPSHOT_VERIFY_SECONDS), so buckets are not left to come due in a
    burst when traffic returns; a block nobody asked for within the maximum age is not
    kept fresh."""
    settings.DELIVERY_SNAPSHOT_BACKGROUND_CHECKS = True
    settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS = 0.05
    first, second = _two_buckets()
    reader.get(LIVE, _params(first))
    block = delivery.snapshot.block(first.prompt.slug, first.segment.slug)
    Variant.objects.filter(pk=first.pk).update(text="Changed quietly")
    _due_by_age(block, first, settings=settings)
    assert _eventually(lambda: block.slots[first.product.sku].text == "Changed quietly")

    max_age = settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
    now = time.monotonic()
    _due_by_age(block, second, settings=settings)
    key = (first.prompt.slug, first.segment.slug, "")
    assert (
        delivery.snapshot._aged_blocks(now) == [key]
        or block.loaded[second.product_id % delivery.BUCKETS] > now - max_age
    )  # (or the thread was quicker)
    block.requested -= max_age
    _due_by_age(block, second, settings=settings)
    assert delivery.snapshot._aged_blocks(time.monotonic()) == []


def test_the_checker_thread_outlives_a_failed_check(reader, settings, monkeypatch, caplog):
    """A check that raises is logged, and the thread takes the next block."""
    settings.DELIVERY_SNAPSHOT_BACKGROUND_CHECKS = True
    settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS = 30  # only the blocks left to it
    first, _second = _two_buckets()
    reader.get(LIVE, _params(first))
    block = delivery.snapshot.block(first.prompt.slug, first.segment.slug)
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("database gone")

    monkeypatch.setattr(delivery.Snapshot, "block", failing)
    key = (first.prompt.slug, first.segment.slug, "")
    assert delivery.snapshot._check_in_background(key, block, [0], time.monotonic())
    assert _eventually(lambda: len(calls) == 1 and key not in delivery.snapshot._queued)
    assert "database gone" in caplog.text
    assert delivery.snapshot._check_in_background(key, block, [0], time.monotonic())
    assert _eventually(lambda: len(calls) == 2)
    assert delivery.snapshot._checker.is_alive()


def test_a_new_blocks_buckets_come_due_one_at_a_time(reader, settings):
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    reader.get(LIVE, _params(live))
    block = delivery.snapshot.block(live.prompt.slug, live.segment.slug)
    ages = sorted(block.verified - loaded for loaded in block.loaded)
    step = settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS / delivery.BUCKETS
    assert ages == pytest.approx([b * step for b in range(delivery.BUCKETS)], abs=0.5)


def _customer_and_slot(*, language="en", segment_language="en"):
    """A customer of a segment with copy live for one product, no holdout."""
    segment = SegmentFactory(rules={"value_tier": "high"})
    live = VariantFactory(
        status=Variant.Status.PUBLISHED,
        segment=segment,
        language=segment_language,
        text="Segment copy",
    )
    live.prompt.holdout_percent = 0
    live.prompt.languages = list(dict.fromkeys(["en", segment_language]))
    live.prompt.save()
    customer = CustomerFactory(language=language, attributes={"value_tier": "high"})
    return live, customer


def _own(live, customer, **fields):
    return VariantFactory(
        status=Variant.Status.PUBLISHED,
        prompt_version=live.prompt_version,
        product=live.product,
        segment=None,
        customer=customer,
        language=customer.language,
        **fields,
    )


@pytest.mark.parametrize("has_own", [True, False], ids=["own variant", "segment copy"])
def test_a_customer_costs_one_query_once_the_snapshot_is_warm(
    reader, settings, django_assert_num_queries, has_own
):
    """Issue 17 item 6: the customer and their own variants in one round trip, the
    segment's copy from the snapshot. Journey tools call at 200 requests a second."""
    settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS = 60
    live, customer = _customer_and_slot()
    own = _own(live, customer, text="Written for one") if has_own else None
    params = {"prompt": live.prompt.slug, "product": live.product.sku}
    reader.get(LIVE, {**params, "customer": customer.external_id})
    with django_assert_num_queries(1):
        body = reader.get(LIVE, {**params, "customer": customer.external_id}).json()
    expected = ("customer", own.pk, own.text) if own else ("segment", live.pk, live.text)
    assert (body["source"], body["variant_id"], body["text"]) == expected
    assert (body["segment"], body["customer"]) == (live.segment.slug, customer.external_id)


def test_a_listing_page_for_a_customer_costs_one_query(reader, settings, django_assert_num_queries):
    settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS = 60
    live, customer = _customer_and_slot()
    other = VariantFactory(
        status=Variant.Status.PUBLISHED,
        prompt_version=live.prompt_version,
        segment=live.segment,
        text="Other segment copy",
    )
    own = _own(live, customer, text="Written for one")
    params = {
        "prompt": live.prompt.slug,
        "products": f"{other.product.sku},{live.product.sku}",
        "customer": customer.external_id,
    }
    reader.get("/api/v1/live/batch/", params)
    with django_assert_num_queries(1):
        results = reader.get("/api/v1/live/batch/", params).json()["results"]
    assert [(r["source"], r["variant_id"]) for r in results] == [
        ("segment", other.pk),
        ("customer", own.pk),
    ]


def test_an_unknown_customer_is_a_404_with_the_snapshot_warm(reader, settings):
    settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS = 60
    live, customer = _customer_and_slot()
    params = {"prompt": live.prompt.slug, "product": live.product.sku}
    assert reader.get(LIVE, {**params, "customer": customer.external_id}).status_code == 200
    response = reader.get(LIVE, {**params, "customer": "ghost"})
    assert response.status_code == 404
    assert response.json() == {"detail": "Unknown customer 'ghost'"}


def _several_purposes(live, customer):
    """Two messages live for one product: the one published last wins."""
    now = timezone.now()
    _own(live, customer, purpose="welcome", text="Older", published=now)
    _own(live, customer, purpose="winback", text="Newest", published=now + timedelta(hours=1))


def _own_in_a_regional_language(live, customer):
    _own(live, customer, text="Für dich geschrieben")


@pytest.mark.parametrize(
    ("setup", "language", "asked", "text"),
    [
        (None, "de", None, "Segment copy"),
        (_several_purposes, "en", None, "Newest"),
        (_own_in_a_regional_language, "de-ch", None, "Für dich geschrieben"),
        (_own_in_a_regional_language, "de-ch", "de", "Für dich geschrieben"),
        (None, "de-ch", None, "Segment copy"),
    ],
    ids=["segment copy", "several purposes", "own in de-ch", "own, de asked", "base language"],
)
def test_the_snapshot_answers_a_customer_as_the_database_does(
    reader, monkeypatch, setup, language, asked, text
):
    live, customer = _customer_and_slot(language=language, segment_language="de")
    if setup is not None:
        setup(live, customer)
    params = {"prompt": live.prompt.slug, "product": live.product.sku}
    params |= {"customer": customer.external_id} | ({"language": asked} if asked else {})
    answered = []
    from_snapshot = delivery._live_for_customer
    monkeypatch.setattr(
        delivery,
        "_live_for_customer",
        lambda *args: answered.append(from_snapshot(*args)) or answered[-1],
    )
    fast = reader.get(LIVE, params)
    monkeypatch.setattr(delivery, "_live_for_customer", lambda *args: None)
    slow = reader.get(LIVE, params)
    assert answered[0] is not None  # served from the snapshot, not the database
    assert fast.status_code == slow.status_code == 200
    assert fast.json()["text"] == text
    assert fast.content == slow.content
    assert fast["ETag"] == slow["ETag"]


def test_a_load_overtaken_by_a_drop_is_not_kept(reader, monkeypatch):
    """A global change dropped everything while a block was being read: what was read
    may predate the change, so it is served from the database and not held."""
    live = VariantFactory(status=Variant.Status.PUBLISHED, text="Fresh")
    read = delivery.Snapshot._rows_of

    def read_then_drop(self, *args, **kwargs):
        rows = read(self, *args, **kwargs)
        with self._lock:
            self._drop_blocks()  # as another thread seeing a new global epoch does
        return rows

    monkeypatch.setattr(delivery.Snapshot, "_rows_of", read_then_drop)
    assert reader.get(LIVE, _params(live)).json()["text"] == "Fresh"
    assert not delivery.snapshot._blocks


@pytest.fixture
def unfreeze():
    """gc.freeze() is the process's: the tests after this one get a collector that
    walks everything again."""
    import gc

    yield gc
    gc.unfreeze()


def test_past_the_freeze_threshold_a_read_leaves_the_snapshot_out_of_collections(
    reader, settings, unfreeze
):
    """A block read (and a bucket read again) ends with gc.freeze() once the process
    holds more than DELIVERY_SNAPSHOT_FREEZE_ROWS slots, never below it; what is
    served stays the same, and a slot changed later is served changed."""
    gc = unfreeze
    gc.unfreeze()
    first, second = _two_buckets()
    reader.get(LIVE, _params(first))
    assert gc.get_freeze_count() == 0  # 2 slots, under the default threshold

    settings.DELIVERY_SNAPSHOT_FREEZE_ROWS = 1
    delivery.snapshot.clear()
    assert reader.get(LIVE, _params(first)).json()["text"] == "First"
    frozen = gc.get_freeze_count()
    slot = delivery.snapshot.block(first.prompt.slug, first.segment.slug).slots[first.product.sku]
    assert frozen > 0
    assert not any(o is slot for o in gc.get_objects())  # out of every generation

    newer = _in_review_beside(first, "Approved")
    services.variant_approve(variant=newer, user=UserFactory())
    assert reader.get(LIVE, _params(first)).json()["text"] == "Approved"
    assert reader.get(LIVE, _params(second)).json()["text"] == "Second"
    # The bucket read again was frozen too (its old slot, freed, left the count).
    block = delivery.snapshot.block(first.prompt.slug, first.segment.slug)
    approved = block.slots[first.product.sku]
    assert approved is not slot and approved.text == "Approved"
    assert not any(o is approved for o in gc.get_objects())


def test_a_bucket_read_again_follows_a_renamed_and_a_deleted_product(reader, settings):
    """Each bucket keeps its SKUs (a bucket read does not walk the block): a product
    renamed behind the app's back is found by its new SKU once its bucket is read
    again, and a deleted one leaves it; the other bucket is untouched."""
    first, second = _two_buckets()
    reader.get(LIVE, _params(first))
    block = delivery.snapshot.block(first.prompt.slug, first.segment.slug)
    b1, b2 = first.product_id % delivery.BUCKETS, second.product_id % delivery.BUCKETS
    assert block.skus[b1] == [first.product.sku] and block.skus[b2] == [second.product.sku]

    Product.objects.filter(pk=first.product_id).update(sku="RENAMED-1")
    block.loaded[b1] -= settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
    assert reader.get(LIVE, {**_params(first), "product": "RENAMED-1"}).json()["text"] == "First"
    assert block.skus[b1] == ["RENAMED-1"] and first.product.sku not in block.slots

    with connection.cursor() as cursor:  # raw SQL: no signal, no epoch bumped
        for model in (Variant, Product):
            column = "product_id" if model is Variant else "id"
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE {column} = %s", [second.product_id]
            )
    block.loaded[b2] -= settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
    block.verified -= settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS
    assert delivery.snapshot.block(first.prompt.slug, first.segment.slug) is block
    assert block.skus[b2] == [] and second.product.sku not in block.slots
    assert block.skus[b1] == ["RENAMED-1"]
