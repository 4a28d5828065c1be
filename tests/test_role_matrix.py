"""Who may use what: every page and endpoint against every role, in one table.

A cell says whether the role gets past the permission check: "yes" is any answer but
401, 403 and a redirect to the login page (a 400 for an empty body still means the
role was let in); "no" is one of those. Every URL of the project must have a row, so a
new page or endpoint cannot ship without deciding who may use it.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from generation.models import Customer, GenerationRun, Import
from review.auth import api_token_create
from review.models import Experiment, ExperimentWeights, ReviewEvent
from tests.factories import CustomerFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "copywriter", "lead", "staff", "read", "write")
ALL = set(ROLES)
PEOPLE = {"copywriter", "lead", "staff"}
LEADS = {"lead", "staff"}
NOBODY: set[str] = set()

# (url name, method, allowed roles). Arguments come from the objects made in _world().
MATRIX = [
    # delivery and engagement
    ("api-live", "get", PEOPLE | {"read"}),
    ("api-live-batch", "get", PEOPLE | {"read"}),
    ("api-events", "post", {"write"}),
    # ingestion, one-to-one messages, erasure: write tokens and leads
    ("api-import-products", "post", LEADS | {"write"}),
    ("api-import-customers", "post", LEADS | {"write"}),
    ("api-imports", "get", LEADS | {"write"}),
    ("api-import", "get", LEADS | {"write"}),
    ("api-messages", "post", LEADS | {"write"}),
    ("api-message-runs", "post", LEADS | {"write"}),
    ("api-message", "get", LEADS | {"write"}),
    ("api-customer", "delete", LEADS | {"write"}),
    # the workflow: people only; reviewers read and decide, leads steer
    ("api-segments", "get", PEOPLE),
    ("api-segments", "post", LEADS),
    ("api-segment", "get", PEOPLE),
    ("api-segment", "put", LEADS),
    ("api-segment", "delete", LEADS),
    ("api-segments-preview", "post", LEADS),
    ("api-segments-rebuild", "post", LEADS),
    ("api-prompt-settings", "get", PEOPLE),
    ("api-prompt-settings", "patch", LEADS),
    ("api-runs", "get", PEOPLE),
    ("api-runs", "post", LEADS),
    ("api-run-estimate", "post", LEADS),
    ("api-run", "get", PEOPLE),
    ("api-run-cancel", "post", LEADS),
    ("api-run-resume", "post", LEADS),
    ("api-run-retry-failed", "post", LEADS),
    ("api-variants", "get", PEOPLE),
    ("api-variant", "get", PEOPLE),
    ("api-variant-approve", "post", PEOPLE),
    ("api-variant-reject", "post", PEOPLE),
    ("api-variant-regenerate", "post", PEOPLE),
    # experiments: reviewers and every token read; leads and write tokens steer
    ("api-experiments", "get", PEOPLE | {"read", "write"}),
    ("api-experiments", "post", LEADS | {"write"}),
    ("api-experiment", "get", PEOPLE | {"read", "write"}),
    ("api-experiment-stop", "post", LEADS | {"write"}),
    ("api-experiment-arms", "post", LEADS | {"write"}),
    ("api-experiment-challengers", "post", LEADS | {"write"}),
    ("api-experiment-arm-pause", "post", LEADS | {"write"}),
    ("api-experiment-arm-resume", "post", LEADS | {"write"}),
    # public: the API's documentation, health, the login page
    ("api-schema", "get", ALL),
    ("api-docs", "get", ALL),
    ("api-redoc", "get", ALL),
    ("health", "get", ALL),
    ("health-live", "get", ALL),
    ("login", "get", ALL),
    ("login", "post", ALL),
    # review pages: reviewers
    ("review:queue", "get", PEOPLE),
    ("review:setup", "get", PEOPLE),
    ("review:bulk", "post", PEOPLE),
    ("review:variant", "get", PEOPLE),
    ("review:approve", "post", PEOPLE),
    ("review:reject", "post", PEOPLE),
    ("review:regenerate", "post", PEOPLE),
    ("review:undo", "post", PEOPLE),
    ("review:runs", "get", PEOPLE),
    ("review:run", "get", PEOPLE),
    ("review:metrics", "get", PEOPLE),
    ("review:metrics-csv", "get", PEOPLE),
    ("review:experiments", "get", PEOPLE),
    ("review:experiment", "get", PEOPLE),
    ("review:profile", "get", PEOPLE),
    ("review:profile", "post", PEOPLE),
    ("review:products", "get", PEOPLE),
    ("review:product", "get", PEOPLE),
    # the Django admin: staff only, and no one changes a variant there (decisions go
    # through review/services/, with their audit event)
    ("admin:index", "get", {"staff"}),
    ("admin:generation_variant_changelist", "get", NOBODY),
    ("admin:generation_variant_change", "post", NOBODY),
    ("admin:generation_variant_delete", "post", NOBODY),
    # the lead's pages
    ("review:run-new", "get", LEADS),
    ("review:run-new", "post", LEADS),
    ("review:run-estimate", "get", LEADS),
    ("review:run-action", "post", LEADS),
    ("review:metrics-flag", "post", LEADS),
    ("review:experiment-stop", "post", LEADS),
    ("review:experiment-challengers", "post", LEADS),
    ("review:experiment-arm", "post", LEADS),
    ("review:experiment-new", "post", LEADS),
    ("review:approve-experiment", "post", LEADS),
    ("review:brand", "get", LEADS),
    ("review:brand", "post", LEADS),
    ("review:brand-new", "get", LEADS),
    ("review:brand-new", "post", LEADS),
    ("review:prompt-new", "get", LEADS),
    ("review:prompt-new", "post", LEADS),
    ("review:prompt-duplicate", "get", LEADS),
    ("review:prompt-duplicate", "post", LEADS),
    ("review:tokens", "get", LEADS),
    ("review:tokens", "post", LEADS),
    ("review:token-revoke", "get", LEADS),  # a token no one made: 404 for a lead
    ("review:token-revoke", "post", LEADS),
    ("review:customers", "get", LEADS),
    ("review:customer", "get", LEADS),
    ("review:customer-erase", "get", LEADS),
    ("review:customer-erase", "post", LEADS),  # an empty confirmation: erases no one
    ("review:imports", "get", LEADS),
    ("review:imports", "post", LEADS),
    ("review:import", "get", LEADS),
    ("review:import-map", "get", LEADS),
    ("review:import-map", "post", LEADS),
    ("review:import-mapping", "get", LEADS),  # an upload no one staged: 404 for a lead
    ("review:import-mapping", "post", LEADS),
    ("review:import-mapping-preview", "post", LEADS),
    ("review:segments", "get", LEADS),
    ("review:segment-new", "post", LEADS),
    ("review:segment-preview", "post", LEADS),
    ("review:segments-generate", "post", LEADS),
    ("review:segment", "get", LEADS),
    ("review:segment", "post", LEADS),
    ("review:segment-delete", "post", LEADS),
    ("review:prompts", "get", LEADS),
    ("review:privacy", "get", LEADS),
    ("review:privacy", "post", LEADS),
    ("review:studio", "get", LEADS),
    ("review:studio-preview", "post", LEADS),
    ("review:studio-try", "post", LEADS),
    ("review:studio-impact", "post", LEADS),
    ("review:studio-save", "post", LEADS),
    ("review:studio-rollback", "post", LEADS),
]
# Gated by nothing: logging out answers everyone with a redirect to the login page.
UNGATED = {"logout"}


def _all_url_names() -> set[str]:
    names = set()

    def walk(patterns):
        for p in patterns:
            if isinstance(p, URLResolver):
                if getattr(p, "app_name", None) == "admin":
                    continue
                walk(p.url_patterns)
            elif isinstance(p, URLPattern) and p.name:
                names.add(p.name)

    def walk_namespaced(patterns, namespace=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                if getattr(p, "app_name", None) == "admin":
                    continue
                walk_namespaced(p.url_patterns, p.namespace or namespace)
            elif isinstance(p, URLPattern) and p.name:
                names.add(f"{namespace}:{p.name}" if namespace else p.name)

    walk_namespaced(get_resolver().url_patterns)
    return names


def _world() -> dict:
    variant = VariantFactory()
    CustomerFactory(external_id="C-1")
    event = ReviewEvent.objects.create(variant=variant, action=ReviewEvent.Action.APPROVE)
    run = GenerationRun.objects.create(prompt_version=variant.prompt_version)
    upload = Import.objects.create(
        kind="products", file_name="c.csv", size=1, format="csv", path="/nonexistent",
        requested_by="write client", via="api",
    )  # fmt: skip
    experiment = Experiment.objects.create(
        prompt=variant.prompt, product=variant.product, segment=variant.segment
    )
    ExperimentWeights.objects.create(experiment=experiment, weights={"control": 1.0})
    return {
        "variant": variant,
        "event": event,
        "run": run,
        "import": upload,
        "experiment": experiment,
    }


def _kwargs(name: str, world: dict) -> dict:
    variant, run = world["variant"], world["run"]
    short = name.split(":")[-1]
    if short in ("api-run", "api-run-cancel", "api-run-resume", "api-run-retry-failed", "run"):
        return {"pk": run.pk}
    if short == "run-action":
        return {"pk": run.pk, "action": "cancel"}
    if short == "undo":
        return {"pk": world["event"].pk}
    if short in ("api-segment", "segment", "segment-delete"):
        return {"slug": variant.segment.slug}
    if short == "studio-rollback":
        return {"slug": variant.prompt.slug, "number": variant.prompt_version.number}
    if short in ("api-prompt-settings", "privacy") or short.startswith("studio"):
        return {"slug": variant.prompt.slug}
    if name.startswith("admin:generation_variant_") and short != "generation_variant_changelist":
        return {"object_id": variant.pk}
    if short.startswith("api-experiment-arm-"):
        return {"pk": world["experiment"].pk, "key": "control"}
    if short == "experiment-arm":
        return {"pk": world["experiment"].pk, "key": "control", "action": "pause"}
    if short in (
        "api-experiment",
        "api-experiment-stop",
        "api-experiment-arms",
        "api-experiment-challengers",
    ):
        return {"pk": world["experiment"].pk}
    if short in ("experiment", "experiment-stop", "experiment-challengers"):
        return {"pk": world["experiment"].pk}
    if short == "prompt-duplicate":
        return {"slug": variant.prompt.slug}
    if short == "api-customer":
        return {"external_id": "C-1"}
    if short in ("import-mapping", "import-mapping-preview"):
        return {"token": "0" * 32}
    if short == "product":
        return {"sku": variant.product.sku}
    if short in ("customer", "customer-erase"):
        # Not C-1, which a row above may have erased through the API.
        return {"pk": Customer.objects.get_or_create(external_id="C-PAGE")[0].pk}
    if short in ("api-import", "import"):
        return {"pk": world["import"].pk}
    if "pk" in _parameters(name):
        return {"pk": variant.pk}
    return {}


def _parameters(name: str) -> list[str]:
    resolver = get_resolver()
    namespace, _, short = name.rpartition(":")
    if namespace:
        resolver = resolver.namespace_dict[namespace][1]
    return resolver.reverse_dict.getlist(short)[0][0][0][1]


def _client(role: str) -> APIClient:
    client = APIClient()
    if role in ("read", "write"):
        _token, key = api_token_create(name=f"{role} client", kind=role)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    elif role != "anonymous":
        groups = {"copywriter": ["copywriter"], "lead": ["marketing lead"], "staff": []}[role]
        client.force_login(UserFactory(username=role, groups=groups, is_staff=role == "staff"))
    return client


def test_every_url_has_a_row():
    covered = {name for name, _method, _roles in MATRIX} | UNGATED
    assert _all_url_names() - covered == set(), "decide who may use these: add rows to MATRIX"
    admin = {name for name in covered if name.startswith("admin:")}
    assert covered - admin - _all_url_names() == set(), "rows for URLs that no longer exist"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_what_the_matrix_allows(role):
    world = _world()
    client = _client(role)
    wrong = []
    for name, method, allowed in MATRIX:
        url = reverse(name, kwargs=_kwargs(name, world))
        response = getattr(client, method)(url, {}, format="json")
        to_login = response.status_code == 302 and "/login/" in response.get("Location", "")
        let_in = response.status_code not in (401, 403) and not to_login
        if response.status_code == 405:
            wrong.append(f"{method.upper()} {url}: 405, the row names a method it does not take")
        elif let_in != (role in allowed):
            verdict = "let in" if let_in else "refused"
            wrong.append(f"{method.upper()} {url} ({name}): {verdict} with {response.status_code}")
    assert wrong == [], f"{role}:\n" + "\n".join(wrong)


def test_not_even_a_superuser_changes_a_variants_status_or_text_in_the_admin(client):
    from generation.models import Variant

    variant = VariantFactory(status="in_review", text="As written.")
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    url = reverse("admin:generation_variant_change", args=[variant.pk])

    shown = client.get(url)
    changed = client.post(url, {"status": "published", "text": "Unreviewed copy."})
    deleted = client.post(
        reverse("admin:generation_variant_delete", args=[variant.pk]), {"post": "yes"}
    )

    assert shown.status_code == 200  # readable
    assert changed.status_code == 403 and deleted.status_code == 403
    variant.refresh_from_db()
    assert (variant.status, variant.text) == ("in_review", "As written.")
    assert Variant.objects.filter(pk=variant.pk).exists()
