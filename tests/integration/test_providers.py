"""A whole run through each of the offline writer's provider profiles, with random 429s
and 5xx on, through a real worker: the outcome of every slot is checked against what
the writer really answered.

The profiles answer the way hosted models do: `plain` as we ask, `markdown` with bold
names and heading-marked rationales, `json` honouring response_format (sometimes in a
code fence), `terse` sometimes with no rationale, `chatty` with a preamble, and
`truncating` cut off at the length limit now and then.
"""

import re
import time

import pytest

from generation import services
from generation.models import EndpointCapability, GenerationRun, Prompt, Variant
from tests.conftest import configure_writer
from tests.factories import ProductFactory, PromptVersionFactory, SegmentFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PRODUCTS, SEGMENTS = 8, 5
FAULTS = {"rate_limit_rate": 0.125, "retry_after_s": 0.2, "error_5xx_rate": 0.04}
WORKER_ENV = {
    "GENERATION_THREADS_PER_TASK": 6,
    "GENERATION_TASKS_PER_RUN": 2,
    "LLM_CONCURRENCY": 8,
    "LLM_BACKOFF_MAX_SECONDS": 0.2,
}
# What may never survive normalisation into plain-text copy.
MARKUP = re.compile(r"\*\*|__|^#{1,6}\s|^```|^>\s|^Here(?: is|'s)|^Sure", re.M | re.I)


def _wait(run: GenerationRun, timeout: float = 180) -> GenerationRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status not in (GenerationRun.Status.PENDING, GenerationRun.Status.RUNNING):
            return run
        time.sleep(0.25)
    pytest.fail(f"run {run.pk} did not finish: {run.status} {run.succeeded}+{run.failed}")


def _check(variant: Variant, name: str) -> dict:
    return next(c for c in variant.checks if c["name"] == name)


@pytest.mark.parametrize("profile", ["plain", "markdown", "json", "terse", "chatty", "truncating"])
def test_every_slot_of_a_run_through_a_provider_profile_ends_as_its_answer_says(
    start_worker, offline_writer, profile, capsys
):
    configure_writer(offline_writer, profile=profile, latency_ms=20, seed=13)
    version = PromptVersionFactory()
    prompt = version.prompt
    # The policy may publish copy whose checks all pass; cut-off copy must never be.
    prompt.review_policy = Prompt.ReviewPolicy.AUTO
    prompt.save(update_fields=["review_policy"])
    run = services.run_create(
        prompt=prompt,
        products=ProductFactory.create_batch(PRODUCTS),
        segments=SegmentFactory.create_batch(SEGMENTS),
    )
    # The probe (in run_create) is answered cleanly; the slots meet the faults.
    configure_writer(offline_writer, **FAULTS)
    offline_writer.reset()
    start_worker("providers", **WORKER_ENV)
    run = _wait(run)

    stats = offline_writer.stats()
    shapes = stats["shapes"]
    variants = list(Variant.objects.filter(run=run).order_by("pk"))
    total = PRODUCTS * SEGMENTS

    # No slot failed, whatever the shape of the answer or the transient faults.
    assert (run.status, run.total, run.succeeded, run.failed) == ("finished", total, total, 0)
    assert stats["errors_injected"]["rate_limit"] > 0 and stats["errors_injected"]["error_5xx"] > 0
    assert stats["completed"] == total  # one answer a slot: nothing written twice
    expected_mode = "json" if profile == "json" else "markers"
    assert run.output_mode == expected_mode
    assert {v.output_mode for v in variants} == {expected_mode}
    assert EndpointCapability.objects.get().structured_output is (profile == "json")

    for v in variants:
        assert v.status in (Variant.Status.IN_REVIEW, Variant.Status.PUBLISHED), v.error
        assert v.text.strip() and v.raw_output
        assert not MARKUP.search(v.text), (profile, v.text)
        assert "rationale" not in v.text.lower(), (profile, v.text)
        assert not v.text.startswith(('"', "“")), (profile, v.text)
        if v.status == Variant.Status.PUBLISHED:
            assert v.checks_failed == 0 and v.policy_outcome == "auto"

    missing = [v for v in variants if not _check(v, "rationale")["passed"]]
    truncated = [v for v in variants if v.finish_reason == "length"]
    cleaned = [v for v in variants if v.normalisation]
    # Each failed check matches what the writer really sent.
    failed_truncated = {v.pk for v in variants if not _check(v, "truncated")["passed"]}
    assert {v.pk for v in truncated} == failed_truncated
    for v in truncated:
        assert v.status == Variant.Status.IN_REVIEW and v.policy_outcome == "held"
    for v in missing:
        assert v.rationale == ""
    if profile == "plain":
        assert not missing and not truncated and not cleaned
    elif profile == "markdown":
        assert not missing and len(cleaned) == shapes["bold_name"] > 0
        assert all("bold around" in " ".join(v.normalisation) for v in cleaned)
    elif profile == "json":
        assert not missing and all(v.raw_output.lstrip().startswith(("{", "```")) for v in variants)
        assert shapes["json"] + shapes.get("json_fenced", 0) == total
    elif profile == "terse":
        assert len(missing) == shapes["no_rationale"] > 0 and not truncated
    elif profile == "chatty":
        assert not missing and len(cleaned) >= shapes["preamble"] > 0
        assert any("preamble" in " ".join(v.normalisation) for v in cleaned)
    elif profile == "truncating":
        assert len(truncated) == shapes["truncated"] > 0
        assert {v.pk for v in missing} >= {v.pk for v in truncated}

    outcomes = {
        "in_review": sum(v.status == "in_review" for v in variants),
        "published": sum(v.status == "published" for v in variants),
        "rationale_missing": len(missing),
        "truncated": len(truncated),
        "normalised": len(cleaned),
    }
    with capsys.disabled():
        print(
            f"\nprofile {profile}: {total} slots, mode {run.output_mode}, failed {run.failed}; "
            f"{outcomes}; writer: {stats['errors_injected']['rate_limit']} random 429s, "
            f"{stats['errors_injected']['error_5xx']} 5xx, shapes {shapes}"
        )
