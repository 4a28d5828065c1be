"""A lead saves a prompt's new version in the studio and watches its run write the slots."""

import re

import pytest
from playwright.sync_api import expect

from generation.models import GenerationRun, PromptVersion, Variant
from tests.factories import (
    ProductFactory,
    PromptVersionFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEMPLATE = "Write about {product_name} for {segment_name} in {language}."
NEW_TEMPLATE = TEMPLATE + "\nMention the two-year warranty."


def test_a_lead_saves_a_new_version_and_sees_its_variants_arrive(
    page, live_server, log_in, screenshot, start_worker
):
    lead = UserFactory(username="lead", groups=["marketing lead"])
    v1 = PromptVersionFactory(number=1, template=TEMPLATE)
    prompt = v1.prompt
    products = ProductFactory.create_batch(3)
    segments = SegmentFactory.create_batch(2)
    # Six slots with a v1 variant: five in review, one published.
    old = [
        VariantFactory(prompt_version=v1, product=p, segment=s, text=f"v1 copy of {p.sku}")
        for p in products
        for s in segments
    ]
    Variant.objects.filter(pk=old[0].pk).update(status=Variant.Status.PUBLISHED)
    start_worker()

    log_in("lead")
    page.goto(f"{live_server.url}/review/prompts/{prompt.slug}/")
    page.locator("#id_template").fill(NEW_TEMPLATE)
    page.get_by_label("Note for the new version").fill("Say the warranty")
    page.get_by_role("button", name="Save as new version…").click()
    impact = page.locator("#impact")
    expect(impact).to_contain_text("Saving makes v2")
    expect(impact).to_contain_text("6 slots regenerated")
    expect(impact).to_contain_text("5 variants in review superseded")
    expect(impact).to_contain_text("1 published variant stays live")
    screenshot("01-impact")

    impact.get_by_role("button", name="Save v2 and regenerate 6 slots").click()
    page.wait_for_url(re.compile(r"/review/runs/\d+/$"))
    run = GenerationRun.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))
    expect(page.locator(".messages")).to_contain_text(f"run {run.pk} regenerates 6 slots")
    page.evaluate("window.__sameDocument = true")
    screenshot("02-run-started")

    # The run page polls its progress until the worker has written every slot.
    progress = page.locator("#run-progress")
    expect(progress).to_contain_text("Finished", timeout=60_000)
    expect(progress).to_contain_text("6 written, 0 failed of 6")
    expect(progress.locator("progress")).to_have_attribute("value", "6")
    # The actions follow the run's state as it polls: no Cancel on a finished run.
    expect(progress.get_by_role("button", name="Cancel")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True
    screenshot("03-run-finished")

    v2 = PromptVersion.objects.get(prompt=prompt, number=2)
    assert (v2.template, v2.note, v2.author) == (NEW_TEMPLATE, "Say the warranty", lead)
    run.refresh_from_db()
    assert run.prompt_version == v2
    assert (run.status, run.total, run.succeeded, run.failed) == ("finished", 6, 6, 0)
    # The published one stays live until its replacement is approved.
    expected = {old[0].pk: "published"} | {v.pk: "superseded" for v in old[1:]}
    assert dict(Variant.objects.filter(prompt_version=v1).values_list("pk", "status")) == expected
    written = Variant.objects.filter(prompt_version=v2)
    assert written.count() == 6
    assert set(written.values_list("status", "run")) == {("in_review", run.pk)}
    assert set(written.values_list("product", "segment")) == {
        (p.pk, s.pk) for p in products for s in segments
    }

    # The new variants wait in the queue, the old ones are gone from it.
    page.goto(f"{live_server.url}/review/?run={run.pk}")
    expect(page.locator("#variants .variant")).to_have_count(6)
    expect(page.locator("#variants .variant", has_text=f"{prompt.slug} v1")).to_have_count(0)
    page.goto(f"{live_server.url}/review/?prompt={prompt.slug}")
    expect(page.locator("#variants .variant")).to_have_count(6)
    screenshot("04-queue")


def test_a_lead_tries_the_draft_on_the_samples_they_chose(
    page, live_server, log_in, offline_writer, screenshot
):
    """Try posts the sample rows as a formset: the button's HTMX request carries the
    editor's form, management form and all, and a row's error comes back named."""
    UserFactory(username="lead", groups=["marketing lead"])
    v1 = PromptVersionFactory(number=1, template=TEMPLATE)
    products = ProductFactory.create_batch(2)
    segments = SegmentFactory.create_batch(2)

    log_in("lead")
    page.goto(f"{live_server.url}/review/prompts/{v1.prompt.slug}/")
    page.get_by_label("Sample 2 product SKU").fill(products[1].sku)
    page.get_by_role("button", name="Try on samples").click()
    results = page.locator("#try-results")
    expect(results).to_contain_text("Sample 2: Choose both a product (its SKU) and a segment")
    assert offline_writer.requests == []

    page.get_by_label("Sample 2 segment").select_option(segments[0].slug)
    page.get_by_role("button", name="Try on samples").click()
    expect(results.locator("article.sample")).to_have_count(1)
    expect(results).to_contain_text(f"{products[1].name} {products[1].sku} for {segments[0].name}")
    expect(results).not_to_contain_text("Choose both")
    screenshot("01-tried")
