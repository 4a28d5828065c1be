"""A lead on an empty instance creates the brand, then a prompt from a starter, and
lands in the studio for it (issue 18 item 4)."""

import re

import pytest
from playwright.sync_api import expect

from generation import starters
from generation.models import Brand, Prompt, PromptVersion
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_lead_creates_a_prompt_from_a_starter_and_lands_in_the_studio(
    page, live_server, log_in, screenshot, offline_writer
):
    lead = UserFactory(username="lead", groups=["marketing lead"])
    log_in("lead")

    # No brand yet: the new prompt page sends the lead to create one first.
    page.goto(f"{live_server.url}/review/prompts/new/")
    expect(page.get_by_role("button", name="Create prompt")).to_be_disabled()
    page.get_by_role("link", name="create the brand first").click()
    page.locator("#id_name").fill("Tidewater")
    page.get_by_label("Voice").fill("Calm, exact and kind. We never promise results.")
    page.get_by_label("Banned phrases").fill("miracle\nguaranteed")
    page.get_by_role("button", name="Create brand").click()
    expect(page.locator(".messages")).to_contain_text("Created the brand Tidewater")
    screenshot("01-brand")

    page.get_by_role("link", name="Prompts", exact=True).click()
    page.get_by_role("link", name="New prompt from a starter").click()
    expect(page.locator("#id_template")).to_have_value(starters.starter("product-page").template)
    page.evaluate("window.__sameDocument = true")

    # Another starter fills the form in place, over HTMX.
    page.get_by_role("link", name="SMS", exact=True).click()
    expect(page.locator("#id_template")).to_have_value(starters.starter("sms").template)
    expect(page.locator("#id_max_length")).to_have_value("160")
    expect(page.locator("#id_channel")).to_have_value("sms")
    assert page.evaluate("window.__sameDocument") is True
    page.locator("#id_name").fill("Spring SMS")
    page.locator("#id_slug").fill("spring-sms")
    page.locator("#id_languages").fill("en, de")
    screenshot("02-starter")

    # An unknown placeholder is refused beside the template; nothing is written.
    sms = starters.starter("sms").template
    page.locator("#id_template").fill(sms + "\nGreet {first_name}.")
    page.get_by_role("button", name="Create prompt").click()
    expect(page.locator(".error")).to_contain_text("Unknown placeholder '{first_name}'")
    assert not Prompt.objects.exists()
    expect(page.locator("#id_name")).to_have_value("Spring SMS")  # what was typed stays
    screenshot("03-refused")

    page.locator("#id_template").fill(sms)
    page.get_by_role("button", name="Create prompt").click()
    page.wait_for_url(re.compile(r"/review/prompts/spring-sms/$"))
    expect(page.locator(".messages")).to_contain_text("Created Spring SMS with its v1")
    expect(page.locator("#id_template")).to_have_value(sms)
    screenshot("04-studio")

    prompt = Prompt.objects.get()
    assert (prompt.slug, prompt.channel, prompt.max_length, prompt.languages) == (
        "spring-sms", "sms", 160, ["en", "de"]
    )  # fmt: skip
    assert prompt.brand == Brand.objects.get(name="Tidewater")
    version = PromptVersion.objects.get()
    assert (version.number, version.author, version.template) == (1, lead, sms)
