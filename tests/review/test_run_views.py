import pytest
from django.urls import reverse

from generation.models import GenerationRun, Variant
from tests.factories import (
    RunFactory,
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


# Building and starting a run: tests/review/test_run_builder.py


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
