"""Decisions move between instances as JSON: exported, imported all or nothing, twice
without change; and the audit trail cannot be edited."""

from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.core.management.base import CommandError

from generation.models import Variant
from review import services
from review.models import ReviewEvent
from tests.factories import PromptVersionFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db


def _decided():
    ann = UserFactory(username="ann", groups=["copywriter"])
    approved, edited, rejected = VariantFactory.create_batch(3)
    services.variant_approve(variant=approved, user=ann)
    services.variant_approve(variant=edited, user=ann, text="Ann's better copy.")
    services.variant_reject(variant=rejected, user=ann, reason="Off brand")
    return ann, approved, edited, rejected


def _as_on_a_fresh_instance():
    """The same variants, in review, with no decisions: what another instance that ran
    the same prompt versions over the same catalog holds."""
    ReviewEvent.objects.all().delete()
    Variant.objects.update(status=Variant.Status.IN_REVIEW, published=None)


def test_decisions_round_trip_with_their_times_authors_and_effects():
    _ann, approved, edited, rejected = _decided()
    before = list(ReviewEvent.objects.order_by("id").values_list("action", "created", "user"))
    data = json.loads(json.dumps(services.decisions_export()))  # through JSON, as a file
    assert [d["action"] for d in data["decisions"]] == ["approve", "edit", "reject"]
    assert data["decisions"][0]["variant"]["prompt"] == approved.prompt.slug

    _as_on_a_fresh_instance()
    result = services.decisions_import(data=data)

    assert (result.imported, result.published, result.rejected) == (3, 2, 1)
    after = list(ReviewEvent.objects.order_by("id").values_list("action", "created", "user"))
    assert after == before
    statuses = dict(Variant.objects.values_list("pk", "status"))
    assert statuses[approved.pk] == statuses[edited.pk] == "published"
    assert statuses[rejected.pk] == "rejected"
    assert Variant.objects.get(pk=edited.pk).text == "Ann's better copy."

    again = services.decisions_import(data=data)
    assert (again.imported, again.already_there) == (0, 3)
    assert ReviewEvent.objects.count() == 3


def test_an_imported_approval_publishes_as_an_approval_here_does(
    django_capture_on_commit_callbacks, monkeypatch
):
    """One publish path: the slot's live copy is retired with its event (pointing at
    its replacement) and a new revision, and a message's caller hears of it."""
    from generation import tasks

    ann = UserFactory(username="ann", groups=["copywriter"])
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    newer = VariantFactory(
        prompt_version=PromptVersionFactory(prompt=live.prompt),
        product=live.product,
        segment=live.segment,
        callback_url="https://shop.example/hook",
    )
    services.variant_approve(variant=newer, user=ann)
    data = json.loads(json.dumps(services.decisions_export()))
    # Another instance: the same two variants, the older one still live there.
    ReviewEvent.objects.all().delete()
    Variant.objects.filter(pk=newer.pk).update(status=Variant.Status.IN_REVIEW, published=None)
    Variant.objects.filter(pk=live.pk).update(status=Variant.Status.PUBLISHED, revision=3)
    sent = []
    monkeypatch.setattr(tasks.message_callback, "delay", lambda *args: sent.append(args))

    with django_capture_on_commit_callbacks(execute=True):
        result = services.decisions_import(data=data)

    assert result.published == 1
    live.refresh_from_db()
    assert (live.status, live.revision) == ("retired", 4)
    retire = ReviewEvent.objects.get(variant=live, action="retire")
    assert retire.replaced_by_id == newer.pk and retire.user == ann
    assert Variant.objects.get(pk=newer.pk).status == "published"
    assert ReviewEvent.objects.filter(variant=newer, action="approve").count() == 1
    assert sent == [(newer.pk, "published")]
    # Undoing the imported approval here puts back what it replaced here.
    services.decision_undo(event=ReviewEvent.objects.get(variant=newer, action="approve"), user=ann)
    live.refresh_from_db()
    assert live.status == "published"


def test_undo_finds_what_an_approval_replaced_by_its_key():
    ann = UserFactory(username="ann", groups=["copywriter"])
    live = VariantFactory(status=Variant.Status.PUBLISHED)
    newer = VariantFactory(
        prompt_version=PromptVersionFactory(prompt=live.prompt),
        product=live.product,
        segment=live.segment,
    )
    services.variant_approve(variant=newer, user=ann)
    retire = ReviewEvent.objects.get(variant=live, action="retire")
    retire.reason = "renamed by hand"  # the reason is for people; the key is what counts
    retire.save()
    services.decision_undo(event=newer.review_events.get(action="approve"), user=ann)
    live.refresh_from_db()
    assert live.status == "published"


def test_a_variant_decided_here_keeps_its_local_state():
    _ann, approved, _edited, _rejected = _decided()
    data = services.decisions_export()
    _as_on_a_fresh_instance()
    services.variant_reject(variant=approved, user=UserFactory(), reason="Not here")
    result = services.decisions_import(data=data)
    assert result.kept_local == 1
    assert Variant.objects.get(pk=approved.pk).status == "rejected"


def test_an_unknown_author_is_named_in_the_reason():
    _decided()
    data = services.decisions_export()
    _as_on_a_fresh_instance()
    UserFactory._meta.model.objects.filter(username="ann").delete()
    services.decisions_import(data=data)
    assert ReviewEvent.objects.filter(reason__contains="(by ann on another instance)").count() == 3


def test_a_file_naming_a_variant_this_instance_lacks_imports_nothing():
    _decided()
    data = services.decisions_export()
    data["decisions"][1]["variant"]["product"] = "NO-SUCH-SKU"
    data["decisions"][2]["action"] = "shrug"
    _as_on_a_fresh_instance()
    with pytest.raises(services.DecisionImportError) as error:
        services.decisions_import(data=data)
    assert "decision 2: no variant here for" in str(error.value)
    assert "decision 3: unknown action 'shrug'" in str(error.value)
    assert not ReviewEvent.objects.exists()


def test_the_commands_export_and_import(tmp_path, capsys):
    _decided()
    path = tmp_path / "decisions.json"
    call_command("export_decisions", "--output", str(path))
    _as_on_a_fresh_instance()
    call_command("import_decisions", str(path))
    assert "3 decisions imported" in capsys.readouterr().out
    path.write_text('{"format": "something else"}')
    with pytest.raises(CommandError, match="not a hyperpers-decisions file"):
        call_command("import_decisions", str(path))


def test_the_audit_trail_cannot_be_edited_in_the_admin(rf):
    model_admin = admin.site._registry[ReviewEvent]
    request = rf.get("/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
