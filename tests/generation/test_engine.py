"""The engine against the offline writer over real HTTP (tasks called directly)."""

import itertools
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from generation import engine, services
from generation.models import GenerationRun, Variant
from tests.conftest import configure_writer, slot_completions
from tests.factories import ProductFactory, PromptVersionFactory, SegmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_engine(settings):
    settings.GENERATION_THREADS_PER_TASK = 4
    settings.LLM_CONCURRENCY = 4
    settings.LLM_MAX_ATTEMPTS = 3
    settings.LLM_BACKOFF_MAX_SECONDS = 0.05


def _run(products=2, segments=2, **kwargs) -> GenerationRun:
    version = PromptVersionFactory()
    run = services.run_create(
        prompt=version.prompt,
        products=ProductFactory.create_batch(products),
        segments=SegmentFactory.create_batch(segments),
        **kwargs,
    )
    services.run_dispatch(run_id=run.pk)
    run.refresh_from_db()
    return run


def _completions(server) -> list[dict]:
    return slot_completions(server)


def _counts(run):
    run.refresh_from_db()
    return run.status, run.succeeded, run.failed, run.total


def test_a_drain_writes_every_slot_once_with_exact_counts(offline_writer):
    run = _run(products=3, segments=3)

    assert engine.drain_run(run_id=run.pk, claim_id="task-1") is False  # nothing left

    assert _counts(run) == ("finished", 9, 0, 9)
    variants = Variant.objects.filter(run=run)
    assert set(variants.values_list("status", flat=True)) == {"in_review"}
    assert run.prompt_tokens == sum(v.prompt_tokens for v in variants) > 0
    assert run.cost == sum(v.cost for v in variants) > 0
    assert len(_completions(offline_writer)) == 9
    assert all(v.language == "en" and v.checks for v in variants)


@pytest.mark.django_db(transaction=True)  # the drains run on their own connections
def test_two_drains_on_one_run_never_write_a_slot_twice(offline_writer):
    configure_writer(offline_writer, latency_ms=20)
    run = _run(products=6, segments=4)
    threads = [
        threading.Thread(target=engine.drain_run, kwargs={"run_id": run.pk, "claim_id": f"t{i}"})
        for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _counts(run) == ("finished", 24, 0, 24)
    assert len(_completions(offline_writer)) == 24


def test_transient_errors_are_retried_until_they_pass(offline_writer):
    run = _run(products=1, segments=1)
    configure_writer(offline_writer, fail_first_n=2)
    engine.drain_run(run_id=run.pk, claim_id="t")
    assert _counts(run) == ("finished", 1, 0, 1)
    assert len(_completions(offline_writer)) == 3


def test_the_shared_limiter_keeps_calls_under_the_endpoint_limit(offline_writer, settings):
    settings.LLM_CONCURRENCY = 2
    configure_writer(offline_writer, latency_ms=30, max_concurrency=2)
    run = _run(products=4, segments=3)
    engine.drain_run(run_id=run.pk, claim_id="t")
    assert _counts(run) == ("finished", 12, 0, 12)
    stats = offline_writer.stats()
    assert stats["rejected_429"] == 0 and stats["max_in_flight"] <= 2


def test_429_with_retry_after_is_waited_out(offline_writer, settings):
    import json
    from collections import defaultdict

    settings.LLM_CONCURRENCY = 8  # more than the endpoint allows: it will answer 429
    configure_writer(offline_writer, latency_ms=30, max_concurrency=1, retry_after_s=0.3)
    settings.GENERATION_THREADS_PER_TASK = 4
    settings.LLM_MAX_ATTEMPTS = 20
    run = _run(products=2, segments=2)
    offline_writer.clear_requests()
    engine.drain_run(run_id=run.pk, claim_id="t")
    assert _counts(run) == ("finished", 4, 0, 4)

    # 429s happened, and each slot asked again only after its Retry-After.
    assert offline_writer.stats()["rejected_429"] > 0
    asked: dict[str, list[float]] = defaultdict(list)
    for request in offline_writer.requests:
        if request["path"].endswith("/chat/completions"):
            asked[json.dumps(request["body"]["messages"])].append(request["at"])
    gaps = [b - a for times in asked.values() for a, b in itertools.pairwise(times)]
    assert len(asked) == 4 and gaps, "no slot was asked twice: no 429 was waited out"
    assert min(gaps) >= 0.3


@pytest.mark.parametrize(
    ("fault", "failure_reason", "message"),
    [
        ("malformed_rate", "malformed", "Gave up after 3 attempts: Malformed response"),
        ("empty_rate", "empty_choices", "Gave up after 3 attempts: The endpoint answered with "
         "an empty 'choices' list"),
        ("error_5xx_rate", "transient", "Gave up after 3 attempts: HTTP 50"),
        ("refusal_rate", "refused", "The model refused: "),
        ("content_filter_rate", "content_filter", "content filter stopped the answer"),
    ],
)  # fmt: skip
def test_failures_are_recorded_with_a_named_reason(offline_writer, fault, failure_reason, message):
    run = _run(products=1, segments=2)
    configure_writer(offline_writer, **{fault: 1.0})
    engine.drain_run(run_id=run.pk, claim_id="t")
    assert _counts(run) == ("finished", 0, 2, 2)
    for variant in Variant.objects.filter(run=run):
        assert variant.status == "failed"
        assert variant.failure_reason == failure_reason
        assert message in variant.error


def test_a_missing_rationale_keeps_the_copy_for_review_and_fails_the_rationale_check(
    offline_writer,
):
    run = _run(products=1, segments=2)
    configure_writer(offline_writer, no_rationale_rate=1.0)
    engine.drain_run(run_id=run.pk, claim_id="t")
    assert _counts(run) == ("finished", 2, 0, 2)
    assert len(_completions(offline_writer)) == 2  # no retry: another sample would not help
    for variant in Variant.objects.filter(run=run):
        assert variant.status == "in_review" and variant.text and variant.rationale == ""
        [rationale] = [c for c in variant.checks if c["name"] == "rationale"]
        assert not rationale["passed"] and "rationale is missing" in rationale["message"]


def test_retrying_failed_variants_completes_the_run_with_exact_counts(
    offline_writer, django_capture_on_commit_callbacks
):
    configure_writer(offline_writer, malformed_rate=1.0)
    run = _run(products=2, segments=1)
    engine.drain_run(run_id=run.pk, claim_id="t1")
    assert _counts(run) == ("finished", 0, 2, 2)

    configure_writer(offline_writer, malformed_rate=0.0)
    with django_capture_on_commit_callbacks():
        assert services.run_retry_failed(run=run) == 2
    services.run_dispatch(run_id=run.pk)
    engine.drain_run(run_id=run.pk, claim_id="t2")
    assert _counts(run) == ("finished", 2, 0, 2)


@pytest.fixture
def keyed_writer(settings):
    """An offline writer that accepts only the key 'right'."""
    from hyperpers.offline_writer import serve_in_thread

    server, base_url = serve_in_thread(api_key="right")
    settings.LLM_BASE_URL = base_url
    settings.LLM_API_KEY = "right"
    yield server
    server.shutdown()
    server.server_close()


def test_a_refused_key_fails_the_run_and_keeps_its_slots_queued(keyed_writer, settings):
    run = _run(products=2, segments=1)
    settings.LLM_API_KEY = "wrong"
    engine.drain_run(run_id=run.pk, claim_id="t")
    run.refresh_from_db()
    assert run.status == "failed" and "401" in run.error and "LLM_API_KEY" in run.error
    assert (run.succeeded, run.failed) == (0, 0)
    assert set(Variant.objects.filter(run=run).values_list("status", flat=True)) == {"queued"}


def test_a_cancelled_run_is_not_drained_and_resumes_where_it_stopped(
    offline_writer, django_capture_on_commit_callbacks
):
    run = _run(products=2, segments=1)
    services.run_cancel(run=run)
    engine.drain_run(run_id=run.pk, claim_id="t")
    assert _completions(offline_writer) == []
    with django_capture_on_commit_callbacks() as callbacks:
        services.run_resume(run=run)
    assert len(callbacks) == 1
    services.run_dispatch(run_id=run.pk)
    engine.drain_run(run_id=run.pk, claim_id="t")
    assert _counts(run) == ("finished", 2, 0, 2)


def test_a_budget_pauses_the_run_before_it_is_exceeded(
    offline_writer, settings, django_capture_on_commit_callbacks
):
    settings.GENERATION_THREADS_PER_TASK = 1
    run = _run(products=10, segments=1, budget=Decimal("0.0006"))
    engine.drain_run(run_id=run.pk, claim_id="t")
    run.refresh_from_db()
    assert run.status == "paused" and "budget" in run.error
    assert 0 < run.succeeded < 10
    assert run.cost <= run.budget

    with django_capture_on_commit_callbacks():
        services.run_resume(run=run, budget=Decimal("1"))
    services.run_dispatch(run_id=run.pk)
    engine.drain_run(run_id=run.pk, claim_id="t2")
    assert _counts(run) == ("finished", 10, 0, 10)


def test_a_model_that_writes_long_never_takes_a_run_past_its_budget(offline_writer, settings):
    """Issue 15: the budget reserved the estimated cost, so a model writing longer than
    estimated overshot it. Each call now asks for at most max_tokens and reserves that
    worst case, settling to the actual cost after."""
    settings.GENERATION_THREADS_PER_TASK = 4
    configure_writer(offline_writer, profile="rambling")
    run = _run(products=10, segments=1, budget=Decimal("0.0006"))
    engine.drain_run(run_id=run.pk, claim_id="t")
    run.refresh_from_db()

    assert run.status == "paused" and "budget" in run.error
    assert 0 < run.succeeded < 10
    assert run.cost <= run.budget
    # The writer did ramble: answers ran into max_tokens.
    written = Variant.objects.filter(run=run, status="in_review")
    assert written.exists() and all(v.finish_reason == "length" for v in written)
    assert max(v.completion_tokens for v in written) > 2 * run.estimated_completion_tokens / 10


def test_a_task_delivered_again_takes_back_its_own_claims(offline_writer):
    run = _run(products=2, segments=1)
    held = engine.claim(claim_id="dead-task", run_id=run.pk, variant_ids=None, limit=1)
    assert len(held) == 1  # then the worker was killed before writing

    engine.drain_run(run_id=run.pk, claim_id="other-task")
    assert _counts(run) == ("running", 1, 0, 2)  # the held slot is not taken by others

    engine.drain_run(run_id=run.pk, claim_id="dead-task")
    assert _counts(run) == ("finished", 2, 0, 2)


def test_a_drain_hands_over_to_a_new_task_when_its_time_is_up(offline_writer, settings):
    settings.GENERATION_TASK_SECONDS = 0
    run = _run(products=2, segments=1)
    assert engine.drain_run(run_id=run.pk, claim_id="t") is True
    assert Variant.objects.filter(run=run, status="queued").count() == 2
    settings.GENERATION_TASK_SECONDS = 60
    assert engine.drain_run(run_id=run.pk, claim_id="t2") is False
    assert _counts(run) == ("finished", 2, 0, 2)


def test_claims_of_a_task_that_never_returns_are_taken_after_the_lease(offline_writer):
    run = _run(products=1, segments=1)
    engine.claim(claim_id="gone", run_id=run.pk, variant_ids=None, limit=1)
    Variant.objects.filter(run=run).update(claimed_at=timezone.now() - timedelta(hours=1))
    engine.drain_run(run_id=run.pk, claim_id="new")
    assert _counts(run) == ("finished", 1, 0, 1)


def test_endpoint_check_names_a_refused_key_an_unknown_model_and_no_endpoint(
    keyed_writer, settings
):
    with pytest.raises(services.RunError, match=r"no model 'gpt-9'.*offline-writer-1"):
        services.endpoint_check(model="gpt-9")
    settings.LLM_API_KEY = "wrong"
    with pytest.raises(services.RunError, match="refused the API key"):
        services.endpoint_check(model="offline-writer-1")
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    with pytest.raises(services.RunError, match="Cannot reach"):
        services.endpoint_check(model="offline-writer-1")


def test_a_run_over_an_unknown_model_queues_nothing(offline_writer):
    version = PromptVersionFactory(model="gpt-9")
    with pytest.raises(services.RunError, match="gpt-9"):
        services.run_create(
            prompt=version.prompt, products=[ProductFactory()], segments=[SegmentFactory()]
        )
    assert not Variant.objects.exists() and not GenerationRun.objects.exists()


def test_the_estimate_is_shown_before_the_run(offline_writer):
    run = _run(products=2, segments=3)
    assert run.total == 6
    assert run.estimated_prompt_tokens > 0 and run.estimated_cost > 0


def test_a_new_prompt_version_supersedes_in_review_variants_and_regenerates(
    offline_writer, django_capture_on_commit_callbacks
):
    run = _run(products=2, segments=1)
    engine.drain_run(run_id=run.pk, claim_id="t")
    live, in_review = Variant.objects.filter(run=run).order_by("pk")
    Variant.objects.filter(pk=live.pk).update(status=Variant.Status.PUBLISHED)

    with django_capture_on_commit_callbacks():
        version = services.prompt_version_create(
            prompt=run.prompt_version.prompt,
            template="Shorter: {product_name} for {segment_name}",
            model="offline-writer-1",
        )
    regeneration = GenerationRun.objects.get(prompt_version=version)
    live.refresh_from_db()
    in_review.refresh_from_db()
    assert (live.status, in_review.status) == ("published", "superseded")
    assert regeneration.total == 2

    services.run_dispatch(run_id=regeneration.pk)
    engine.drain_run(run_id=regeneration.pk, claim_id="t2")
    assert _counts(regeneration) == ("finished", 2, 0, 2)
    live.refresh_from_db()
    assert live.status == "published"  # until its replacement is approved


def test_a_reviewer_note_reaches_the_prompt_as_a_course_correction(
    offline_writer, django_capture_on_commit_callbacks
):
    run = _run(products=1, segments=1)
    engine.drain_run(run_id=run.pk, claim_id="t")
    variant = Variant.objects.get(run=run)
    with django_capture_on_commit_callbacks():
        services.variant_regenerate(variant=variant, note="Make it shorter")
    engine.generate_variants(variant_ids=[variant.pk], claim_id="t2")

    variant.refresh_from_db()
    assert variant.status == "in_review"
    sent = _completions(offline_writer)[-1]["body"]["messages"][-1]["content"]
    assert '"course_correction": "Make it shorter"' in sent
    run.refresh_from_db()
    assert run.succeeded == 0  # the regenerated variant left the run's counts


def test_a_big_run_queues_its_first_slots_at_once_and_the_rest_while_it_runs(
    offline_writer, monkeypatch
):
    monkeypatch.setattr(services.runs, "QUEUE_NOW_SLOTS", 4)
    monkeypatch.setattr(services.runs, "POPULATE_PRODUCTS", 1)
    products, segments = ProductFactory.create_batch(5), SegmentFactory.create_batch(2)
    version = PromptVersionFactory()
    run = services.run_create(prompt=version.prompt, products=products, segments=segments)
    assert (run.total, run.unqueued, run.queued_products) == (10, 6, 2)
    assert run.is_populating and Variant.objects.filter(run=run).count() == 4

    services.run_dispatch(run_id=run.pk)
    assert services.run_populate(run_id=run.pk) == 6
    run.refresh_from_db()
    assert (run.total, run.unqueued, run.queued_products) == (10, 0, 5)
    assert not run.is_populating
    # Product by product, in the scope's order: consecutive calls share a product.
    order = list(Variant.objects.filter(run=run).order_by("pk").values_list("product", flat=True))
    assert order == [p.pk for p in products for _ in segments]

    engine.drain_run(run_id=run.pk, claim_id="t")
    assert _counts(run) == ("finished", 10, 0, 10)


@pytest.mark.django_db(transaction=True)  # the drain waits for the populating thread
def test_a_drain_waits_for_slots_still_being_queued_instead_of_ending(offline_writer, monkeypatch):
    monkeypatch.setattr(services.runs, "QUEUE_NOW_SLOTS", 2)
    monkeypatch.setattr(services.runs, "POPULATE_PRODUCTS", 1)
    version = PromptVersionFactory()
    run = services.run_create(
        prompt=version.prompt,
        products=ProductFactory.create_batch(4),
        segments=SegmentFactory.create_batch(2),
    )
    services.run_dispatch(run_id=run.pk)
    drain = threading.Thread(target=engine.drain_run, kwargs={"run_id": run.pk, "claim_id": "t"})
    drain.start()
    threading.Event().wait(1.0)  # the drain has written the first 2 and waits
    assert drain.is_alive()
    services.run_populate(run_id=run.pk)
    drain.join(timeout=30)
    assert not drain.is_alive()
    assert _counts(run) == ("finished", 8, 0, 8)


def test_populating_stops_with_a_cancel_and_goes_on_after_a_resume(offline_writer, monkeypatch):
    monkeypatch.setattr(services.runs, "QUEUE_NOW_SLOTS", 2)
    monkeypatch.setattr(services.runs, "POPULATE_PRODUCTS", 1)
    version = PromptVersionFactory()
    run = services.run_create(
        prompt=version.prompt,
        products=ProductFactory.create_batch(3),
        segments=SegmentFactory.create_batch(2),
    )
    services.run_cancel(run=run)
    assert services.run_populate(run_id=run.pk) == 0
    run.refresh_from_db()
    assert (run.unqueued, run.total) == (4, 6)
    services.run_resume(run=run)
    services.run_dispatch(run_id=run.pk)
    assert services.run_populate(run_id=run.pk) == 4
    engine.drain_run(run_id=run.pk, claim_id="t")
    assert _counts(run) == ("finished", 6, 0, 6)


def test_an_endpoint_that_ignores_response_format_falls_back_to_markers_and_is_remembered(
    offline_writer, settings
):
    from generation.models import EndpointCapability

    # As if a probe had said yes; the writer's plain profile ignores response_format.
    EndpointCapability.objects.create(
        base_url=settings.LLM_BASE_URL, model="offline-writer-1", structured_output=True
    )
    version = PromptVersionFactory()
    run = services.run_create(
        prompt=version.prompt,
        products=ProductFactory.create_batch(3),
        segments=SegmentFactory.create_batch(2),
        check_endpoint=False,
    )
    assert run.output_mode == "json"
    services.run_dispatch(run_id=run.pk)
    engine.drain_run(run_id=run.pk, claim_id="t")

    assert _counts(run) == ("finished", 6, 0, 6)
    assert run.output_mode == "markers" and "ignored response_format" in run.output_mode_reason
    capability = EndpointCapability.objects.get(model="offline-writer-1")
    assert capability.structured_output is False
    for variant in Variant.objects.filter(run=run):
        assert variant.rationale and "Rationale:" not in variant.text
        assert "Rationale:" in variant.raw_output


def test_markdown_copy_is_for_e_mail_only():
    from django.core.exceptions import ValidationError

    from generation.models import Prompt

    prompt = PromptVersionFactory().prompt
    prompt.copy_format = Prompt.CopyFormat.MARKDOWN
    with pytest.raises(ValidationError, match="plain text only; markdown is for e-mail"):
        prompt.clean()
    assert prompt.output_format == "plain"
    prompt.channel = Prompt.Channel.EMAIL
    prompt.clean()
    assert prompt.output_format == "markdown"
