"""No personal value reaches the endpoint, by any path (issue 15, item 1).

Customers are imported from a file whose personal columns are named every which way
(email_address, phone_number, surname, dob, ip_address, street_address) or named
nothing telling at all ("contact", found personal by its values). Then every path that
renders a prompt runs against the offline writer over HTTP, with a real worker: a
segment run, a one-to-one message, a message run, and the studio's try (its preview is
the same render, checked on the messages it returns). What the writer recorded is
scanned for every personal value.
"""

from __future__ import annotations

import json

import pytest

from generation import services
from generation.models import GenerationRun, Variant
from generation.services import messages
from tests.factories import ProductFactory, PromptVersionFactory
from tests.integration.test_messages import _until
from tests.review.test_rest_api import API, as_

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CUSTOMERS = [
    {
        "external_id": f"CUST-90{i}17",
        "value_tier": "high",
        "preferred_subcategory": "Trail Running",
        "email_address": f"ann.secret{i}@example.com",
        "phone_number": f"+49 30 5550 12{i}4",
        "surname": f"Zyxwvutson{i}",
        "dob": f"1984-02-1{i}",
        "ip_address": f"203.0.113.{70 + i}",
        "street_address": f"{i} Quietlane Road",
        "contact": f"bob.hidden{i}@example.org",
    }
    for i in range(6)
]
PERSONAL = [
    value
    for customer in CUSTOMERS
    for key, value in customer.items()
    if key not in ("value_tier", "preferred_subcategory")
]


def _finished(run: GenerationRun) -> bool:
    run.refresh_from_db()
    return run.status == GenerationRun.Status.FINISHED


def test_no_personal_value_reaches_the_endpoint_by_any_path(
    celery_worker_process, offline_writer, tmp_path
):
    path = tmp_path / "customers.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in CUSTOMERS) + "\n")
    imported = services.customers_import(path=path)
    assert "contact" in imported.personal  # found by its values
    [segment] = services.segments_build(by=["value_tier"])
    version = PromptVersionFactory(
        template="Write for {segment_name} ({segment_summary}) about {product_name}."
    )
    prompt = version.prompt
    product = ProductFactory(sku="TRAIL-9")
    sent: dict[str, int] = {}

    def count(path_name: str) -> None:
        sent[path_name] = len(offline_writer.requests) - sum(sent.values())

    # 1. a segment run, drained by the worker
    run = services.run_create(prompt=prompt, products=[product], segments=[segment])
    _until(lambda: _finished(run), timeout=90)
    count("segment run")
    # 2. a one-to-one message, over the API
    body = {"prompt": prompt.slug, "product": "TRAIL-9", "customer": "CUST-90017",
            "purpose": "back in stock", "wait": 30}  # fmt: skip
    response = as_("write").post(f"{API}/messages/", body, format="json")
    assert response.status_code == 200, response.content
    count("message")
    # 3. a message run over the segment's members
    message_run = messages.message_run_create(
        prompt=prompt, product=product, purpose="new season", segment=segment
    )
    _until(lambda: _finished(message_run), timeout=90)
    count("message run")
    # 4. the studio: preview (rendered, not sent) and try (sent)
    preview = services.prompt_preview(
        prompt=prompt, template=version.template, product=product, segment=segment
    )
    tried = services.prompt_try(
        prompt=prompt, template=version.template, model=version.model,
        temperature=version.temperature, pairs=[(product, segment)],
    )  # fmt: skip
    assert tried and tried[0].copy
    count("studio try")

    assert all(n > 0 for n in sent.values()), sent
    # the one message, and one "new season" message a member
    assert Variant.objects.filter(customer__isnull=False).count() == 1 + len(CUSTOMERS)
    recorded = json.dumps(offline_writer.requests, ensure_ascii=False)
    rendered = json.dumps(preview.messages, ensure_ascii=False)
    leaked = [v for v in PERSONAL if v in recorded or v in rendered]
    assert leaked == [], f"personal values reached the endpoint: {leaked}"
    # The allowed attributes did reach it (the scan is of real prompts).
    assert "Trail Running" in recorded
