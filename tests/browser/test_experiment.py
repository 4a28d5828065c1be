"""A lead runs a 3-arm experiment on one slot: starts it from the focus view (the
base copy, the live variant and a challenger), engagement comes back for each arm,
and the experiment's page shows the winner with its corrected, sequential interval
and the sample-ratio check."""

import pytest
from playwright.sync_api import expect

from review.models import Experiment
from review.services import engagement_record
from tests.experiment_data import approved_slot, arm_events
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_lead_starts_an_experiment_and_sees_its_winner(page, live_server, log_in, screenshot):
    UserFactory(username="lead", groups=["marketing lead"])
    live, (challenger,) = approved_slot(challengers=1)

    log_in("lead")
    page.goto(f"{live_server.url}/review/variants/{live.pk}/")
    panel = page.locator("#experiment-panel")
    expect(panel.get_by_role("checkbox", name=f"Variant {live.pk}")).to_be_checked()
    expect(panel.get_by_role("checkbox", name=f"Variant {challenger.pk}")).to_be_checked()
    screenshot("01-focus-view")
    panel.get_by_role("button", name="Start the experiment").click()

    expect(page.locator("h1")).to_contain_text("Experiment")
    experiment = Experiment.objects.get()
    assert {a.key for a in experiment.arms.all()} == {
        "control",
        f"v{live.pk}",
        f"v{challenger.pk}",
    }
    expect(page.locator("#srm")).to_contain_text("No randomized visitor yet")

    # Delivery posts back what each visitor saw (e3 exposure ids, as the live
    # endpoint hands them out): the split as intended, the challenger twice as good.
    engagement_record(
        events=arm_events(
            experiment,
            {
                "control": (1000, 50),
                f"v{live.pk}": (4500, 225),
                f"v{challenger.pk}": (4500, 450),
            },
        )
    )
    page.reload()
    winner = page.locator(f"tr.arm-v{challenger.pk}")
    expect(winner).to_contain_text("winner proposed")
    expect(winner.locator(".interval-bar .range.better")).to_be_visible()
    expect(page.locator(f"tr.arm-v{live.pk}")).to_contain_text("keep running")
    expect(page.locator("#srm")).to_contain_text("The split is as intended")
    expect(page.get_by_text("Sequential interval and p-value")).to_be_visible()
    screenshot("02-winner")

    # The metrics page of the prompt shows it too, and links to it.
    page.get_by_role("link", name=f"metrics of {live.prompt.name}").click()
    summary = page.locator("#experiments")
    expect(summary).to_contain_text(f"Experiment {experiment.pk}")
    expect(summary).to_contain_text("the split is as intended")
    expect(summary.locator(f'tr[data-arm="v{challenger.pk}"]')).to_contain_text("winner proposed")
    screenshot("03-metrics")
