"""Live copy: which text a delivery system shows for a placement, and how we know later.

For a prompt, a product and an audience (a segment, or a customer whose segment is
resolved from their attributes), the live text is, in order:

1. a pinned variant, when the client asks for one (it must have been live);
2. the customer's own published variant;
3. the published variant of the customer's (or the named) segment;
4. the product's base copy, which says it is the fallback and why.

Customers in the prompt's holdout (a stable hash of prompt and customer under
`Prompt.holdout_percent`) get the base copy even where a variant is live: they are
the control that engagement is measured against.

Every answer carries an *exposure id*: a signed, deterministic record of what was
shown to whom (prompt, product, segment, customer, variant or base copy). Events
posted back quote it, so a client cannot attribute a click to copy it was never
served, and no row is written per request (the live path only reads).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.core import signing
from django.db import connections
from django.db.models import Q

from generation.models import Customer, Product, Prompt, PromptVersion, Segment, Variant

EXPOSURE_VERSION = "e1"
_signer = signing.Signer(salt="hyperpers.exposure")


class DeliveryError(LookupError):
    """Something the request names does not exist (an HTTP 404 with this message)."""


@dataclass(frozen=True)
class Exposure:
    prompt_id: int
    product_id: int
    segment_id: int | None
    customer_id: int | None
    variant_id: int | None

    def encode(self) -> str:
        payload = ".".join(
            str(v or 0)
            for v in (
                self.prompt_id,
                self.product_id,
                self.segment_id,
                self.customer_id,
                self.variant_id,
            )
        )
        return _signer.sign(f"{EXPOSURE_VERSION}.{payload}")

    @classmethod
    def decode(cls, exposure_id: str) -> Exposure:
        """Raise ValueError unless `exposure_id` is one this installation issued."""
        try:
            payload = _signer.unsign(exposure_id)
        except signing.BadSignature as exc:
            raise ValueError("not an exposure id issued by this API") from exc
        version, *ids = payload.split(".")
        if version != EXPOSURE_VERSION or len(ids) != 5:
            raise ValueError("exposure id of an unknown format")
        prompt, product, segment, customer, variant = (int(i) for i in ids)
        return cls(prompt, product, segment or None, customer or None, variant or None)


@dataclass
class Live:
    """One answer of the live endpoint, before it is serialized."""

    prompt: Prompt
    product: Product
    segment: Segment | None
    customer: Customer | None
    variant: Variant | None
    source: str  # pinned | customer | segment | base_copy
    fallback_reason: str | None  # no_live_variant | holdout | no_matching_segment

    def as_dict(self) -> dict:
        exposure = Exposure(
            self.prompt.pk,
            self.product.pk,
            self.segment.pk if self.segment else None,
            self.customer.pk if self.customer else None,
            self.variant.pk if self.variant else None,
        )
        return {
            "prompt": self.prompt.slug,
            "product": self.product.sku,
            "segment": self.segment.slug if self.segment else None,
            "customer": self.customer.external_id if self.customer else None,
            "variant_id": self.variant.pk if self.variant else None,
            "prompt_version": self.variant.prompt_version.number if self.variant else None,
            "source": self.source,
            "fallback": self.variant is None,
            "fallback_reason": self.fallback_reason,
            "text": self.variant.text if self.variant else self.product.description,
            "exposure_id": exposure.encode(),
        }


def in_holdout(prompt: Prompt, customer: Customer) -> bool:
    """Stable per prompt and customer, so a customer stays in one arm across visits."""
    digest = hashlib.blake2b(f"{prompt.slug}:{customer.external_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % 100 < prompt.holdout_percent


def segment_for(attributes: dict, segments: list[Segment] | None = None) -> Segment | None:
    """The segment whose rules the attributes meet; the most specific one if several do."""
    if segments is None:
        segments = list(Segment.objects.only("id", "slug", "name", "rules"))
    matching = [s for s in segments if s.rules and s.matches(attributes)]
    if not matching:
        return None
    return min(matching, key=lambda s: (-len(s.rules), s.slug))


def _prompt(slug: str) -> Prompt:
    prompt = Prompt.objects.filter(slug=slug).first()
    if prompt is None:
        raise DeliveryError(f"Unknown prompt '{slug}'")
    return prompt


def _audience(
    *, segment_slug: str | None, customer_id: str | None
) -> tuple[Segment | None, Customer | None]:
    if customer_id is not None:
        customer = Customer.objects.filter(external_id=customer_id).first()
        if customer is None:
            raise DeliveryError(f"Unknown customer '{customer_id}'")
        return segment_for(customer.attributes), customer
    segment = Segment.objects.filter(slug=segment_slug).first()
    if segment is None:
        raise DeliveryError(f"Unknown segment '{segment_slug}'")
    return segment, None


def _loaded(model, db: str, **values):
    """An instance as the ORM would load it with only these fields (the rest deferred)."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in values]
    return model.from_db(db, names, [values[name] for name in names])


def _live_for_segment(prompt_slug: str, skus: list[str], segment_slug: str) -> list[Live] | None:
    """The live copy of each product for a segment in one query, or None when the prompt,
    the segment or a product is unknown (the caller then finds which, to name it).

    The hot path of the live endpoint: the prompt, the products and the segment are
    joined by their slugs, and each product's published variant (at most one a slot,
    by constraint) is left-joined, so hits and fallbacks both take one round trip.
    Only the columns the answer uses are read; the other fields are deferred.
    """
    placeholders = ", ".join(["%s"] * len(skus))
    sql = (
        "SELECT pr.id, pr.slug, pr.holdout_percent, p.id, p.sku, p.name, p.description, "
        "s.id, s.slug, s.name, v.id, v.text, v.prompt_version_id, pv.number "
        f"FROM {Prompt._meta.db_table} pr "
        f"CROSS JOIN {Segment._meta.db_table} s "
        f"CROSS JOIN {Product._meta.db_table} p "
        f"LEFT JOIN {Variant._meta.db_table} v ON v.prompt_id = pr.id "
        "AND v.product_id = p.id AND v.segment_id = s.id AND v.status = %s "
        f"LEFT JOIN {PromptVersion._meta.db_table} pv ON pv.id = v.prompt_version_id "
        f"WHERE pr.slug = %s AND s.slug = %s AND p.sku IN ({placeholders})"
    )
    db = Variant.objects.db
    with connections[db].cursor() as cursor:
        cursor.execute(sql, [Variant.Status.PUBLISHED, prompt_slug, segment_slug, *skus])
        rows = cursor.fetchall()
    if len(rows) != len(set(skus)):
        return None
    prompt = _loaded(Prompt, db, id=rows[0][0], slug=rows[0][1], holdout_percent=rows[0][2])
    segment = _loaded(Segment, db, id=rows[0][7], slug=rows[0][8], name=rows[0][9])
    by_sku = {}
    for row in rows:
        product = _loaded(Product, db, id=row[3], sku=row[4], name=row[5], description=row[6])
        if row[10] is None:
            by_sku[product.sku] = Live(
                prompt, product, segment, None, None, "base_copy", "no_live_variant"
            )
            continue
        variant = _loaded(
            Variant,
            db,
            id=row[10],
            prompt_id=prompt.pk,
            prompt_version_id=row[12],
            product_id=product.pk,
            segment_id=segment.pk,
            customer_id=None,
            status=Variant.Status.PUBLISHED,
            text=row[11],
        )
        variant.prompt, variant.product, variant.segment = prompt, product, segment
        variant.prompt_version = _loaded(
            PromptVersion, db, id=row[12], prompt_id=prompt.pk, number=row[13]
        )
        by_sku[product.sku] = Live(prompt, product, segment, None, variant, "segment", None)
    return [by_sku[sku] for sku in skus]


def live_copy(
    *,
    prompt_slug: str,
    skus: list[str],
    segment_slug: str | None = None,
    customer_id: str | None = None,
    pinned_variant_id: int | None = None,
) -> list[Live]:
    """Resolve the live copy of each product, in the order asked, with a constant
    number of queries however many products there are.

    0. For a segment, with no pin: all of it in one query (_live_for_segment), unless
       something named is unknown.
    1. Look up the prompt, the products and the audience (404 for any unknown one).
    2. A pinned variant must belong to the prompt and product and have been live.
    3. Customers in the holdout get the base copy.
    4. Otherwise fetch every published variant of these slots in one query and take
       the customer's own before the segment's.
    """
    if customer_id is None and pinned_variant_id is None and segment_slug is not None:
        found = _live_for_segment(prompt_slug, skus, segment_slug)
        if found is not None:
            return found
    prompt = _prompt(prompt_slug)
    products = {p.sku: p for p in Product.objects.filter(sku__in=skus)}
    missing = [sku for sku in skus if sku not in products]
    if missing:
        raise DeliveryError("Unknown product " + ", ".join(f"'{s}'" for s in missing))
    segment, customer = _audience(segment_slug=segment_slug, customer_id=customer_id)

    def answer(product, variant, source, reason=None) -> Live:
        return Live(prompt, product, segment, customer, variant, source, reason)

    if pinned_variant_id is not None:
        product = products[skus[0]]
        variant = (
            Variant.objects.filter(pk=pinned_variant_id, prompt=prompt, product=product)
            .select_related("prompt_version")
            .first()
        )
        if variant is None:
            raise DeliveryError(
                f"Variant {pinned_variant_id} is not copy of prompt '{prompt.slug}' "
                f"for product '{product.sku}'"
            )
        if variant.status not in (Variant.Status.PUBLISHED, Variant.Status.RETIRED):
            raise DeliveryError(
                f"Variant {pinned_variant_id} was never live (it is {variant.get_status_display()})"
            )
        return [answer(product, variant, "pinned")]

    if customer is not None and in_holdout(prompt, customer):
        return [answer(products[sku], None, "base_copy", "holdout") for sku in skus]

    audience = Q(segment=segment) if segment is not None else Q(pk__in=[])
    if customer is not None:
        audience |= Q(customer=customer)
    live: dict[tuple[int, str], Variant] = {}
    for variant in (
        Variant.objects.published()
        .filter(audience, prompt=prompt, product__in=products.values())
        .select_related("prompt_version")
    ):
        live[(variant.product_id, "customer" if variant.customer_id else "segment")] = variant

    results = []
    for sku in skus:
        product = products[sku]
        for source in ("customer", "segment"):
            if (product.pk, source) in live:
                results.append(answer(product, live[(product.pk, source)], source))
                break
        else:
            reason = (
                "no_matching_segment"
                if customer is not None and segment is None
                else "no_live_variant"
            )
            results.append(answer(product, None, "base_copy", reason))
    return results
