"""A lead builds a run on the demo's data in a real browser: the estimate follows each
segment ticked and each filter chosen, a bad budget is named beside the field, and
starting lands on the run's page."""

import re

import pytest
from playwright.sync_api import expect

from generation.models import GenerationRun, Segment
from hyperpers import demo_data
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _slots(text: str) -> int:
    return int(re.search(r"Estimate: ([\d,]+) slots?", text).group(1).replace(",", ""))


def test_a_lead_builds_a_run_and_the_estimate_follows_the_scope(
    page, live_server, log_in, screenshot, offline_writer
):
    demo_data.load(start_run=False)  # the demo's brand, catalog, customers, segments, prompt
    UserFactory(username="run-builder", groups=["marketing lead"])
    first, second = Segment.objects.filter(member_count__gt=0).order_by("name")[:2]

    log_in("run-builder")
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(f"{live_server.url}/review/runs/")
    page.get_by_role("link", name="Build a run").click()
    page.get_by_label("Prompt", exact=True).select_option("product-page")
    estimate = page.locator("#estimate")
    # No segment yet: said beside the segments, and no estimate.
    expect(page.locator("#errors-segments")).to_contain_text("Tick at least one segment")
    expect(estimate).not_to_contain_text("Estimate:")
    page.evaluate("window.__sameDocument = true")

    page.locator(f'input[name="segments"][value="{first.slug}"]').check()
    expect(estimate).to_contain_text("Estimate:")
    expect(page.locator("#errors-segments")).to_be_empty()
    one = _slots(estimate.inner_text())
    screenshot("01-one-segment")

    page.locator(f'input[name="segments"][value="{second.slug}"]').check()
    expect(estimate).not_to_contain_text(f"Estimate: {one:,} slot")
    two = _slots(estimate.inner_text())
    assert two > one
    screenshot("02-two-segments")

    page.get_by_label("Category", exact=True).select_option("Run")
    expect(page.locator("#products-match")).not_to_contain_text("48 products")
    expect(estimate).not_to_contain_text(f"Estimate: {two:,} slot")
    chosen = _slots(estimate.inner_text())
    assert chosen < two
    assert page.evaluate("window.__sameDocument") is True  # all in place, no reload
    estimates = [url for url in asked if "/runs/new/estimate/" in url]
    assert estimates and not [url for url in estimates if "csrfmiddlewaretoken" in url]

    page.get_by_label("Budget in US dollars (optional)").fill("-3")
    page.get_by_role("button", name="Start the run").click()
    expect(page.locator("#errors-budget")).to_contain_text("must be a positive number")
    assert not GenerationRun.objects.exists()
    screenshot("03-bad-budget")

    page.get_by_label("Budget in US dollars (optional)").fill("5")
    page.get_by_role("button", name="Start the run").click()
    page.wait_for_url(re.compile(r"/review/runs/\d+/$"))
    run = GenerationRun.objects.get()
    expect(page.locator("h1")).to_contain_text(f"Run #{run.pk}")
    assert sorted(run.scope["segments"]) == sorted([first.slug, second.slug])
    assert (run.budget, run.total) == (5, chosen)
    screenshot("04-run-page")
