"""A real Chromium driven by Playwright against pytest-django's live server.

Debian's Chromium at /usr/bin/chromium is the browser (never `playwright install`: it
downloads a build of its own, and these machines reach no such host). Where it is
absent, a developer's machine, the tests skip; CI installs it (.ci/run) and there a
missing browser fails them instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = PROJECT_DIR / "test-artifacts"
PASSWORD = "pw-for-tests"  # tests.factories.UserFactory's
# Generous for a loaded CI machine; a passing step takes milliseconds.
TIMEOUT_MS = 15_000


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs Chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="package")
def browser() -> Iterator:
    """One Chromium for the package's tests, closed before other packages' tests run."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is absent (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable('playwright is not installed (pip install -e ".[dev]")')
    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API runs an asyncio loop on the test's thread while it is
        # started, and Django refuses ORM calls from a thread with a running loop. The
        # tests' own ORM calls (factories, assertions) are plain synchronous code, so
        # the guard is a false alarm here; the package scope keeps the loop, and this
        # setting, away from every other test.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def page(browser, request) -> Iterator:
    """A fresh context (no cookies) and page; JS errors fail the test; a failure leaves
    a screenshot."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        page.screenshot(path=_artifact(request.node.name, "failure"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _artifact(test_name: str, step: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / re.sub(r"[^\w.-]+", "_", f"{test_name}-{step}.png")


@pytest.fixture
def screenshot(page, request) -> Callable[[str], Path]:
    """screenshot("step") saves test-artifacts/<test name>-<step>.png, the whole page."""

    def take(step: str) -> Path:
        path = _artifact(request.node.name, step)
        page.screenshot(path=path, full_page=True)
        return path

    return take


@pytest.fixture
def log_in(page, live_server) -> Callable[[str], None]:
    """Log in through the real login form as `username` (made with UserFactory)."""

    def log_in_as(username: str) -> None:
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/login/" not in url)

    return log_in_as
