"""A lead builds a segment from rule rows: counts its members over HTMX, then saves it."""

import pytest
from playwright.sync_api import expect

from generation.models import Segment
from tests.factories import CustomerFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_lead_counts_a_segments_members_before_saving_it(page, live_server, log_in, screenshot):
    UserFactory(username="lead", groups=["marketing lead"])
    for age, region in [(22, "north"), (27, "south"), (31, "north"), (45, "north")]:
        CustomerFactory(attributes={"age": age, "region": region, "value_tier": "high"})

    log_in("lead")
    page.goto(f"{live_server.url}/review/segments/")
    page.get_by_label("Name").fill("Young north")
    page.get_by_label("Attribute 1").fill("age")
    page.get_by_label("Condition 1").select_option("range")
    page.get_by_label("Value 1").fill("20")
    page.get_by_label("Upper bound 1").fill("35")
    page.get_by_label("Attribute 2").fill("region")
    page.get_by_label("Condition 2").select_option("one_of")
    page.get_by_label("Value 2").fill("north, east")
    page.evaluate("window.__sameDocument = true")

    page.get_by_role("button", name="Count members").click()
    preview = page.locator("#segment-preview")
    expect(preview).to_contain_text("2 customers where age from 20 and under 35")
    expect(preview).to_contain_text("value_tier")
    assert page.evaluate("window.__sameDocument") is True  # swapped in place, no reload
    assert not Segment.objects.exists()
    screenshot("01-counted")

    page.get_by_role("button", name="Create segment").click()
    expect(page.locator(".messages")).to_contain_text("Created segment Young north: 2 members")
    expect(page.locator("table.segments")).to_contain_text("region is north or east")
    segment = Segment.objects.get()
    assert segment.rules == {"age": {"gte": 20, "lt": 35}, "region": ["north", "east"]}
    screenshot("02-created")


def test_a_bad_rule_is_shown_and_nothing_is_saved(page, live_server, log_in):
    UserFactory(username="lead", groups=["marketing lead"])
    log_in("lead")
    page.goto(f"{live_server.url}/review/segments/")
    page.get_by_label("Name").fill("Nobody")
    page.get_by_label("Attribute 1").fill("age")
    page.get_by_label("Condition 1").select_option("range")
    page.get_by_role("button", name="Count members").click()
    expect(page.locator("#segment-preview")).to_contain_text(
        "Rule 1: give a lower bound, an upper bound or both"
    )
    page.get_by_role("button", name="Create segment").click()
    expect(page.locator("#segment-builder .error")).to_contain_text("Rule 1: give a lower bound")
    assert not Segment.objects.exists()
