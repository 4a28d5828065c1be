"""Recorded imports when things go wrong: every way an import ends leaves it done or
failed (never running forever), its file removed, and nothing half-written."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DataError
from django.utils import timezone

from generation import imports, services
from generation.models import Import, Product

pytestmark = pytest.mark.django_db

CATALOG = b"sku,name,category,subcategory,description\nA-1,Shoe,Run,Road,Fine.\n"


def _recorded(name: str = "c.csv", body: bytes = CATALOG) -> Import:
    return imports.receive(
        SimpleUploadedFile(name, body), kind="products", requested_by="lead", via="web"
    )


def test_a_refusal_of_the_database_fails_the_import_and_says_so(monkeypatch, import_uploads):
    record = _recorded()

    def refuse(**kwargs):
        Product.objects.create(sku="HALF", name="written before the error")
        raise DataError("invalid byte sequence for encoding UTF8: 0x00")

    monkeypatch.setattr(services, "products_import", refuse)
    done = imports.execute(import_id=record.pk, claim="t1")

    assert done.status == "failed" and done.finished is not None
    assert "the database refused the data (DataError" in done.failure["file"][0]
    assert "Nothing was imported" in done.failure["file"][0]
    assert not Product.objects.exists()  # rolled back with the import
    assert list(import_uploads.iterdir()) == []


def test_an_interrupted_import_is_failed_not_left_running(monkeypatch, import_uploads):
    record = _recorded()

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(services, "products_import", interrupted)
    with pytest.raises(KeyboardInterrupt):
        imports.execute(import_id=record.pk, claim="cli-1")

    record.refresh_from_db()
    assert record.status == "failed" and "interrupted" in record.failure["file"][0]
    assert list(import_uploads.iterdir()) == []


def test_progress_is_a_courtesy_an_unreachable_cache_does_not_fail_the_import(monkeypatch):
    record = imports.receive(
        SimpleUploadedFile("c.csv", b"external_id,value_tier\nC1,high\nC2,low\n"),
        kind="customers",
        requested_by="lead",
        via="web",
    )

    def unreachable(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(imports.cache, "set", unreachable)
    done = imports.execute(import_id=record.pk, claim="t1")
    assert done.status == "done" and done.result["created"] == 2


def test_beat_fails_an_import_whose_worker_was_killed(settings, import_uploads):
    record = _recorded()
    started = timezone.now() - timedelta(seconds=settings.IMPORT_TIME_LIMIT + 301)
    Import.objects.filter(pk=record.pk).update(status="running", claim="dead", started=started)
    fresh = _recorded("fresh.csv")
    Import.objects.filter(pk=fresh.pk).update(
        status="running", claim="alive", started=timezone.now()
    )

    assert imports.fail_abandoned() == 1

    record.refresh_from_db()
    assert record.status == "failed" and "its worker stopped" in record.failure["file"][0]
    assert Import.objects.get(pk=fresh.pk).status == "running"
    assert [p.name for p in import_uploads.iterdir()] == [Path(fresh.path).name]


def test_a_retry_under_the_same_claim_keeps_the_first_start():
    record = _recorded()
    first = timezone.now() - timedelta(minutes=5)
    Import.objects.filter(pk=record.pk).update(status="running", claim="t1", started=first)
    done = imports.execute(import_id=record.pk, claim="t1")
    assert done.status == "done" and done.started == first
    # Another claim finds it finished and leaves it.
    assert imports.execute(import_id=record.pk, claim="t2").result == done.result


@pytest.mark.django_db(transaction=True)
def test_an_import_another_worker_holds_is_left_alone(settings):
    """A redelivery (same task id) while the first worker still runs the import, and
    beat's net, both find its row locked and leave it (PostgreSQL row locks)."""
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    record = _recorded()
    long_ago = timezone.now() - timedelta(seconds=settings.IMPORT_TIME_LIMIT + 600)
    Import.objects.filter(pk=record.pk).update(status="running", claim="t1", started=long_ago)
    locked, release = threading.Event(), threading.Event()

    def first_worker():
        with transaction.atomic():
            Import.objects.select_for_update().get(pk=record.pk)
            locked.set()
            release.wait(20)
        connection.close()

    holder = threading.Thread(target=first_worker)
    holder.start()
    try:
        assert locked.wait(10)
        again = imports.execute(import_id=record.pk, claim="t1")
        assert again.status == "running" and not Product.objects.exists()
        assert imports.fail_abandoned() == 0
    finally:
        release.set()
        holder.join()
    assert Import.objects.get(pk=record.pk).status == "running"
    assert imports.fail_abandoned() == 1  # no one holds it now: its worker is gone
