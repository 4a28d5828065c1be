import pytest
from django.urls import reverse

from generation.models import GenerationRun, Variant
from tests.factories import (
    ProductFactory,
    PromptVersionFactory,
    RunFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(client):
    user = UserFactory(username="lead", groups=["marketing lead"])
    client.force_login(user)
    return user


@pytest.fixture
def copywriter(client):
    user = UserFactory(username="cw", groups=["copywriter"])
    client.force_login(user)
    return user


def test_anonymous_users_cannot_see_or_start_runs(client):
    run = RunFactory()
    for response in (
        client.get(reverse("review:runs")),
        client.get(reverse("review:run", args=[run.pk])),
        client.post(reverse("review:run-new"), {"prompt": "x"}),
    ):
        assert response.status_code == 302 and "/login/" in response["Location"]


def test_copywriters_can_watch_runs_but_not_start_or_steer_them(client, copywriter):
    run = RunFactory(status=GenerationRun.Status.RUNNING, total=4, succeeded=1)
    assert client.get(reverse("review:runs")).status_code == 200
    body = client.get(reverse("review:run", args=[run.pk])).content.decode()
    assert "1 written, 0 failed of 4" in body and "Cancel" not in body
    assert client.post(reverse("review:run-new"), {"prompt": "x"}).status_code == 403
    response = client.post(reverse("review:run-action", args=[run.pk, "cancel"]))
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.RUNNING


def test_a_lead_sees_the_estimate_before_starting_a_run(client, lead, offline_writer):
    version = PromptVersionFactory()
    ProductFactory.create_batch(2)
    SegmentFactory.create_batch(3)
    response = client.post(
        reverse("review:run-new"), {"prompt": version.prompt.slug}, headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert "Estimate: 6 slots" in body and "Start this run" in body
    assert not GenerationRun.objects.exists()

    response = client.post(
        reverse("review:run-new"), {"prompt": version.prompt.slug, "confirm": "1"}
    )
    run = GenerationRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "review:run", args=[run.pk]
    )
    assert run.total == 6 and run.created_by == lead


def test_starting_a_run_against_a_bad_endpoint_shows_the_error_and_queues_nothing(
    client, lead, settings
):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    version = PromptVersionFactory()
    ProductFactory()
    SegmentFactory()
    response = client.post(
        reverse("review:run-new"), {"prompt": version.prompt.slug, "confirm": "1"}
    )
    assert response.status_code == 200
    assert "Cannot reach the LLM endpoint" in response.content.decode()
    assert not GenerationRun.objects.exists() and not Variant.objects.exists()


def test_a_bad_budget_is_named(client, lead):
    version = PromptVersionFactory()
    response = client.post(
        reverse("review:run-new"), {"prompt": version.prompt.slug, "budget": "ten"}
    )
    assert "not &#x27;ten&#x27;" in response.content.decode()


def test_a_lead_cancels_and_sees_failures_with_reasons(client, lead):
    run = RunFactory(status=GenerationRun.Status.RUNNING, total=2, failed=1)
    VariantFactory(run=run, status=Variant.Status.FAILED, error="HTTP 400: bad request <x>")
    VariantFactory(run=run, status=Variant.Status.PUBLISHED)
    body = client.get(reverse("review:run", args=[run.pk])).content.decode()
    assert "Published 1 · Failed 1" in body
    assert "HTTP 400: bad request &lt;x&gt;" in body and "Retry 1 failed" in body
    response = client.post(reverse("review:run-action", args=[run.pk, "cancel"]))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.CANCELLED


def test_the_progress_partial_polls_while_the_run_is_active(client, copywriter):
    run = RunFactory(status=GenerationRun.Status.RUNNING, total=3)
    response = client.get(reverse("review:run", args=[run.pk]), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="run-progress"') and 'hx-trigger="every 2s"' in body
    run.status = GenerationRun.Status.FINISHED
    run.save()
    body = client.get(reverse("review:run", args=[run.pk]), headers={"HX-Request": "true"})
    assert "hx-trigger" not in body.content.decode()


def test_a_lead_retries_one_failed_variant(client, lead, django_capture_on_commit_callbacks):
    run = RunFactory(status=GenerationRun.Status.FINISHED, total=1, failed=1)
    variant = VariantFactory(run=run, status=Variant.Status.FAILED, error="HTTP 400")
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("review:run-action", args=[run.pk, "retry-variant"]), {"variant": variant.pk}
        )
    assert response.status_code == 302 and len(callbacks) == 1
    variant.refresh_from_db()
    run.refresh_from_db()
    assert (variant.status, variant.error, run.failed) == ("queued", "", 0)


def test_an_unknown_run_action_is_404(client, lead):
    run = RunFactory()
    assert client.post(reverse("review:run-action", args=[run.pk, "explode"])).status_code == 404
