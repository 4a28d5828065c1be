"""One-to-one messages, and the settings of the review policy that decides who reads
what is written (review/policy.py applies it).

A message is a Variant for one customer, with a communication purpose: the brand voice
stays the constant system prompt, the purpose and the customer's allowed attributes
(and the last messages they received) travel as data, and it is written in the
customer's language. (prompt version, product, customer, purpose) identifies a
message, so asking twice for the same one returns it instead of writing another.

The review policy is the prompt's:
- review_all: every variant waits in the review queue;
- sample: a stable N% (by variant id) waits for people; the others are published when
  every check passes, and wait in review when one fails;
- auto: published when every check passes, else reviewed.
Applying it belongs to review (review/policy.py), which hears of fresh copy through
generation.signals.variants_written, sent in the engine's write transaction. What
becomes of a message is told to its callback URL by generation/callbacks.py.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Count

from generation import callbacks
from generation.errors import ServiceError
from generation.models import Customer, GenerationRun, Product, Prompt, Segment, Variant

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

PURPOSE_MAX = 300
RUN_CUSTOMERS_MAX = 100_000
WAIT_MAX_SECONDS = 30


class MessageError(ServiceError):
    """A message request that cannot be met, naming the field."""


def _purpose(purpose: str) -> str:
    purpose = " ".join((purpose or "").split())
    if not purpose:
        raise MessageError("Say what the message is for, e.g. 'back in stock'", field="purpose")
    if len(purpose) > PURPOSE_MAX:
        raise MessageError(f"The purpose is longer than {PURPOSE_MAX} characters", field="purpose")
    return purpose


@transaction.atomic
def message_create(
    *,
    prompt: Prompt,
    product: Product,
    customer: Customer,
    purpose: str,
    callback_url: str = "",
    token_id: int | None = None,
) -> tuple[Variant, bool]:
    """Queue one message; (variant, created). The same prompt version, product,
    customer and purpose return the message already there (a failed one is queued
    again). Generation starts after commit. `token_id`: the API token asking, the only
    one that may read the message by its id later (Variant.requested_by_token)."""
    version = prompt.require_version(MessageError)
    purpose = _purpose(purpose)
    if callback_url:
        try:
            callbacks.callback_url_check(callback_url)
        except (callbacks.CallbackRefused, callbacks.CallbackFailed) as exc:
            raise MessageError(str(exc), field="callback_url") from exc
    variant, created = Variant.objects.get_or_create(
        prompt_version=version,
        product=product,
        customer=customer,
        purpose=purpose,
        defaults={
            "prompt": prompt,
            "model": version.model,
            "callback_url": callback_url,
            "language": customer.language,
            "requested_by_token": token_id,
        },
    )
    if not created and variant.status == Variant.Status.FAILED:
        Variant.objects.filter(pk=variant.pk, status=Variant.Status.FAILED).update(
            status=Variant.Status.QUEUED,
            error="",
            callback_url=callback_url or variant.callback_url,
        )
        variant.refresh_from_db()
        created = True
    if created:
        from generation.tasks import generate_variants

        pk = variant.pk
        transaction.on_commit(lambda: generate_variants.delay([pk]))
    return variant, created


def message_wait(variant: Variant, *, seconds: float) -> Variant:
    """The message once written (or failed), or as it stands after `seconds`."""
    deadline = time.monotonic() + min(max(seconds, 0), WAIT_MAX_SECONDS)
    while True:
        variant.refresh_from_db()
        if variant.status not in (Variant.Status.QUEUED, Variant.Status.GENERATING):
            return variant
        if time.monotonic() >= deadline:
            return variant
        time.sleep(0.1)


def segment_members(segment: Segment) -> list[Customer]:
    return [
        c
        for c in Customer.objects.only("id", "external_id", "language", "attributes").iterator(
            chunk_size=5000
        )
        if segment.matches(c.segment_attributes())
    ]


def message_run_create(
    *,
    prompt: Prompt,
    product: Product,
    purpose: str,
    customers: list[Customer] | None = None,
    segment: Segment | None = None,
    user: User | None = None,
    token_id: int | None = None,
) -> GenerationRun:
    """A run writing one message per customer (those given, or a segment's members).

    Customers who already have this message are left out; generation fans out over
    the workers like any run.
    """
    from generation.services.runs import _dispatch_on_commit

    version = prompt.require_version(MessageError)
    purpose = _purpose(purpose)
    if customers is None:
        if segment is None:
            raise MessageError("Name the customers or a segment", field="customers")
        customers = segment_members(segment)
    if not customers:
        raise MessageError("The run covers no customers", field="customers")
    if len(customers) > RUN_CUSTOMERS_MAX:
        raise MessageError(
            f"{len(customers):,} customers; one run writes at most {RUN_CUSTOMERS_MAX:,}",
            field="customers",
        )
    with transaction.atomic():
        done = set(
            Variant.objects.filter(
                prompt_version=version, product=product, purpose=purpose, customer__isnull=False
            ).values_list("customer_id", flat=True)
        )
        todo = [c for c in customers if c.pk not in done]
        run = GenerationRun.objects.create(
            prompt_version=version,
            scope={
                "products": [product.sku],
                "customers": len(customers),
                "segment": segment.slug if segment else None,
                "purpose": purpose,
            },
            created_by=user,
            note=f"One-to-one: {purpose}"[:300],
            total=len(todo),
        )
        Variant.objects.bulk_create(
            (
                Variant(
                    run=run,
                    prompt=prompt,
                    prompt_version=version,
                    product=product,
                    customer=c,
                    purpose=purpose,
                    model=version.model,
                    language=c.language,
                    requested_by_token=token_id,
                )
                for c in todo
            ),
            batch_size=1000,
        )
        if run.total == 0:
            run.status = GenerationRun.Status.FINISHED
            run.save(update_fields=["status"])
        else:
            _dispatch_on_commit(run)
    return run


# --- review policy ------------------------------------------------------------------------


def policy_counts(prompt: Prompt) -> dict[str, int]:
    """How the policy treated the prompt's variants so far: auto, sampled, held."""
    rows = (
        Variant.objects.filter(prompt=prompt)
        .exclude(policy_outcome="")
        .values("policy_outcome")
        .annotate(n=Count("id"))
    )
    counts = {"auto": 0, "sampled": 0, "held": 0}
    counts.update({r["policy_outcome"]: r["n"] for r in rows})
    return counts


@transaction.atomic
def prompt_policy_save(*, prompt: Prompt, policy: str, sample_percent: int | None = None) -> Prompt:
    if policy not in Prompt.ReviewPolicy.values:
        raise MessageError(
            f"{policy!r} is not one of {', '.join(Prompt.ReviewPolicy.values)}",
            field="review_policy",
        )
    if sample_percent is not None:
        if not 0 <= sample_percent <= 100:
            raise MessageError("The sample is 0 to 100 percent", field="review_sample_percent")
        prompt.review_sample_percent = sample_percent
    prompt.review_policy = policy
    prompt.save(update_fields=["review_policy", "review_sample_percent"])
    return prompt


LANGUAGES_MAX = 100


@transaction.atomic
def prompt_languages_save(
    *, prompt: Prompt, languages: list[str] | None = None, min_share: int | None = None
) -> Prompt:
    """The languages the prompt writes in: an explicit list of BCP 47 tags (empty: the
    languages at least `min_share` percent of a segment's members read). A tag that is
    not BCP 47 is refused by name. Runs started later take the change; the slots of
    runs already made stay as they were."""
    from generation.languages import LanguageTagError, language_tag

    fields = []
    if languages is not None:
        if len(languages) > LANGUAGES_MAX:
            raise MessageError(f"At most {LANGUAGES_MAX} languages a prompt", field="languages")
        try:
            cleaned = list(dict.fromkeys(language_tag(tag) for tag in languages))
        except LanguageTagError as exc:
            raise MessageError(str(exc), field="languages") from None
        prompt.languages = cleaned
        fields.append("languages")
    if min_share is not None:
        if not 1 <= min_share <= 100:
            raise MessageError("The share is 1 to 100 percent", field="language_min_share")
        prompt.language_min_share = min_share
        fields.append("language_min_share")
    if fields:
        prompt.save(update_fields=fields)
    return prompt


@transaction.atomic
def prompt_allowlist_save(*, prompt: Prompt, attributes: list[str]) -> Prompt:
    """The customer attributes the prompt may send (empty: every one not personal).
    Personal ones are refused by name: they are never sent."""
    from generation.prompting import personal_attributes

    cleaned = list(dict.fromkeys(a.strip() for a in attributes if a and a.strip()))
    personal = personal_attributes()
    refused = [a for a in cleaned if a.lower() in personal]
    if refused:
        raise MessageError(
            f"{', '.join(refused)} {'is' if len(refused) == 1 else 'are'} personal and never "
            "sent to the endpoint",
            field="allowed_attributes",
        )
    prompt.allowed_attributes = cleaned
    prompt.save(update_fields=["allowed_attributes"])
    return prompt
