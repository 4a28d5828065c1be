"""A copywriter clears the review queue with the keyboard alone, without a page load."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from generation.models import Variant
from review.models import ReviewEvent
from tests.factories import PromptVersionFactory, UserFactory, VariantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# What the copywriter does to the rows, top to bottom.
PLAN = [
    "approve",
    "edit",
    "reject",
    "regenerate",
    "approve",
    "reject-arrow",
    "edit",
    "regenerate",
    "approve",
    "approve",
]


@pytest.fixture
def private_queue():
    """Point the Celery tasks this process sends at a queue of their own and empty it
    after: a regeneration is handed to Celery, and no worker (a demo's, sharing the
    Redis) may run it against another database."""
    from hyperpers.celery import app

    queue = f"test-browser-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue

    def waiting() -> int:
        with app.connection_for_write() as connection:
            return connection.default_channel.queue_declare(queue, passive=True).message_count

    yield waiting
    app.conf.task_default_queue = previous
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)


def _row(page, pk: int):
    return page.locator(f"#variant-{pk}")


def _expect_selected(page, pk: int) -> None:
    expect(_row(page, pk)).to_have_class(re.compile(r"\bis-current\b"))


def test_a_copywriter_clears_a_queue_of_ten_with_the_keyboard_alone(
    page, live_server, log_in, screenshot, private_queue
):
    copywriter = UserFactory(username="cw", groups=["copywriter"])
    version = PromptVersionFactory()
    for n in range(10):
        VariantFactory(
            prompt_version=version, text=f"Copy number {n}: light miles, cool feet, every day."
        )
    log_in("cw")
    rows = page.locator("#variants .variant")
    expect(rows).to_have_count(10)
    ids = [int(pk) for pk in rows.evaluate_all("rows => rows.map(row => row.dataset.variant)")]
    texts = {v.pk: v.text for v in Variant.objects.filter(pk__in=ids)}
    # A page load would drop this; htmx swaps keep it.
    page.evaluate("window.__sameDocument = true")
    screenshot("01-queue")

    # ? shows the keys and hides them again; j and k move the selection.
    page.keyboard.press("?")
    expect(page.locator("#keys-help")).to_have_attribute("open", "")
    screenshot("02-keys-help")
    page.keyboard.press("?")
    expect(page.locator("#keys-help")).not_to_have_attribute("open", "")
    _expect_selected(page, ids[0])
    for key, at in [("j", 1), ("j", 2), ("k", 1), ("k", 0), ("k", 0)]:
        page.keyboard.press(key)
        _expect_selected(page, ids[at])

    edits: dict[int, str] = {}
    notes: dict[int, str] = {}
    for at, (pk, action) in enumerate(zip(ids, PLAN, strict=True)):
        _expect_selected(page, pk)
        row = _row(page, pk)
        if action == "approve":
            page.keyboard.press("a")
            status = "published"
        elif action == "edit":
            page.keyboard.press("e")
            textarea = row.locator("details.edit textarea")
            expect(textarea).to_be_focused()
            page.keyboard.press("Control+a")
            # Keys typed in the text (j, k, a, e...) are text, not commands.
            edits[pk] = f"Edited {at}: just a joke-free, keen, exact rewrite."
            page.keyboard.type(edits[pk])
            screenshot(f"03-edit-{at}")
            page.keyboard.press("Control+Enter")
            status = "published"
        elif action == "reject":
            page.keyboard.press("r")
            expect(row.locator("select[name=reason]")).to_be_focused()
            page.keyboard.type("F")  # the select's type-ahead: "Factually wrong"
            expect(row.locator("select[name=reason]")).to_have_value("Factually wrong")
            page.keyboard.press("Tab")
            page.keyboard.type("It is not waterproof")
            screenshot(f"04-reject-{at}")
            page.keyboard.press("Enter")
            status = "rejected"
        elif action == "reject-arrow":
            page.keyboard.press("r")
            page.keyboard.press("ArrowDown")  # the first reason: "Off brand"
            expect(row.locator("select[name=reason]")).to_have_value("Off brand")
            page.keyboard.press("Tab")
            page.keyboard.press("Enter")
            status = "rejected"
        else:
            page.keyboard.press("g")
            expect(row.locator("input[name=note]")).to_be_focused()
            notes[pk] = f"Mention the warranty ({at})"
            page.keyboard.type(notes[pk])
            page.keyboard.press("Enter")
            status = "queued"
        expect(row).to_have_class(re.compile(rf"\bstatus-{status}\b"))
        if at < len(ids) - 1:
            # The decision moves the selection on to the next row.
            _expect_selected(page, ids[at + 1])
        if at == 4:
            # Back up to a decided row: `a` finds nothing to approve there.
            page.keyboard.press("k")
            _expect_selected(page, pk)
            page.keyboard.press("a")
            page.keyboard.press("j")
            _expect_selected(page, ids[at + 1])

    expect(page.locator("#variants .variant.status-in_review")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True
    screenshot("05-all-decided")

    # The database holds every decision, and the audit trail one event per decision.
    variants = {v.pk: v for v in Variant.objects.filter(pk__in=ids)}
    for pk, action in zip(ids, PLAN, strict=True):
        v = variants[pk]
        events = list(
            ReviewEvent.objects.filter(variant=v).values_list(
                "action", "user", "reason", "text_before", "text_after"
            )
        )
        if action == "approve":
            assert (v.status, v.text, v.original_text) == ("published", texts[pk], texts[pk])
            assert events == [("approve", copywriter.pk, "", texts[pk], texts[pk])]
        elif action == "edit":
            assert (v.status, v.text, v.original_text) == ("published", edits[pk], texts[pk])
            assert events == [("edit", copywriter.pk, "", texts[pk], edits[pk])]
        elif action == "reject":
            assert v.status == "rejected"
            reason = "Factually wrong: It is not waterproof"
            assert events == [("reject", copywriter.pk, reason, texts[pk], texts[pk])]
        elif action == "reject-arrow":
            assert v.status == "rejected"
            assert events == [("reject", copywriter.pk, "Off brand", texts[pk], texts[pk])]
        else:
            assert (v.status, v.regeneration_note, v.text) == ("queued", notes[pk], texts[pk])
            assert events == [("regenerate", copywriter.pk, notes[pk], texts[pk], "")]
    # Both regenerations were handed to Celery (no worker here to take them).
    assert private_queue() == 2

    # Loaded afresh, the queue has nothing left to review.
    page.reload()
    expect(page.locator("#variants .variant")).to_have_count(0)
    expect(page.locator("#variants .empty")).to_contain_text("Nothing to review")
    tabs = page.locator("nav.tabs a")
    expect(tabs.filter(has_text="Published")).to_contain_text("6")
    expect(tabs.filter(has_text="Rejected")).to_contain_text("2")
    expect(tabs.filter(has_text="Queued")).to_contain_text("2")
    screenshot("06-queue-empty")
