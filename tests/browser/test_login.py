"""Anonymous visitors land on the login page, and the form takes them where they meant to go."""

import re

import pytest
from playwright.sync_api import expect

from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_anonymous_users_land_on_the_login_page_and_go_on_after_logging_in(
    page, live_server, screenshot
):
    UserFactory(username="cw", groups=["copywriter"])
    # The site root, the queue, a variant, the runs and the studio: all behind the login.
    for path, next_path in [
        ("/", "/review/"),
        ("/review/", "/review/"),
        ("/review/variants/1/", "/review/variants/1/"),
        ("/review/prompts/product-page/", "/review/prompts/product-page/"),
        ("/review/runs/", "/review/runs/"),
    ]:
        page.goto(f"{live_server.url}{path}")
        expect(page).to_have_url(re.compile(rf"/login/\?next={re.escape(next_path)}$"))
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        expect(page.locator(".topbar nav")).to_have_count(0)
    screenshot("login-page")

    page.get_by_label("Username").fill("cw")
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(f"{live_server.url}/review/runs/")
    expect(page.locator(".topbar .logout")).to_contain_text("cw")
    screenshot("after-login")
