"""The first-run checklist: what a new instance needs, in the order a lead does it, and
which steps are done (brand → catalog → customers → segments → prompt → run → review
→ live copy).

The queue page shows it until every step is done (an empty instance starts there) and
on the setup page at any time. A step is done when the data it leaves behind exists,
so the checklist needs no state of its own: deleting the last brand unticks the brand
step again. Every queue page asks, so the eight questions are one query of EXISTS
subqueries, each stopping at its first row.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet
from django.urls import reverse

from generation.models import (
    Brand,
    Customer,
    GenerationRun,
    Product,
    PromptVersion,
    Segment,
)
from review.models import ApiToken, ReviewEvent

# The decisions that count as a review: a person's, or the review policy publishing
# copy on its own (user None). Retire and undo follow from another decision.
DECISIONS = (
    ReviewEvent.Action.APPROVE,
    ReviewEvent.Action.EDIT,
    ReviewEvent.Action.REJECT,
    ReviewEvent.Action.REGENERATE,
)


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    # What doing the step means, as the checklist says it.
    todo: str
    # The page where it is done, and the words of its link.
    url_name: str
    link: str
    # Only leads (and staff) may open the page; a copywriter sees the step, no link.
    lead_only: bool = True


STEPS = (
    Step(
        "brand",
        "Brand",
        "Create the brand: its voice and the words it never uses.",
        "review:brand",
        "Brands",
    ),
    Step(
        "catalog",
        "Catalog",
        "Import the products, with their base copy, from a catalog file.",
        "review:imports",
        "Imports",
    ),
    Step(
        "customers",
        "Customers",
        "Import the customers from a CDP export and map its columns.",
        "review:import-map",
        "Map a customer file",
    ),
    Step(
        "segments",
        "Segments",
        "Build segments of the customers (at least one with members).",
        "review:segments",
        "Segments",
    ),
    Step(
        "prompt",
        "Prompt",
        "Create a prompt from a starter template (its first version).",
        "review:prompt-new",
        "New prompt",
    ),
    Step(
        "run",
        "Run",
        "Build a run over products and segments, check its estimate and start it.",
        "review:run-new",
        "Run builder",
    ),
    Step(
        "review",
        "Review",
        "Approve, edit or reject the variants the run wrote.",
        "review:queue",
        "Review queue",
        lead_only=False,
    ),
    Step(
        "live",
        "Live copy",
        "Give the web shop or app a read token: the step is done once it has fetched "
        "approved copy from the REST API.",
        "review:tokens",
        "API tokens",
    ),
)


def _evidence() -> dict[str, QuerySet]:
    """What each step leaves behind when it is done."""
    return {
        "brand": Brand.objects.all(),
        "catalog": Product.objects.all(),
        "customers": Customer.objects.all(),
        "segments": Segment.objects.filter(member_count__gt=0),
        "prompt": PromptVersion.objects.all(),
        "run": GenerationRun.objects.all(),
        "review": ReviewEvent.objects.filter(action__in=DECISIONS),
        # Approved copy is not live until something asks for it: the step is done
        # once a read token fetched copy (its last use is recorded, review.auth).
        "live": ApiToken.objects.filter(
            kind=ApiToken.Kind.READ, revoked__isnull=True, last_used__isnull=False
        ),
    }


def setup_done() -> dict[str, bool]:
    """Which steps are done, by key, in one query: SELECT EXISTS (...), EXISTS (...)."""
    parts: list[str] = []
    params: list = []
    evidence = _evidence()
    for queryset in evidence.values():
        sql, query_params = queryset.order_by().values("pk")[:1].query.sql_with_params()
        parts.append(f"EXISTS ({sql})")
        params.extend(query_params)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        row = cursor.fetchone()
    return {key: bool(value) for key, value in zip(evidence, row, strict=True)}


@dataclass(frozen=True)
class Checklist:
    steps: list[tuple[Step, bool, str]]  # (step, done, url)

    @property
    def complete(self) -> bool:
        return all(done for _step, done, _url in self.steps)

    @property
    def done_count(self) -> int:
        return sum(1 for _step, done, _url in self.steps if done)

    @property
    def next_step(self) -> Step | None:
        """The first step not done: the one the checklist points at."""
        return next((step for step, done, _url in self.steps if not done), None)


def checklist() -> Checklist:
    done = setup_done()
    return Checklist([(step, done[step.key], reverse(step.url_name)) for step in STEPS])
