"""The demo's data: a fictional sports brand (hyperpers/demo/), users, a first run.

Idempotent: a second load updates what is there and starts no second run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from generation import services
from generation.models import Brand, GenerationRun, Product, Prompt, Variant
from review.auth import api_token_create
from review.models import ApiToken, ReviewerProfile

DEMO_DIR = Path(__file__).resolve().parent / "demo"
SEGMENT_BY = ["preferred_subcategory", "value_tier"]
DEMO_USERS = {
    # role: (username, password, group, staff)
    "copywriter": ("copywriter", "copywriter-demo", "copywriter", False),
    "marketing lead": ("lead", "lead-demo", "marketing lead", True),
    "German copywriter": ("copywriter-de", "copywriter-de-demo", "copywriter", False),
}
# The languages a demo reviewer names on their profile: their queue shows those first.
DEMO_REVIEWER_LANGUAGES = {"copywriter-de": ["de"]}
# The demo's delivery clients; their keys are new at every start (only hashes are kept).
DEMO_TOKENS = {"read": "demo web shop", "write": "demo journey tool"}


@dataclass
class DemoSummary:
    lines: list[str] = field(default_factory=list)
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)
    api_keys: dict[str, str] = field(default_factory=dict)
    example: tuple[str, str, str] = ("", "", "")


def load(*, start_run: bool = True) -> DemoSummary:
    summary = DemoSummary()
    brand_data = json.loads((DEMO_DIR / "brand.json").read_text())
    prompt_data = json.loads((DEMO_DIR / "prompt.json").read_text())

    with transaction.atomic():
        brand, _ = Brand.objects.update_or_create(
            name=brand_data["name"],
            defaults={
                "voice": brand_data["voice"],
                "banned_phrases": brand_data["banned_phrases"],
                "protected_terms": brand_data["protected_terms"],
            },
        )
        products = services.products_import(path=DEMO_DIR / "products.csv")
        customers = services.customers_import(path=DEMO_DIR / "customers.jsonl")
        segments = services.segments_build(by=SEGMENT_BY)
        prompt, _ = Prompt.objects.get_or_create(
            slug=prompt_data["slug"],
            defaults={
                "name": prompt_data["name"],
                "brand": brand,
                "channel": prompt_data["channel"],
                "max_length": prompt_data["max_length"],
            },
        )
        if prompt.current_version is None:
            services.prompt_version_create(
                prompt=prompt,
                template=prompt_data["template"],
                model=prompt_data["model"],
                temperature=prompt_data["temperature"],
                note=prompt_data.get("note", ""),
            )
        User = get_user_model()
        for role, (username, password, group, staff) in DEMO_USERS.items():
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.is_staff = staff
                user.is_superuser = staff
                user.save()
            # get_or_create: a flushed database (a transactional test) has lost the
            # groups its migration made.
            user.groups.add(Group.objects.get_or_create(name=group)[0])
            if username in DEMO_REVIEWER_LANGUAGES:
                ReviewerProfile.objects.get_or_create(
                    user=user, defaults={"languages": DEMO_REVIEWER_LANGUAGES[username]}
                )
            summary.credentials[role] = (username, password)
        ApiToken.objects.filter(name__in=DEMO_TOKENS.values()).delete()
        for kind, name in DEMO_TOKENS.items():
            summary.api_keys[kind] = api_token_create(name=name, kind=kind)[1]

    summary.lines += [
        f"brand: {brand.name}",
        f"products: {products}",
        f"customers: {customers}",
        f"segments: {len(segments)} by {' × '.join(SEGMENT_BY)}",
        f"prompt: {prompt.slug} ({prompt.current_version})",
    ]
    first_product = Product.objects.order_by("sku")[0]  # the demo's catalog has products
    summary.example = (prompt.slug, first_product.sku, segments[0].slug)

    if start_run:
        if GenerationRun.objects.filter(prompt_version__prompt=prompt).exists():
            in_review = Variant.objects.in_review().count()
            summary.lines.append(f"runs: reusing existing ones ({in_review} variants in review)")
        else:
            run = services.run_create(prompt=prompt)
            summary.lines.append(f"run {run.pk}: {run.total} slots queued for the worker")
    return summary
