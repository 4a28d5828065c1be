"""The generation engine: keeps many LLM calls in flight, writes results in batches.

One Celery task drains a run (several tasks drain one run in parallel, on any number
of workers). Inside a task:

1. the main thread claims queued variants with a conditional UPDATE (status queued →
   generating, claim = the task id), renders their prompts, and hands them to a pool
   of threads, keeping GENERATION_THREADS_PER_TASK calls in flight;
2. each thread takes a slot from the endpoint's shared limiter (Redis), makes one
   call, reads the answer (JSON or a rationale section), normalises the copy to the
   channel's format and runs the checks; threads never touch the database. A call
   that must be tried again (a 429, a 5xx, a malformed answer) comes back to the main
   thread with the time to try it again, and waits in a heap, not in a thread, so
   threads are always calling and one 429 delays only its own retry;
3. the main thread writes finished variants back every half second, each UPDATE
   conditional on the variant still being claimed by this task, and adds the counts
   to the run in the same transaction, so the run's counts are always exact.

A task delivered again after its worker died reclaims the variants it had claimed;
variants claimed by a task that never comes back are reclaimed after the lease.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import random
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Field, Max, Q
from django.utils import timezone

from generation import answers, callbacks, capabilities, checks, llm, pricing, prompting, signals
from generation.limiter import CallLimiter, LimiterTimeout, endpoint_limiter, redis_client
from generation.models import GenerationRun, PromptVersion, Variant, VariantQuerySet
from hyperpers.logs import log_context

logger = logging.getLogger(__name__)

WRITTEN_FIELDS = [
    "status", "text", "original_text", "rationale", "raw_output", "normalisation",
    "output_mode", "finish_reason", "checks", "checks_failed", "model", "language",
    "prompt_tokens", "completion_tokens", "cached_tokens", "latency_ms", "cost",
    "failure_reason", "error", "claim", "claimed_at", "generated", "updated",
]  # fmt: skip
Reason = Variant.FailureReason
FLUSH_SECONDS = 0.5
FLUSH_SIZE = 200
LEASE_CHECK_SECONDS = 60
POPULATE_WAIT_SECONDS = 0.25
BUDGET_KEY_SECONDS = 30 * 24 * 3600


@dataclass
class Job:
    """A claimed variant, rendered and ready to send, and how its calls went so far."""

    variant: Variant
    messages: list[dict[str, str]]
    language: str
    findings: list[str]
    estimated_prompt_tokens: int
    estimated_completion_tokens: int
    estimated_cost: Decimal | None
    mode: str = capabilities.MARKERS
    # The call's max_tokens, and the cost if the model writes all of them: what a run's
    # budget reserves before the call (then settles to what it really cost).
    max_tokens: int | None = None
    worst_cost: Decimal | None = None
    fmt: str = "plain"
    attempts: int = 0  # calls that failed in a way worth retrying (5xx, malformed, ...)
    rate_limited: int = 0  # 429s waited out; counted apart (LLM_RATE_LIMIT_RETRIES)


@dataclass
class Outcome:
    job: Job
    # "done", "failed", "retry" (try again after `delay`), "release" (back to the
    # queue), "config" (stop the run)
    kind: str
    completion: llm.Completion | None = None
    copy: str = ""
    rationale: str = ""
    checks: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    reason: str = ""  # a Variant.FailureReason for "failed"
    cost: Decimal | None = None
    delay: float = 0.0
    normalisation: list[str] = field(default_factory=list)
    # The answer was text although JSON was asked for: the endpoint ignores
    # response_format, so the drain falls back to markers.
    fell_back: bool = False


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, never shorter than the endpoint's Retry-After."""
    ceiling = min(settings.LLM_BACKOFF_MAX_SECONDS, 0.5 * 2**attempt)
    return max(retry_after or 0.0, random.uniform(0, ceiling))


def attempt(job: Job, limiter: CallLimiter, stop: threading.Event) -> Outcome:
    """Make one call for a job; never raises. A "retry" outcome says when to try again.

    1. 429: wait out its Retry-After (this call only), up to LLM_RATE_LIMIT_RETRIES.
    2. 5xx, timeouts, malformed answers: backoff, up to LLM_MAX_ATTEMPTS calls.
    3. A refused key or model stops the run; another 4xx fails the variant.
    """
    if stop.is_set():
        return Outcome(job, "release", error="Run stopped")
    version = job.variant.prompt_version
    try:
        with limiter.slot(tokens=job.estimated_prompt_tokens):
            completion = llm.complete(
                messages=job.messages,
                model=version.model,
                temperature=version.temperature,
                max_tokens=job.max_tokens,
                response_format=answers.response_format()
                if job.mode == capabilities.JSON
                else None,
            )
        with contextlib.suppress(redis.RedisError):  # the copy is paid for: keep it
            limiter.succeeded()
            limiter.observe(completion.headers)
        return read_answer(job, completion)
    except llm.RateLimited as exc:
        with contextlib.suppress(redis.RedisError):
            limiter.rate_limited()
            limiter.observe(exc.headers)
        job.rate_limited += 1
        if job.rate_limited > settings.LLM_RATE_LIMIT_RETRIES:
            return Outcome(
                job,
                "failed",
                reason=Reason.TRANSIENT,
                error=f"Still rate limited after {job.rate_limited} answers of 429: {exc}",
            )
        return Outcome(job, "retry", delay=backoff_seconds(0, exc.retry_after), error=str(exc))
    except llm.EndpointConfigError as exc:
        return Outcome(job, "config", error=str(exc))
    except llm.LLMError as exc:
        if not exc.transient:
            return Outcome(job, "failed", reason=Reason.REQUEST, error=str(exc))
        return _retry_or_fail(job, exc, getattr(exc, "reason", Reason.TRANSIENT))
    except LimiterTimeout as exc:
        return Outcome(job, "release", error=str(exc))
    except redis.RedisError as exc:
        # The shared limiter is unreachable (Redis restarting): the call was not made
        # (or its answer cannot be counted against the limits), so the variant goes
        # back to the queue; a short wait keeps the drain from spinning meanwhile.
        logger.warning("limiter unreachable, variant %s back to the queue: %s", job.variant.pk, exc)
        stop.wait(1.0)
        return Outcome(job, "release", error=f"Redis unreachable: {exc}")


def _retry_or_fail(job: Job, exc: Exception, reason: str) -> Outcome:
    job.attempts += 1
    if job.attempts >= settings.LLM_MAX_ATTEMPTS:
        return Outcome(
            job, "failed", reason=reason, error=f"Gave up after {job.attempts} attempts: {exc}"
        )
    delay = backoff_seconds(job.attempts, getattr(exc, "retry_after", None))
    return Outcome(job, "retry", delay=delay, error=str(exc))


def read_answer(job: Job, completion: llm.Completion) -> Outcome:
    """Turn one completion into copy, rationale and checks, or a named failure.

    Only these fail a variant: a refusal, a content filter, copy that is empty, and
    an answer that stays malformed after retries. A missing rationale, copy cut off
    at the length limit, or markup the channel cannot show are failed checks on copy
    that people still read.
    """
    if completion.refusal:
        return Outcome(
            job,
            "failed",
            completion=completion,
            reason=Reason.REFUSED,
            error=f"The model refused: {completion.refusal}",
        )
    if completion.finish_reason == "content_filter":
        return Outcome(
            job,
            "failed",
            completion=completion,
            reason=Reason.CONTENT_FILTER,
            error="The endpoint's content filter stopped the answer (finish_reason: "
            "content_filter)",
        )
    content = completion.content
    truncated = completion.finish_reason == "length"
    fell_back = False
    try:
        parsed = answers.parse_json(content)
    except answers.AnswerError as exc:
        if truncated:
            parsed = (answers.salvage_json_copy(content), "")
        elif job.mode == capabilities.JSON:
            return _retry_or_fail(job, exc, exc.reason)
        else:
            parsed = None  # JSON-like text in a text answer: read it as text
    if parsed is None and job.mode == capabilities.JSON and not truncated:
        fell_back = True
    copy, rationale = parsed if parsed is not None else answers.split_marked(content)
    variant = job.variant
    prompt = variant.prompt
    normalised = answers.normalise(copy, fmt=job.fmt)
    if not normalised.text.strip():
        return Outcome(
            job,
            "failed",
            completion=completion,
            reason=Reason.EMPTY_COPY,
            error="The answer had no copy"
            + (" (cut off at the length limit)" if truncated else ""),
        )
    text = normalised.text
    results = checks.run_checks(
        text=text,
        prompt=prompt,
        brand=prompt.brand,
        product=variant.product,
        language=job.language,
        segment=variant.segment,
        customer=variant.customer,
        identifiers=[variant.customer.external_id] if variant.customer else [],
        input_findings=job.findings,
    ) + checks.answer_checks(
        rationale=rationale,
        finish_reason=completion.finish_reason,
        fmt=job.fmt,
        removed=normalised.removed,
        problems=normalised.problems,
    )
    return Outcome(
        job,
        "done",
        completion=completion,
        copy=text,
        rationale=rationale,
        checks=results,
        normalisation=normalised.removed,
        fell_back=fell_back,
        cost=pricing.cost(
            model=variant.prompt_version.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cached_tokens=completion.cached_tokens,
        ),
    )


def call(job: Job, limiter: CallLimiter, stop: threading.Event) -> Outcome:
    """Attempts until an outcome other than "retry", waiting in this thread (for a
    caller with a few jobs, such as the studio's try); never raises."""
    while True:
        outcome = attempt(job, limiter, stop)
        if outcome.kind != "retry":
            return outcome
        if stop.wait(outcome.delay):
            return Outcome(job, "release", error=f"Run stopped while waiting: {outcome.error}")


def prepare(
    variant: Variant,
    *,
    personal: frozenset[str] | None = None,
    mode: str = capabilities.MARKERS,
) -> Job:
    """The job for one variant. `personal`: prompting.personal_attributes(), read once
    by a caller preparing many (it is read here otherwise); `mode`: how the answer is
    asked for ("json" or "markers", see generation.capabilities)."""
    prompt = variant.prompt
    rendered = prompting.render(
        version=variant.prompt_version,
        prompt=prompt,
        brand=prompt.brand,
        product=variant.product,
        segment=variant.segment,
        customer=variant.customer,
        course_correction=variant.regeneration_note,
        purpose=variant.purpose,
        personal=personal,
        mode=mode,
        language=variant.language,
    )
    prompt_tokens = sum(pricing.estimate_tokens(m["content"]) for m in rendered.messages)
    completion_tokens = pricing.estimate_completion_tokens(prompt.max_length)
    max_tokens = pricing.max_completion_tokens(prompt.max_length)
    return Job(
        variant=variant,
        messages=rendered.messages,
        language=rendered.language,
        findings=rendered.findings,
        estimated_prompt_tokens=prompt_tokens,
        estimated_completion_tokens=completion_tokens,
        estimated_cost=pricing.cost(
            model=variant.prompt_version.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        ),
        mode=mode,
        fmt=prompt.output_format,
        max_tokens=max_tokens,
        worst_cost=pricing.cost(
            model=variant.prompt_version.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=max_tokens,
        ),
    )


class Budget:
    """A run's spending, shared by every task draining it, in Redis (micro-dollars).

    A call reserves its worst case before it starts (its prompt and max_tokens of
    answer: Job.worst_cost) and settles to the actual cost when it ends, so parallel
    tasks together stop before the budget is exceeded, even by a model that writes
    far longer than estimated.
    """

    def __init__(self, run: GenerationRun, budget: Decimal) -> None:
        self.limit = int(budget * 1_000_000)
        # The creation time makes the key unique even if the database is reset and run
        # ids start again while Redis keeps its keys.
        self.key = f"hyperpers:run:{run.pk}:{run.created.timestamp():.6f}:spent"
        self.redis = redis_client()
        # After a Redis restart the spending is re-read from the database.
        self.redis.set(self.key, int(run.cost * 1_000_000), nx=True, ex=BUDGET_KEY_SECONDS)

    def reserve(self, amount: Decimal | None) -> bool:
        micro = int((amount or 0) * 1_000_000)
        # redis-py types every reply as `Awaitable | Any`, one annotation for its sync
        # and asyncio clients (redis/redis-py#2399); this client is sync.
        if cast("int", self.redis.incrby(self.key, micro)) > self.limit:
            self.redis.decrby(self.key, micro)
            return False
        return True

    def settle(self, reserved: Decimal | None, actual: Decimal | None) -> None:
        delta = int(((actual or 0) - (reserved or 0)) * 1_000_000)
        if delta:
            self.redis.incrby(self.key, delta)


class Drain:
    def __init__(self, *, claim: str, run_id: int | None, variant_ids: list[int] | None) -> None:
        self.claim = claim
        self.run_id = run_id
        self.variant_ids = variant_ids
        self.threads = settings.GENERATION_THREADS_PER_TASK
        self.stop = threading.Event()
        self.ready: deque[Job] = deque()
        # Jobs to call again at a time: (due on the monotonic clock, tiebreak, job).
        self.delayed: list[tuple[float, int, Job]] = []
        self._order = itertools.count()
        self.in_flight: dict[Future[Outcome], Job] = {}
        self.outcomes: list[Outcome] = []
        self.exhausted = False
        self.first_claim = True
        self.budget: Budget | None = None
        self.written = 0
        self.deadline = time.monotonic() + settings.GENERATION_TASK_SECONDS
        self.continue_later = False
        self.next_lease_check = 0.0
        # Claims look past the last id this drain claimed: at 140,000 slots a claim
        # that starts at the first id walks every written variant when the planner,
        # with statistics from when all were queued, prefers the primary key.
        self.claim_cursor = 0
        # The output mode: the run's, else what is known of the endpoint and model
        # (variants generated outside a run: regenerations, messages).
        self.modes: dict[str, str] = {}
        self.run_row: GenerationRun | None = None
        if run_id is not None:
            run = GenerationRun.objects.filter(pk=run_id).first()
            if run is None or run.status != GenerationRun.Status.RUNNING:
                logger.info("run %s is gone or not running; nothing to drain", run_id)
                self.exhausted = True
            else:
                self.run_row = run
                if run.budget is not None:
                    self.budget = Budget(run, run.budget)

    def mode_for(self, variant: Variant) -> str:
        model = variant.prompt_version.model
        if model not in self.modes:
            if self.run_row is not None and self.run_row.output_mode:
                self.modes[model] = self.run_row.output_mode
            else:
                self.modes[model] = capabilities.output_mode(model)[0]
        return self.modes[model]

    def run(self) -> int:
        with log_context(run_id=self.run_id):
            return self._run()

    def _run(self) -> int:
        limiter = endpoint_limiter()
        last_flush = time.monotonic()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="llm") as pool:
            while True:
                self._refill()
                self._due()
                self._submit(pool, limiter)
                if not self.in_flight:
                    if self.stop.is_set() or (self.exhausted and not self.delayed):
                        break
                    if self.delayed:
                        # Only retries left, waiting for their time: sleep until the first.
                        self.stop.wait(self._wait_seconds())
                else:
                    done, _ = wait(
                        self.in_flight, timeout=self._wait_seconds(), return_when=FIRST_COMPLETED
                    )
                    for future in done:
                        self.in_flight.pop(future)
                        self._received(future.result())
                due = time.monotonic() - last_flush > FLUSH_SECONDS
                if due or len(self.outcomes) >= FLUSH_SIZE:
                    self._flush()
                    last_flush = time.monotonic()
            self._flush()
            self._release_ready()
        return self.written

    def _wait_seconds(self) -> float:
        if self.delayed:
            return min(FLUSH_SECONDS, max(0.0, self.delayed[0][0] - time.monotonic()))
        return FLUSH_SECONDS

    def _received(self, outcome: Outcome) -> None:
        if self.budget is not None and outcome.kind == "retry":
            # The failed call cost nothing; the next one reserves again.
            self.budget.settle(outcome.job.worst_cost, None)
        if outcome.kind == "retry":
            due = time.monotonic() + outcome.delay
            heapq.heappush(self.delayed, (due, next(self._order), outcome.job))
            return
        if outcome.fell_back:
            self._fall_back(outcome.job)
        self.outcomes.append(outcome)

    def _fall_back(self, job: Job) -> None:
        """JSON was asked for and text came back: this endpoint ignores response_format.
        Jobs not yet sent switch to markers; the run and the capability remember it."""
        model = job.variant.prompt_version.model
        if self.modes.get(model) == capabilities.MARKERS:
            return
        self.modes[model] = capabilities.MARKERS
        reason = capabilities.ignored_response_format(model)
        if self.run_id is not None:
            GenerationRun.objects.filter(pk=self.run_id).update(
                output_mode=capabilities.MARKERS, output_mode_reason=reason[:300]
            )
        personal = prompting.personal_attributes()
        self.ready = deque(
            prepare(j.variant, personal=personal, mode=capabilities.MARKERS)
            if j.mode == capabilities.JSON
            else j
            for j in self.ready
        )

    def _due(self) -> None:
        """Retries whose time has come go to the front of the line."""
        now = time.monotonic()
        while self.delayed and self.delayed[0][0] <= now:
            self.ready.appendleft(heapq.heappop(self.delayed)[2])

    def _refill(self) -> None:
        if self.stop.is_set() or self.exhausted or len(self.ready) >= self.threads:
            return
        if time.monotonic() > self.deadline:
            # Bounded task time: finish what is in flight, hand the rest to a new task.
            self.exhausted = self.continue_later = True
            return
        variants = []
        if self.first_claim:
            # Delivered again after its worker died: first take back all it held.
            variants = reclaim_own(claim_id=self.claim)
            self.first_claim = False
        # Leases of vanished workers are looked for now and then, not on every claim.
        expired = time.monotonic() > self.next_lease_check
        if expired:
            self.next_lease_check = time.monotonic() + LEASE_CHECK_SECONDS
        limit = max(0, 2 * self.threads - len(self.ready) - len(variants))
        found = claim(
            claim_id=self.claim,
            run_id=self.run_id,
            variant_ids=self.variant_ids,
            limit=limit,
            expired=expired,
            after=self.claim_cursor,
        )
        if not found and self.claim_cursor:
            # Nothing past the cursor: look from the start once for variants released
            # back to the queue (and expired claims) behind it.
            self.claim_cursor = 0
            found = claim(
                claim_id=self.claim,
                run_id=self.run_id,
                variant_ids=self.variant_ids,
                limit=limit,
                expired=True,
            )
        if found:
            self.claim_cursor = found[-1].pk
        variants += found
        if not variants and self.variant_ids is None and self._still_populating():
            return  # its next slots are being queued (services.run_populate): wait
        if not variants or self.variant_ids is not None:
            self.exhausted = True
        personal = prompting.personal_attributes() if variants else None
        for variant in variants:
            try:
                self.ready.append(prepare(variant, personal=personal, mode=self.mode_for(variant)))
            except (KeyError, ValueError, IndexError) as exc:
                # A template that renders badly fails its variant, not the task.
                job = Job(variant, [], "", [], 0, 0, None)
                self.outcomes.append(
                    Outcome(
                        job, "failed", reason=Reason.RENDERING, error=f"Prompt rendering: {exc}"
                    )
                )

    def _still_populating(self) -> bool:
        """The run has slots yet to be queued: wait a moment for them, unless calls are
        in flight (then the loop comes back here after them anyway)."""
        if self.run_id is None:
            return False  # variants given by id: no run queues more
        populating = GenerationRun.objects.filter(
            pk=self.run_id, status=GenerationRun.Status.RUNNING, unqueued__gt=0
        ).exists()
        if populating and not self.in_flight and not self.ready:
            self.stop.wait(POPULATE_WAIT_SECONDS)
        return populating

    def _submit(self, pool: ThreadPoolExecutor, limiter: CallLimiter) -> None:
        # Up to twice the threads: a thread that finishes a call takes the next job at
        # once instead of waiting for the main thread to come back from a flush.
        while self.ready and len(self.in_flight) < 2 * self.threads and not self.stop.is_set():
            job = self.ready[0]
            if self.budget is not None and not self.budget.reserve(job.worst_cost):
                self._pause_for_budget()
                return
            self.ready.popleft()
            self.in_flight[pool.submit(attempt, job, limiter, self.stop)] = job

    def _pause_for_budget(self) -> None:
        self.stop.set()
        if self.run_id is None:
            return  # only a run has a budget
        GenerationRun.objects.filter(pk=self.run_id, status=GenerationRun.Status.RUNNING).update(
            status=GenerationRun.Status.PAUSED,
            error="Paused before exceeding the budget; raise the budget and resume to continue.",
        )

    def _flush(self) -> None:
        if not self.outcomes:
            self._check_run()
            return
        outcomes, self.outcomes = self.outcomes, []
        self.written += write_outcomes(outcomes, claim_id=self.claim)
        if self.budget is not None:
            for outcome in outcomes:
                self.budget.settle(outcome.job.worst_cost, outcome.cost)
        config = next((o for o in outcomes if o.kind == "config"), None)
        if config is not None:
            self.stop.set()
            run_id = config.job.variant.run_id
            if run_id is not None:  # a message's variant has no run to fail
                GenerationRun.objects.filter(pk=run_id).exclude(
                    status=GenerationRun.Status.CANCELLED
                ).update(
                    status=GenerationRun.Status.FAILED,
                    error=f"The endpoint refused the run's configuration: {config.error}. "
                    "Fix LLM_BASE_URL, LLM_API_KEY or the prompt's model, then resume.",
                )
        self._check_run()

    def _check_run(self) -> None:
        if self.run_id is None or self.stop.is_set():
            return
        status = GenerationRun.objects.filter(pk=self.run_id).values_list("status", flat=True)
        if status.first() != GenerationRun.Status.RUNNING:
            self.stop.set()

    def _release_ready(self) -> None:
        waiting = [*self.ready, *(job for _, _, job in self.delayed)]
        release([job.variant.pk for job in waiting], claim_id=self.claim)
        self.ready.clear()
        self.delayed.clear()


def claim(
    *,
    claim_id: str,
    run_id: int | None,
    variant_ids: list[int] | None,
    limit: int,
    expired: bool = True,
    after: int = 0,
) -> list[Variant]:
    """Claim up to `limit` variants (of a run, or given ids) for this task.

    Queued variants are found through the partial index on (run, id) where queued;
    with `expired`, variants whose claim's lease ended are claimable too; with
    `after`, only variants past that id.
    """
    if limit <= 0:
        return []
    now = timezone.now()
    claimable = Q(status=Variant.Status.QUEUED)
    if expired:
        claimable |= Q(
            status=Variant.Status.GENERATING,
            claimed_at__lt=now - timedelta(seconds=settings.GENERATION_LEASE_SECONDS),
        )
    candidates = Variant.objects.filter(claimable)
    if after:
        candidates = candidates.filter(pk__gt=after)
    if variant_ids is not None:
        candidates = candidates.filter(pk__in=variant_ids)
    else:
        candidates = candidates.filter(run_id=run_id)
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        ids = list(candidates.order_by("pk").values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        Variant.objects.filter(claimable, pk__in=ids).update(
            status=Variant.Status.GENERATING,
            claim=claim_id,
            claimed_at=now,
            attempts=F("attempts") + 1,
        )
    return _claimed(Variant.objects.filter(pk__in=ids), claim_id)


def _of_replaced_versions(variants: list[Variant]) -> set[int]:
    """The ids of `variants` whose prompt has a version newer than theirs (one query)."""
    if not variants:
        return set()
    latest = dict(
        PromptVersion.objects.filter(prompt_id__in={v.prompt_id for v in variants})
        .values("prompt_id")
        .annotate(number=Max("number"))
        .values_list("prompt_id", "number")
    )
    return {v.pk for v in variants if v.prompt_version.number < latest.get(v.prompt_id, 0)}


def _written_update(rows: list[Variant], *, claim_id: str) -> None:
    """Write the WRITTEN_FIELDS of `rows`: one parameterised UPDATE, executed per row.

    Still conditional on the claim, like the locked read before it. Not bulk_update:
    that builds a CASE WHEN expression per row and field through the ORM, which was half
    of a worker's CPU per variant (py-spy, bench/generation zero_latency). executemany
    sends the same statement with each row's values (pipelined by psycopg), and each
    field adapts its value as a save would (JSON, decimals, time zones).
    """
    concrete = {f.name: f for f in Variant._meta.concrete_fields}
    fields: list[Field[Any, Any]] = [concrete[name] for name in WRITTEN_FIELDS]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = (
        f"UPDATE {quote(Variant._meta.db_table)} SET {assignments} "
        f"WHERE {quote(Variant._meta.pk.column)} = %s AND {quote('status')} = %s "
        f"AND {quote('claim')} = %s"
    )
    params = [
        [f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields]
        + [row.pk, Variant.Status.GENERATING, claim_id]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def reclaim_own(*, claim_id: str) -> list[Variant]:
    """The variants a task with this id had claimed (it is running again), re-leased."""
    held = Variant.objects.claimed_by(claim_id)
    held.update(claimed_at=timezone.now())
    return _claimed(held, claim_id)


def _claimed(variants: VariantQuerySet, claim_id: str) -> list[Variant]:
    return list(
        variants.claimed_by(claim_id)
        .select_related("prompt__brand", "prompt_version", "product", "segment", "customer")
        .order_by("pk")
    )


def release(variant_ids: list[int], *, claim_id: str) -> int:
    if not variant_ids:
        return 0
    return (
        Variant.objects.claimed_by(claim_id)
        .filter(pk__in=variant_ids)
        .update(status=Variant.Status.QUEUED, claim="", claimed_at=None)
    )


@transaction.atomic
def write_outcomes(outcomes: list[Outcome], *, claim_id: str) -> int:
    """Write finished calls; each UPDATE holds only if this task still owns the variant.

    Returns how many variants reached a final state here. Counts go to each run in
    the same transaction, so they never drift from the variants.
    """
    now = timezone.now()
    counts: dict[int, dict[str, int | Decimal]] = defaultdict(
        lambda: {
            "succeeded": 0,
            "failed": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cached_tokens": 0,
            "cost": Decimal(0),
        }
    )
    written = 0
    done = {o.job.variant.pk: o for o in outcomes if o.kind == "done"}
    if done:
        # One locked read of what this task still owns, then one bulk UPDATE that is
        # itself still conditional on the claim.
        owned = Variant.objects.claimed_by(claim_id)
        still_ours = set(owned.select_for_update().filter(pk__in=done).values_list("pk", flat=True))
        # Written for a version that a newer one replaced meanwhile: superseded, like
        # the queued and in-review ones the save superseded (prompt_regenerate), so a
        # slot never holds in-review variants of two versions.
        superseded = _of_replaced_versions([done[pk].job.variant for pk in still_ours])
        rows = []
        for pk in sorted(still_ours):
            outcome = done[pk]
            completion = outcome.completion
            assert completion is not None  # read_answer's "done" always carries it
            rows.append(
                Variant(
                    pk=pk,
                    status=Variant.Status.SUPERSEDED
                    if pk in superseded
                    else Variant.Status.IN_REVIEW,
                    text=outcome.copy,
                    original_text=outcome.copy,
                    rationale=outcome.rationale,
                    raw_output=completion.content,
                    normalisation=outcome.normalisation,
                    output_mode=outcome.job.mode,
                    finish_reason=completion.finish_reason,
                    checks=outcome.checks,
                    checks_failed=sum(not c["passed"] for c in outcome.checks),
                    model=completion.model,
                    language=outcome.job.language,
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                    cached_tokens=completion.cached_tokens,
                    latency_ms=completion.latency_ms,
                    cost=outcome.cost,
                    failure_reason="",
                    error="",
                    claim="",
                    claimed_at=None,
                    generated=now,
                    updated=now,
                )
            )
            run_id = outcome.job.variant.run_id
            if run_id:
                c = counts[run_id]
                c["succeeded"] += 1
                c["prompt_tokens"] += completion.prompt_tokens
                c["completion_tokens"] += completion.completion_tokens
                c["cached_tokens"] += completion.cached_tokens
                c["cost"] += outcome.cost or 0
        if rows:
            _written_update(rows, claim_id=claim_id)
            signals.variants_written.send(sender=Variant, variant_ids=[row.pk for row in rows])
        written += len(rows)
    for outcome in outcomes:
        if outcome.kind == "done":
            continue
        variant = outcome.job.variant
        owned_one = Variant.objects.claimed_by(claim_id).filter(pk=variant.pk)
        if outcome.kind == "failed":
            completion = outcome.completion
            updated = owned_one.update(
                status=Variant.Status.FAILED,
                failure_reason=outcome.reason or Reason.TRANSIENT,
                error=outcome.error[:2000],
                raw_output=completion.content if completion else "",
                finish_reason=completion.finish_reason if completion else "",
                output_mode=outcome.job.mode,
                claim="",
                claimed_at=None,
                updated=now,
            )
            if updated and variant.run_id:
                counts[variant.run_id]["failed"] += 1
            if updated:
                logger.warning(
                    "variant %s failed: %s",
                    variant.pk,
                    outcome.error,
                    extra={"variant_id": variant.pk, "run_id": variant.run_id},
                )
                written += 1
                if variant.callback_url:
                    variant.status = Variant.Status.FAILED
                    callbacks.message_notify_on_commit(variant)
        else:  # release or config: back to the queue, for a resume
            owned_one.update(status=Variant.Status.QUEUED, claim="", claimed_at=None)
    for run_id, c in counts.items():
        GenerationRun.objects.filter(pk=run_id).update(**{k: F(k) + v for k, v in c.items()})
        finish_if_done(run_id)
    return written


def finish_if_done(run_id: int) -> None:
    # A conditional UPDATE: two tasks finishing the last two slots at once both try
    # and exactly one succeeds.
    GenerationRun.objects.filter(
        pk=run_id,
        status=GenerationRun.Status.RUNNING,
        total__lte=F("succeeded") + F("failed"),
    ).update(status=GenerationRun.Status.FINISHED, finished=timezone.now())


def drain_run(*, run_id: int, claim_id: str) -> bool:
    """Drain a run for up to GENERATION_TASK_SECONDS; True if a new task should go on."""
    drain = Drain(claim=claim_id, run_id=run_id, variant_ids=None)
    drain.run()
    if drain.continue_later:
        return True
    # Variants released back to the queue while this drain found nothing more to claim
    # (calls refused while Redis restarted, a worker's shutdown): someone must take them.
    return GenerationRun.objects.filter(
        pk=run_id,
        status=GenerationRun.Status.RUNNING,
        variants__status=Variant.Status.QUEUED,
    ).exists()


def generate_variants(*, variant_ids: list[int], claim_id: str) -> int:
    return Drain(claim=claim_id, run_id=None, variant_ids=variant_ids).run()
