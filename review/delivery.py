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

**Experiments.** Where the segment's slot (3.) runs an experiment (review.models.
Experiment: same prompt, product, segment, and the language of the variant chosen), a
request naming a `visitor` gets the arm `pick_arm` gives that visitor under the shares
in force: the control (the base copy in the slot's language, fallback_reason
experiment_control) or one of the approved variants. A request without one gets the
slot's published variant, marked not randomized. A customer's own variant, a customer
in the holdout and a pinned variant are in no experiment. The arms and the shares
travel in the snapshot (one more query when a block or bucket is read), so picking an
arm costs no query; experiment changes bump the slot's bucket like an approval.

Every answer carries an *exposure id*: a signed, deterministic record of what was
shown to whom (prompt, product, segment, customer, variant or base copy). Events
posted back quote it, so a client cannot attribute a click to copy it was never
served, and no row is written per request (the live path only reads).

**The snapshot.** Live copy is read far more often than it changes, so each web
process keeps what it served in memory: per (prompt, segment, language asked) *block*,
what every product serves readers who ask for that language (one tag, or none): the
published variant the language choice takes, or the base copy, loaded in one query on
first use. A block is
trusted for `DELIVERY_SNAPSHOT_VERIFY_SECONDS` (1 s); then its *epochs* are read
again from one Redis hash in one HMGET: the global epoch, and one for each of the
block's BUCKETS buckets (its products by id). Writers bump them (`live_changed`):

- a variant saved (publish, retire, undo) bumps its product's bucket, which each
  process then reads again (a few dozen rows, not the block);
- a product, prompt or segment saved or deleted, or a products import, bumps the
  global epoch, which drops every block and the prompt and segment names.

Invariants that keep this correct:

- epochs are read *before* the rows they tag are loaded, and bumped again after the
  writer's transaction commits, so a bucket loaded from a half-finished write is
  tagged with an epoch that is already stale and is read again at its next check;
- a write that bypasses `Model.save()` (bulk_create, QuerySet.update, raw SQL) and
  changes a product, prompt, segment or which variant is published must call
  `live_changed()`; whatever is missed is still bounded by
  `DELIVERY_SNAPSHOT_MAX_AGE_SECONDS`, the age at which a bucket is checked anyway
  (buckets come due one at a time, so no request waits for a whole block). On
  PostgreSQL the check reads only the versions of the rows the bucket was read from
  (`Snapshot._versions`: any write moves them) and reads the bucket again only if
  they moved (0.71 of a read's cost at full size, its rows cold in PostgreSQL's
  cache); on SQLite the bucket is read again. A check is published in Redis, and
  every other process holding the same rows takes it as its own
  (`Snapshot._shared_checks`): the fleet checks a bucket about once per maximum age,
  not once a process;
- with Redis unreachable, buckets are served until that age and then checked the
  same way: delivery keeps answering, at worst that stale.

A slot's answer is rendered (body and ETag) the first time it is served and kept, so
serving it again costs a dict lookup; a slot takes about 1.5 KB with ~400 characters
of copy once rendered. A visitor's answer in an experiment is rendered for each request
(~12 µs, its exposure id names the visitor: `Live.body` writes the JSON without a dict,
and `pick` takes the arm under shares checked once, when they were read). Keeping each
arm's body without the id and splicing it in cost 13 µs when kept but 30 µs the first
time, and up to three times the memory, for slots that a uniform load rarely asks
twice (bench/README.md).
A process holding more than `DELIVERY_SNAPSHOT_FREEZE_ROWS` slots moves what it
holds out of the garbage collector's sight after each read (`_settle`): with an
experiment on every slot, 420,000 slots are 2.5 million tracked objects, and one full
collection walked them for 1.35 s while every request of the worker waited. A process holds
at most `DELIVERY_SNAPSHOT_MAX_ROWS` slots (least recently used blocks go first); with
more products than that a block is never held, and every request reads the database.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gc
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeGuard, TypeVar, cast

import redis
from django.conf import settings
from django.core import signing
from django.db import connections, transaction
from django.db.models import Q

from generation import languages
from generation.errors import NotFound
from generation.models import Customer, Product, Prompt, PromptVersion, Segment, Variant
from hyperpers import redis_client as redis_clients
from review.experiments.allocation import CONTROL, Split, pick, split_of
from review.models import Experiment, ExperimentArm, ExperimentWeights, arm_key

log = logging.getLogger(__name__)
T = TypeVar("T")

# e3 adds an experiment's arm (only on answers from a running experiment: others stay
# e2, byte for byte); e2 adds the language served; e1 ids (no language) still decode.
EXPOSURE_VERSION = "e3"
_PLAIN_VERSION = "e2"
_signer = signing.Signer(salt="hyperpers.exposure")

EPOCHS_KEY = "hyperpers:live:epochs"
GLOBAL = "*"
# After a Redis error, delivery does not ask Redis again for this long.
REDIS_BACKOFF_SECONDS = 1.0
# A block's products fall in this many buckets by id, each with an epoch of its own,
# so that one approval makes every web process read one bucket again, not the block.
BUCKETS = 64
# The snapshot's checker thread closes its database connection after this long idle.
CHECKER_IDLE_SECONDS = 5.0
# Checks of buckets due by age, shared by every process (Snapshot._shared_checks): a
# hash of "prompt:segment:language asked:bucket" -> "digest wall-time who", and a
# claim a bucket while one process checks it.
CHECKS_KEY = "hyperpers:live:checks"
CLAIM_PREFIX = "hyperpers:live:checking:"
CHECK_CLAIM_SECONDS = 10.0


class DeliveryError(NotFound):
    """Something the request names does not exist (an HTTP 404 with this message)."""


@dataclass(frozen=True, slots=True)
class Exposure:
    """What was shown to whom, as a signed id the client quotes in engagement events.

    An answer from a running experiment also says which experiment, under which
    shares (`weights_id`, an ExperimentWeights row), with what probability the arm
    was served (the logged propensity, kept to the millionth), whether the visitor
    was randomized (a request without a visitor gets the default arm: False), and
    the visitor's hash (`visitor_hash`), so analysis counts people, not page views.
    The arm itself is the variant (None: the control, the base copy).
    """

    prompt_id: int
    product_id: int
    segment_id: int | None
    customer_id: int | None
    variant_id: int | None
    language: str = ""
    experiment_id: int | None = None
    weights_id: int | None = None
    probability: float | None = None
    randomized: bool = False
    visitor: str = ""

    def encode(self) -> str:
        # The fields in their order, which is _exposure_id's.
        return _exposure_id(*(getattr(self, name) for name in self.__slots__))

    @classmethod
    def decode(cls, exposure_id: str) -> Exposure:
        """Raise ValueError unless `exposure_id` is one this installation issued."""
        try:
            payload = _signer.unsign(exposure_id)
        except signing.BadSignature as exc:
            raise ValueError("not an exposure id issued by this API") from exc
        version, *ids = payload.split(".")
        language = ""
        arm: list[str] = []
        if version == EXPOSURE_VERSION and len(ids) == 11:
            arm = ids[6:]
            language = ids[5]
            ids = ids[:5]
        elif version == _PLAIN_VERSION and len(ids) == 6:
            language = ids.pop()
        elif version != "e1" or len(ids) != 5:
            raise ValueError("exposure id of an unknown format")
        try:
            prompt, product, segment, customer, variant = (int(i) for i in ids)
            if not arm:
                return cls(
                    prompt, product, segment or None, customer or None, variant or None, language
                )
            experiment, weights, millionths, randomized = (int(i) for i in arm[:4])
        except ValueError as exc:  # signed, so only a bug of ours gets here
            raise ValueError("exposure id of an unknown format") from exc
        return cls(
            prompt,
            product,
            segment or None,
            customer or None,
            variant or None,
            language,
            experiment_id=experiment,
            weights_id=weights or None,
            probability=millionths / 1_000_000,
            randomized=bool(randomized),
            visitor=arm[4],
        )

    @property
    def arm(self) -> str:
        """The arm's key in share mappings: 'control' or 'v<variant id>'."""
        return "control" if self.variant_id is None else f"v{self.variant_id}"


def _exposure_id(
    prompt_id: int,
    product_id: int,
    segment_id: int | None,
    customer_id: int | None,
    variant_id: int | None,
    language: str,
    experiment_id: int | None,
    weights_id: int | None,
    probability: float | None,
    randomized: bool,
    visitor: str,
) -> str:
    """Exposure(...).encode(), from the fields in Exposure's order: a live answer is
    signed with no Exposure made first (2 µs of the ~12 a visitor's answer costs)."""
    plain = (
        f"{prompt_id}.{product_id}.{segment_id or 0}.{customer_id or 0}.{variant_id or 0}."
        f"{language}"
    )
    if experiment_id is None:
        return _sign(f"{_PLAIN_VERSION}.{plain}")
    millionths = round((probability or 0.0) * 1_000_000)
    return _sign(
        f"{EXPOSURE_VERSION}.{plain}.{experiment_id}.{weights_id or 0}."
        f"{millionths}.{int(randomized)}.{visitor}"
    )


def _sign(value: str) -> str:
    """`_signer.sign(value)`, byte for byte (a test compares them), with the HMAC of its
    derived key made once: Signer derives the key again for every value, which is most
    of the ~15 µs a signature costs, and a visitor's answer in an experiment is signed
    for each request."""
    mac = _signer_hmac(_signer.key, _signer.salt, _signer.algorithm).copy()
    mac.update(value.encode())
    signature = base64.urlsafe_b64encode(mac.digest()).strip(b"=").decode()
    return f"{value}{_signer.sep}{signature}"


@functools.lru_cache(maxsize=4)
def _signer_hmac(key: str, salt: str, algorithm: str) -> hmac.HMAC:
    # As django.utils.crypto.salted_hmac derives it (for base64_hmac's salt + "signer").
    hasher = getattr(hashlib, algorithm)
    return hmac.new(hasher(f"{salt}signer{key}".encode()).digest(), digestmod=hasher)


VISITOR_MAX_LENGTH = 200


def visitor_hash(visitor: str) -> str:
    """A visitor's id as exposure ids and events keep it: 16 hex digits of a keyed
    hash, so the client's raw id (a cookie, a device or contact id) is stored nowhere
    and cannot be matched across installations."""
    return hashlib.blake2b(
        visitor.encode(), key=_visitor_key(settings.SECRET_KEY), digest_size=8
    ).hexdigest()


@functools.lru_cache(maxsize=4)
def _visitor_key(secret: str) -> bytes:
    # Once a process (by secret: tests change it), not once a request.
    return hashlib.blake2b(secret.encode(), digest_size=32).digest()


@dataclass(slots=True)
class Live:
    """One answer of the live endpoint, before it is serialized: plain values, so the
    snapshot and the database paths build the same thing."""

    prompt_id: int
    prompt: str
    product_id: int
    product: str
    segment_id: int | None
    segment: str | None
    customer_id: int | None
    customer: str | None
    variant_id: int | None
    prompt_version: int | None
    text: str
    source: str  # pinned | customer | segment | base_copy
    # no_live_variant | no_variant_in_language | holdout | no_matching_segment
    fallback_reason: str | None  # ... | experiment_control (the control arm)
    language: str = ""  # the language of the text served
    # Why that language: exact | base_language (de for de-ch, or the other way) |
    # default (none was asked for) | no_variant_in_language (the prompt's default
    # language, since the reader's had neither a variant nor base copy).
    language_reason: str = "default"
    # A running experiment's answer (_serve_arm): the experiment, the shares in force
    # (an ExperimentWeights row), the arm served and its probability, whether the
    # visitor was randomized, and the visitor's hash. None: no experiment.
    experiment_id: int | None = None
    weights_id: int | None = None
    arm: str | None = None
    probability: float | None = None
    randomized: bool = False
    visitor: str = ""

    def exposure(self) -> Exposure:
        return Exposure(*self._exposed())

    def _exposed(self) -> tuple[Any, ...]:
        """Exposure's fields, in its order (and _exposure_id's)."""
        return (
            self.prompt_id,
            self.product_id,
            self.segment_id,
            self.customer_id,
            self.variant_id,
            self.language,
            self.experiment_id,
            self.weights_id,
            self.probability,
            self.randomized,
            self.visitor,
        )

    def leave_experiment(self) -> None:
        """Not an experiment's answer after all (a customer's own variant replaced it)."""
        self.experiment_id = self.weights_id = self.arm = self.probability = None
        self.randomized, self.visitor = False, ""

    def as_dict(self) -> dict[str, object]:
        return {
            "prompt": self.prompt,
            "product": self.product,
            "segment": self.segment,
            "customer": self.customer,
            "variant_id": self.variant_id,
            "prompt_version": self.prompt_version,
            "source": self.source,
            "fallback": self.variant_id is None,
            "fallback_reason": self.fallback_reason,
            "language": self.language,
            "language_reason": self.language_reason,
            "experiment": self.experiment_id,
            "arm": self.arm,
            "text": self.text,
            "exposure_id": _exposure_id(*self._exposed()),
        }

    def body(self) -> bytes:
        """render(self.as_dict()), byte for byte (tests compare the two), written
        without the dict: the fast path renders a visitor's answer for each request,
        and json.dumps of the dict cost 6 µs of it against 3 µs here. Each string is
        escaped by json's own encoder, the one json.dumps(ensure_ascii=False) uses."""
        exposure_id = _exposure_id(*self._exposed())
        return _js_safe(
            f'{{"prompt":{_string(self.prompt)},"product":{_string(self.product)},'
            f'"segment":{_optional(self.segment)},"customer":{_optional(self.customer)},'
            f'"variant_id":{_number(self.variant_id)},'
            f'"prompt_version":{_number(self.prompt_version)},'
            f'"source":{_string(self.source)},'
            f'"fallback":{"true" if self.variant_id is None else "false"},'
            f'"fallback_reason":{_optional(self.fallback_reason)},'
            f'"language":{_string(self.language)},'
            f'"language_reason":{_string(self.language_reason)},'
            f'"experiment":{_number(self.experiment_id)},"arm":{_optional(self.arm)},'
            f'"text":{_string(self.text)},"exposure_id":{_string(exposure_id)}}}'
        )


# A str as json.dumps(ensure_ascii=False) writes it (the C encoder where there is one).
_string: Callable[[str], str] = json.encoder.encode_basestring


def _optional(value: str | None) -> str:
    return "null" if value is None else _string(value)


def _number(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def render(body: Mapping[str, object]) -> bytes:
    """A body as DRF's JSONRenderer writes it: compact, UTF-8 rather than \\u escapes,
    but for U+2028 and U+2029."""
    return _js_safe(json.dumps(body, ensure_ascii=False, separators=(",", ":")))


def _js_safe(text: str) -> bytes:
    """JSON text as UTF-8, with the line and paragraph separators escaped as DRF's
    JSONRenderer escapes them (JavaScript before ES2019 ends a string at either): the
    fast path's bytes and ETag are then the DRF view's for any copy."""
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode()


def etag_of(content: bytes) -> str:
    return '"' + hashlib.sha1(content).hexdigest()[:24] + '"'


def _live(
    prompt: Prompt,
    product: Product,
    segment: Segment | None,
    customer: Customer | None,
    variant: Variant | None,
    source: str,
    fallback_reason: str | None = None,
    *,
    language: str | None = None,
    language_reason: str = "default",
    text: str | None = None,
) -> Live:
    """An answer; `text` overrides the variant's or the base copy's (a translation)."""
    if language is None:
        language = (variant.language if variant else "") or prompt.default_language
    return Live(
        prompt.pk,
        prompt.slug,
        product.pk,
        product.sku,
        segment.pk if segment else None,
        segment.slug if segment else None,
        customer.pk if customer else None,
        customer.external_id if customer else None,
        variant.pk if variant else None,
        variant.prompt_version.number if variant else None,
        text if text is not None else (variant.text if variant else product.description),
        source,
        fallback_reason,
        language,
        language_reason,
    )


class _Copy(NamedTuple):
    """A live variant as the language choice sees it."""

    variant_id: int
    prompt_version: int
    text: str
    stored: str = ""  # its language as stored ("" for one from before languages)


# (variant or None for the base copy, language served, language reason, fallback
# reason, text): what _choose_language chose.
_Choice = tuple[_Copy | None, str, str, str | None, str]


def _choose_language(
    *,
    default: str,
    wanted: list[str],
    live: dict[str, _Copy],
    translations: dict[str, object],
    description: str,
) -> _Choice:
    """(variant or None for the base copy, language served, language reason, fallback
    reason, text) for a reader who wants `wanted` (most wanted first; empty: none
    asked), given a product's live variants by language ("" is one published before
    slots had a language: the default's), its translations and its base copy.

    1. A wanted language's variant: the exact tag, else its base language (or a
       regional variant of a base language asked for), as RFC 4647's lookup does.
    2. Else a wanted language's base copy (the catalog's translation), marked
       no_variant_in_language.
    3. Else the prompt's default language: its variant, or the default base copy.
    """
    live = {(tag or default): copy for tag, copy in live.items()}
    if wanted:
        choice = languages.negotiate(wanted, live, default="")
        if choice.language:
            chosen = live[choice.language]
            return chosen, choice.language, choice.reason, None, chosen.text
        for tag in wanted:
            if tag == "*":
                break
            for candidate, reason in (
                (tag, "exact"),
                (languages.base_language(tag), "base_language"),
            ):
                found = (translations or {}).get(candidate)
                if isinstance(found, dict) and found.get("description"):
                    return None, candidate, reason, "no_variant_in_language", found["description"]
    reason = "default"
    for tag in wanted:
        if tag == "*":
            break
        if tag == default or languages.base_language(tag) == languages.base_language(default):
            reason = "exact" if tag == default else "base_language"
            break
        reason = "no_variant_in_language"
    copy = live.get(default)
    if copy is not None:
        return copy, default, reason, None, copy.text
    # A reader of another language is told their language had nothing; one who reads
    # the default language (or asked for none) simply has no live variant yet. Neither
    # depends on other languages' variants, which the snapshot does not read.
    fallback = "no_variant_in_language" if reason == "no_variant_in_language" else "no_live_variant"
    return None, default, reason, fallback, description


# ----------------------------------------------------------------------------------
# Experiments: several arms of one slot, picked per visitor without a query


class _Experiment(NamedTuple):
    """A running experiment of a slot, as one query reads it (_experiments): its id and
    key (what pick_arm hashes), the shares in force (their ExperimentWeights row, and
    the shares checked once, as a Split), and its variant arms. Tuples of numbers and
    strings, as a slot's are."""

    experiment_id: int
    key: str
    weights_id: int
    split: Split
    variants: tuple[_Copy, ...]


class _Trial(NamedTuple):
    """A slot's experiment as its product serves it in one language: the experiment
    and the control's base copy in the slot's language (text, language, reason)."""

    experiment: _Experiment
    control_text: str
    control_language: str
    control_reason: str


# (product id, the slot's stored language) -> its running experiment.
_Experiments = dict[tuple[int, str], _Experiment]


def _experiments_from(
    prompt_id: int,
    segment_id: int,
    tags: list[str] | None,
    product_ids: list[int] | None,
) -> tuple[str, list[int | str | list[int]]]:
    """The FROM, JOINs and WHERE of _experiments' rows, and their parameters."""
    connection = connections[Experiment.objects.db]
    params: list[int | str | list[int]] = [prompt_id, segment_id, Experiment.Status.RUNNING]
    where = ""
    if tags is not None:
        where += f"AND e.language IN ({', '.join(['%s'] * len(tags))}) "
        params += tags
    if product_ids is not None and connection.vendor == "postgresql":
        where, params = where + "AND e.product_id = ANY(%s) ", [*params, product_ids]
    elif product_ids is not None:
        where += f"AND e.product_id IN ({', '.join(['%s'] * len(product_ids))}) "
        params += product_ids
    weights = ExperimentWeights._meta.db_table
    # Inner joins only: the slot's own query is the block's one LEFT JOIN (tests find
    # it by that).
    sql = (
        f"FROM {Experiment._meta.db_table} e "
        f"JOIN {weights} w ON w.id = (SELECT w2.id FROM {weights} w2 "
        "WHERE w2.experiment_id = e.id ORDER BY w2.effective_from DESC, w2.id DESC LIMIT 1) "
        f"JOIN {ExperimentArm._meta.db_table} a ON a.experiment_id = e.id "
        f"JOIN {Variant._meta.db_table} v ON v.id = a.variant_id "
        f"JOIN {PromptVersion._meta.db_table} pv ON pv.id = v.prompt_version_id "
        # No ORDER BY: sorting every arm's text cost more than the rest (an external
        # merge at 10,000 experiments a block); the arms are sorted below.
        f"WHERE e.prompt_id = %s AND e.segment_id = %s AND e.status = %s {where}"
    )
    return sql, params


def _experiments(
    prompt_id: int,
    segment_id: int,
    *,
    tags: list[str] | None = None,
    product_ids: list[int] | None = None,
    versions: _Versions | None = None,
) -> _Experiments:
    """The running experiments of a prompt's slots for a segment, in one query: of every
    product or of these, in the stored languages `tags`, or in every language. Each with
    its latest shares and its variant arms (id, version number, text); paused arms come
    too, with no share, so pick_arm never takes them. With `versions` (PostgreSQL), the
    versions of the rows read are added to it (see Snapshot._versions).

    An experiment whose shares name an arm it does not have is left out (served as a
    plain slot) and logged: it is a bug of whoever wrote the shares.
    """
    connection = connections[Experiment.objects.db]
    joins, params = _experiments_from(prompt_id, segment_id, tags, product_ids)
    wanted = versions is not None and connection.vendor == "postgresql"
    sql = (
        "SELECT e.id, e.product_id, e.language, w.id, w.weights, v.id, pv.number, v.text"
        f"{', ' + _EXPERIMENT_VERSIONS if wanted else ''} {joins}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    if wanted:
        assert versions is not None
        versions += [(row[1], row[8]) for row in rows]
    read: dict[int, tuple[int, str, int, object, list[_Copy]]] = {}
    for pk, product_id, tag, weights_id, shares, variant_id, number, text, *_ in rows:
        found = read.setdefault(pk, (product_id, tag, weights_id, shares, []))
        found[4].append(_Copy(variant_id, number, text, tag))
    experiments: _Experiments = {}
    for pk, (product_id, tag, weights_id, shares, variants) in read.items():
        if isinstance(shares, str):  # SQLite, and jsonb read as text
            shares = json.loads(shares)
        assert isinstance(shares, dict)
        keys = {CONTROL, *(arm_key(v.variant_id) for v in variants)}
        if not set(shares) <= keys:
            log.error("experiment %s: its shares name arms it does not have: %s", pk, shares)
            continue
        try:
            split = split_of(shares)
        except (TypeError, ValueError) as exc:  # TypeError: a share that is no number
            log.error("experiment %s: its shares are not a split (%s): %s", pk, exc, shares)
            continue
        experiments[(product_id, tag)] = _Experiment(
            pk, experiment_key(pk), weights_id, split, tuple(sorted(variants))
        )
    return experiments


def _row_versions(*tables: str) -> str:
    """One text of the PostgreSQL versions of the rows a result row is made of: each
    table's (xmin, ctid), which any write changes (Snapshot._versions). One column, not
    two a table: half the time the check spends turning columns into Python objects.
    A NULL (a LEFT JOIN that found nothing) is left out: the tables come in a fixed
    order and each joins on the one before, so the count of fields tells which ones."""
    return "concat_ws(' ', " + ", ".join(f"{t}.xmin, {t}.ctid" for t in tables) + ")"


_EXPERIMENT_VERSIONS = _row_versions("e", "w", "a", "v", "pv")
_SLOT_VERSIONS = _row_versions("p", "v", "pv")


def experiment_key(pk: int) -> str:
    """Experiment.key without a model instance (a block reads thousands): a test keeps
    the two equal."""
    return f"experiment-{pk}"


def _trial(
    experiments: _Experiments,
    product_id: int,
    copy: _Copy | None,
    *,
    default: str,
    reason: str,
    translations: dict[str, object],
    description: str,
) -> _Trial | None:
    """The experiment of the slot a product serves (`copy`, the published variant the
    language choice took), with its control: the product's base copy in the slot's
    language (the catalog's translation), else the default base copy. None when the
    product serves no variant or its slot runs no experiment."""
    if copy is None:
        return None
    experiment = experiments.get((product_id, copy.stored))
    if experiment is None:
        return None
    # The published arm is the slot's own copy: one string of its text, not two.
    experiment = experiment._replace(
        variants=tuple(copy if v.variant_id == copy.variant_id else v for v in experiment.variants)
    )
    tag = copy.stored or default
    if languages.base_language(tag) == languages.base_language(default):
        return _Trial(experiment, description, default, reason)
    for candidate in (tag, languages.base_language(tag)):
        found = (translations or {}).get(candidate)
        if isinstance(found, dict) and found.get("description"):
            return _Trial(experiment, found["description"], candidate, reason)
    return _Trial(experiment, description, default, "no_variant_in_language")


def _serve_arm(live: Live, trial: _Trial, visitor: str) -> None:
    """Make `live`, the answer of a slot whose experiment runs, its experiment's answer.

    1. With a visitor: the arm `pick` gives the experiment and the visitor (a stable
       hash, the shares in force), served with that probability, randomized.
    2. Without one: the slot's published variant as before, with its share as the
       probability, not randomized (analysis leaves it out of the comparisons).
    3. The control serves the base copy (source base_copy, fallback experiment_control);
       a variant arm its own text and prompt version.
    """
    experiment = trial.experiment
    if visitor:
        arm, probability = pick(experiment.split, experiment_key=experiment.key, visitor=visitor)
        live.randomized, live.visitor = True, visitor_hash(visitor)
    else:
        arm = arm_key(live.variant_id)
        probability = experiment.split.share(arm)
    live.experiment_id, live.weights_id = experiment.experiment_id, experiment.weights_id
    live.arm, live.probability = arm, probability
    if arm == CONTROL:
        live.variant_id = live.prompt_version = None
        live.text, live.language = trial.control_text, trial.control_language
        live.language_reason = trial.control_reason
        live.source, live.fallback_reason = "base_copy", "experiment_control"
        return
    for copy in experiment.variants:
        if arm_key(copy.variant_id) == arm:
            live.variant_id, live.prompt_version, live.text = (
                copy.variant_id,
                copy.prompt_version,
                copy.text,
            )
            return


def in_holdout(prompt: Prompt, customer: Customer) -> bool:
    """Stable per prompt and customer, so a customer stays in one arm across visits."""
    return _in_holdout(prompt.slug, prompt.holdout_percent, customer.external_id)


def _in_holdout(prompt_slug: str, holdout_percent: int, customer_id: str) -> bool:
    digest = hashlib.blake2b(f"{prompt_slug}:{customer_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % 100 < holdout_percent


def segment_for(
    attributes: dict[str, Any], segments: list[Segment] | None = None
) -> Segment | None:
    """The segment whose rules the attributes meet; the most specific one if several do."""
    if segments is None:
        segments = list(Segment.objects.only("id", "slug", "name", "rules"))
    matching = [s for s in segments if s.rules and s.matches(attributes)]
    if not matching:
        return None
    return min(matching, key=lambda s: (-len(s.rules), s.slug))


# ----------------------------------------------------------------------------------
# Epochs: what tells every web process that its snapshot is out of date


def _redis() -> redis.Redis:
    # Short timeouts: a Redis that hangs must not hang delivery.
    return redis_clients.client(timeout=redis_clients.LIVE_TIMEOUT)


_redis_down_until = 0.0


def redis_round_trip(what: str, call: Callable[[redis.Redis], T]) -> T | None:
    """`call(client)`, or None when Redis cannot be asked. After an error Redis is left
    alone for REDIS_BACKOFF_SECONDS, so a Redis that is down costs delivery one timeout
    a second per process, not one a request."""
    global _redis_down_until
    if time.monotonic() < _redis_down_until:
        return None
    try:
        return call(_redis())
    except redis.RedisError as exc:
        _redis_down_until = time.monotonic() + REDIS_BACKOFF_SECONDS
        log.warning("Redis unreachable for %s: %s", what, exc)
        return None


def _bucket_field(prompt_id: int, segment_id: int | None, bucket: int) -> str:
    # segment_id None: a customer's slot (customer_erase sends those), which no block
    # holds, so no process reads its field.
    return f"{prompt_id}:{segment_id}:{bucket}"


def _bucket_fields(prompt_id: int, segment_id: int) -> list[str]:
    return [_bucket_field(prompt_id, segment_id, b) for b in range(BUCKETS)]


def _bump(fields: list[str]) -> None:
    def bump(client: redis.Redis) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for name in fields:
            pipe.hincrby(EPOCHS_KEY, name, 1)
        return pipe.execute()

    if redis_round_trip("live copy changes", bump) is None:
        log.warning(
            "live copy changed without telling Redis: web processes see it within "
            "DELIVERY_SNAPSHOT_MAX_AGE_SECONDS"
        )


def live_changed(
    *, prompt_id: int | None = None, segment_id: int | None = None, product_id: int | None = None
) -> None:
    """Tell every web process that live copy changed: one slot's (a prompt, segment and
    product), or with no ids anything (products, prompts, segments).

    Bumped now and again when the current transaction commits: a process that read
    the slot between the two saw the write half done, and the second bump makes it
    read again (see the module's docstring).
    """
    if prompt_id is None:
        fields = [GLOBAL]
    elif product_id is None:
        raise TypeError("a slot's change names its product (product_id)")
    else:
        fields = [_bucket_field(prompt_id, segment_id, product_id % BUCKETS)]
    _bump(fields)
    transaction.on_commit(lambda: _bump(fields), robust=True)


# The statuses a variant's save leaves it in when the save can change what its slot
# shows: published (approve, undo), retired (replaced), in review (an approval undone),
# testing (an arm of the slot's experiment, whose text visitors are shown).
# Queued, generating, failed, rejected and superseded never follow a published one.
_LIVE_CHANGING = frozenset(
    (
        Variant.Status.PUBLISHED,
        Variant.Status.RETIRED,
        Variant.Status.IN_REVIEW,
        Variant.Status.TESTING,
    )
)


def variant_saved(
    *,
    sender: type[Variant],
    instance: Variant,
    update_fields: frozenset[str] | None = None,
    **kwargs: object,
) -> None:
    """post_save of Variant: a save that can change which variant a slot shows."""
    if instance.segment_id is None:
        return  # a customer's own variant: read from the database on every request
    if instance.status not in _LIVE_CHANGING:
        return
    if update_fields is not None and not {"status", "text"} & set(update_fields):
        return
    live_changed(
        prompt_id=instance.prompt_id, segment_id=instance.segment_id, product_id=instance.product_id
    )


def catalog_changed(**kwargs: object) -> None:
    """post_save and post_delete of Product, Prompt and Segment."""
    live_changed()


def live_copy_changed(
    sender: object,
    *,
    prompt_id: int | None = None,
    product_id: int | None = None,
    segment_id: int | None = None,
    **kwargs: object,
) -> None:
    """generation.signals.live_copy_changed: a bulk write changed what slots show."""
    live_changed(prompt_id=prompt_id, product_id=product_id, segment_id=segment_id)


def _check_field(block: _Block, bucket: int) -> str:
    return f"{block.prompt_id}:{block.segment_id}:{block.asked}:{bucket}"


def _published_check(record: bytes | None) -> tuple[str, float, str] | None:
    """A check another process published (digest, wall-clock time, who), or None for
    none or for one this version cannot read."""
    if record is None:
        return None
    parts = record.decode(errors="replace").split(" ")
    if len(parts) != 3:
        return None
    try:
        return parts[0], float(parts[1]), parts[2]
    except ValueError:
        return None


# ----------------------------------------------------------------------------------
# The snapshot


class _Slot(NamedTuple):
    """One product of a block: what it serves in the block's language (the published
    variant chosen, or the base copy). Tuples of strings and numbers, with no reference
    cycle; the collector still tracks them (it untracks exact tuples only, not a
    NamedTuple), which is why a big snapshot is frozen (Snapshot._settle). Its answer
    is rendered the first time it is asked for (_Block.rendered): a block of 10,000
    products loads in one query, not 10,000 renders."""

    product_id: int
    description: str  # the default base copy (a customer in the holdout gets it)
    variant_id: int | None
    prompt_version: int | None
    text: str  # what is served: the variant's text, or the base copy chosen
    language: str
    language_reason: str
    fallback_reason: str | None
    trial: _Trial | None  # the slot's running experiment, if any


# A slot's fields as _served computes them, in _Slot's order.
_Served = tuple[int, str, int | None, int | None, str, str, str, str | None, _Trial | None]
# A bucket's epoch in Redis (HINCRBY's counter, as HMGET returns it); None: not known.
_Epoch = bytes | None


# The versions of the rows a bucket was read from: (product id, the versions of the
# rows a result row was made of, _row_versions), one tuple a result row.
_Versions = list[tuple[int, str]]


class _Read(NamedTuple):
    """What Snapshot._served read: each slot's fields by SKU, the stored languages whose
    experiments it read, and the versions of every row it read (None on SQLite)."""

    served: dict[str, _Served]
    stored: tuple[str, ...]
    versions: _Versions | None


def _digests(
    versions: _Versions | None, block: _Block, stored: list[tuple[str, ...]]
) -> list[str | None] | None:
    """Each bucket's digest of the versions of the rows it was read from, or None.

    BLAKE2b (128 bits) of the block's languages, the bucket's stored languages (`stored`,
    which its experiments were read in) and its rows' versions, sorted: the same rows
    give the same digest in every process, which is what lets one process take another's
    check as its own (Snapshot._shared_checks). A write cannot keep a digest: PostgreSQL
    picks the versions, and two sets share a digest by chance once in 2**128."""
    if versions is None:
        return None
    buckets: list[list[str]] = [[] for _ in range(BUCKETS)]
    for product_id, row in versions:
        buckets[product_id % BUCKETS].append(row)
    digests: list[str | None] = []
    for b, rows in enumerate(buckets):
        rows.sort()
        head = f"{block.language} {block.asked} {','.join(stored[b])}\n"
        digests.append(
            hashlib.blake2b((head + "\n".join(rows)).encode(), digest_size=16).hexdigest()
        )
    return digests


@dataclass
class _Block:
    """A prompt's copy for one segment, as served to readers who ask for one language
    (`asked`; "" for none): every product's slot, in BUCKETS buckets by product id, each
    with the epoch it was read at and when."""

    prompt_id: int
    prompt: str
    segment_id: int
    segment: str
    slots: dict[str, _Slot] | None  # None: too many products to hold
    epochs: list[_Epoch]  # a bucket's epoch as read before it was loaded
    loaded: list[float]  # when each bucket was loaded (or is deemed to have been)
    verified: float
    # When a request last checked it (the checker thread keeps fresh only those asked
    # for within the maximum age).
    requested: float
    # The prompt's default language, and the one language readers of this block ask
    # for ("" for none): the language choice is made once per slot, at load.
    language: str = languages.DEFAULT_LANGUAGE
    asked: str = ""
    # sku -> (the slot it was rendered from, body, ETag). A slot replaced by a reload
    # is rendered again; its exposure id is deterministic, so two threads rendering one
    # slot at once write the same bytes.
    answers: dict[str, tuple[_Slot, bytes, str]] = field(default_factory=dict)
    # Each bucket's SKUs, so that reading a bucket again does not walk every slot (a
    # tenth of a bucket read's time at 10,000 products).
    skus: list[list[str]] = field(default_factory=lambda: [[] for _ in range(BUCKETS)])
    # Each bucket's digest of the row versions it was read from (Snapshot._versions;
    # None: not known, and a bucket due by age is read again whole), and the stored
    # languages its slots' experiments were read in (the digest covers those).
    digests: list[str | None] = field(default_factory=lambda: [None] * BUCKETS)
    stored: list[tuple[str, ...]] = field(default_factory=lambda: [()] * BUCKETS)

    def index(self) -> None:
        """Each bucket's SKUs, from the slots held."""
        self.skus = [[] for _ in range(BUCKETS)]
        for sku, slot in (self.slots or {}).items():
            self.skus[slot.product_id % BUCKETS].append(sku)

    def live(self, sku: str, visitor: str = "") -> Live | None:
        slot = self.slots.get(sku) if self.slots is not None else None
        return None if slot is None else self.answer(sku, slot, visitor)

    def rendered(self, sku: str, visitor: str = "") -> tuple[bytes, str] | None:
        """The product's answer as the API sends it: (body, ETag).

        Rendered once, when first asked for, and kept with the slot; a visitor's answer
        from a running experiment for each request (its exposure id names the visitor:
        see the module's docstring).
        """
        slot = self.slots.get(sku) if self.slots is not None else None
        if slot is None:
            return None
        if visitor and slot.trial is not None:
            content = self.answer(sku, slot, visitor).body()
            return content, etag_of(content)
        found = self.answers.get(sku)
        if found is None or found[0] is not slot:
            content = self.answer(sku, slot).body()
            found = self.answers[sku] = (slot, content, etag_of(content))
        return found[1], found[2]

    def answer(self, sku: str, slot: _Slot, visitor: str = "") -> Live:
        (
            product_id,
            _description,
            variant_id,
            prompt_version,
            text,
            language,
            language_reason,
            fallback_reason,
            trial,
        ) = slot
        live = Live(
            self.prompt_id,
            self.prompt,
            product_id,
            sku,
            self.segment_id,
            self.segment,
            None,
            None,
            variant_id,
            prompt_version,
            text,
            "segment" if variant_id is not None else "base_copy",
            fallback_reason,
            language,
            language_reason,
        )
        if trial is not None:
            _serve_arm(live, trial, visitor)
        return live


@dataclass
class _Names:
    """Prompts and segments by slug, and the segments for resolving customers."""

    prompts: dict[str, tuple[int, int, str]]  # slug -> (id, holdout percent, default language)
    segments: dict[str, Segment]
    epoch: object
    loaded: float
    verified: float


class Snapshot:
    """This process's memory of live copy (see the module's docstring)."""

    def __init__(self) -> None:
        # By (prompt, segment, language asked): one block per language readers ask for.
        self._blocks: OrderedDict[tuple[str, str, str], _Block] = OrderedDict()
        self._rows = 0
        self._names: _Names | None = None
        self._descriptions: dict[int, str] = {}  # product id -> base copy, see _slots
        # _lock guards the dicts and counts above, held for moments only. Reading a block
        # (queries, rendering) holds that block's own lock instead: a burst of requests
        # for a cold block loads it once, and threads serving other blocks go on.
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str, str], threading.Lock] = {}
        # Bumped by every drop: a load that began before one is thrown away, since what
        # it read may predate the change that caused the drop.
        self._drops = 0
        # Blocks with buckets due by age, for the checker thread (_check_in_background).
        self._due: queue.SimpleQueue[tuple[str, str, str] | None] = queue.SimpleQueue()
        self._queued: set[tuple[str, str, str]] = set()
        self._checker: threading.Thread | None = None
        # With the pid, who signs this process's checks (_owner).
        self._token = secrets.token_hex(4)

    def clear(self) -> None:
        with self._lock:
            self._drop_blocks()
            self._names = None

    def _epochs(self, *fields: str) -> list[_Epoch] | None:
        """The epochs of these fields, or None when Redis cannot be asked."""
        # redis-py types every reply as `Awaitable | Any`, one annotation for its sync
        # and asyncio clients (redis/redis-py#2399); this client is sync.
        return redis_round_trip(
            "the live copy snapshot",
            lambda client: cast("list[_Epoch]", client.hmget(EPOCHS_KEY, list(fields))),
        )

    # -- names

    def names(self) -> _Names:
        """Prompts and segments by slug, checked against the global epoch as blocks are.
        With Redis unreachable they are kept until DELIVERY_SNAPSHOT_MAX_AGE_SECONDS."""
        now = time.monotonic()
        names = self._names
        if (
            names is not None
            and now - names.verified < settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS
            and now - names.loaded < settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
        ):
            return names
        epochs = self._epochs(GLOBAL)
        with self._lock:
            names = self._names
            if (
                names is not None
                and (epochs is None or epochs[0] == names.epoch)
                and now - names.loaded < settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
            ):
                names.verified = now
                return names
            if names is not None and epochs is not None and epochs[0] != names.epoch:
                self._drop_blocks()
            # Unknown while Redis is down: None, which differs from any epoch it will say.
            return self._load_names(epochs[0] if epochs is not None else None, now)

    def _load_names(self, epoch: object, now: float) -> _Names:
        prompts = {
            slug: (pk, holdout, Prompt(languages=tags or []).default_language)
            for pk, slug, holdout, tags in Prompt.objects.values_list(
                "pk", "slug", "holdout_percent", "languages"
            )
        }
        segments = {s.slug: s for s in Segment.objects.only("id", "slug", "name", "rules")}
        self._names = _Names(prompts, segments, epoch, now, now)
        return self._names

    def segments(self) -> list[Segment]:
        return list(self.names().segments.values())

    # -- blocks

    def _drop_blocks(self) -> None:
        self._blocks.clear()
        self._descriptions.clear()
        self._loading.clear()
        self._rows = 0
        self._drops += 1

    def block(
        self, prompt_slug: str, segment_slug: str, asked: str = "", *, checker: bool = False
    ) -> _Block | None:
        """The block of this prompt and segment for readers who ask for the language
        `asked` (a stored tag; "" for none), checked within the last
        DELIVERY_SNAPSHOT_VERIFY_SECONDS; None if either is unknown here.

        1. A block checked recently enough is served as it is.
        2. Otherwise read the global epoch and the block's bucket epochs (one HMGET).
           If the global one moved, drop everything: the caller reads the database.
        3. Read again each bucket whose epoch moved.
        4. Check each bucket older than DELIVERY_SNAPSHOT_MAX_AGE_SECONDS (a new block's
           buckets are deemed loaded at staggered times, so they come due one by one):
           the checker thread does (`checker`), and the request goes on with what is
           held (_check_in_background); past twice that age, the request does.
        """
        key = (prompt_slug, segment_slug, asked)
        now, wall = time.monotonic(), time.time()
        block = self._blocks.get(key)
        if checker and block is None:
            return None  # dropped since it was queued: loaded again when asked for
        fresh = settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS
        if block is not None and now - block.verified < fresh and not checker:
            return block  # (its place in the LRU order is kept at each check, below)
        names = self.names()
        prompt, segment = names.prompts.get(prompt_slug), names.segments.get(segment_slug)
        if prompt is None or segment is None:
            return None
        epochs = self._epochs(GLOBAL, *_bucket_fields(prompt[0], segment.pk))
        with self._lock:
            if epochs is not None and epochs[0] != names.epoch:
                # Something else changed since the names were read: start over.
                self._drop_blocks()
                self._names = None
                return None
            drops = self._drops
            key_lock = self._loading.setdefault(key, threading.Lock())
        bucket_epochs: list[_Epoch] = epochs[1:] if epochs is not None else [None] * BUCKETS
        with key_lock:
            block = self._blocks.get(key)
            if block is not None and now - block.verified < fresh and not checker:
                return block  # another thread checked it while this one waited
            if checker and block is None:
                return None
            if block is None or (block.prompt_id, block.segment_id) != (prompt[0], segment.pk):
                return self._load_block(key, prompt, segment, bucket_epochs, now, drops)
            if block.slots is None:  # too big to hold: count again once in a while
                if now - block.loaded[0] < settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS:
                    return block
                return self._load_block(key, prompt, segment, bucket_epochs, now, drops)
            max_age = settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
            moved: list[int] = []
            aged: list[int] = []
            for b in range(BUCKETS):
                if epochs is not None and bucket_epochs[b] != block.epochs[b]:
                    moved.append(b)
                elif now - block.loaded[b] >= max_age:  # Redis down: by age alone
                    aged.append(b)
            if aged and not checker and self._check_in_background(key, block, aged, now):
                aged = []
            claims: list[str] = []
            if aged and epochs is not None and settings.DELIVERY_SNAPSHOT_SHARE_CHECKS:
                # Another process may have checked them: take its check, or claim them.
                aged, claims = self._shared_checks(block, aged, now, wall)
            try:
                if aged:
                    # Due by age only: read again those whose rows changed (_versions).
                    digests = self._versions(block, aged)
                    for b in aged:
                        if digests is not None and digests[b] == block.digests[b]:
                            block.epochs[b], block.loaded[b] = bucket_epochs[b], now
                        else:
                            moved.append(b)
                if moved:
                    self._reload_buckets(block, moved, bucket_epochs, now)
            finally:
                if aged or moved or claims:
                    self._publish_checks(block, [*aged, *moved], now, wall, claims)
            block.verified = now
            if not checker:
                block.requested = now
            self._touch(key)
            return block

    def _owner(self) -> str:
        """Who signs this process's checks in Redis: a forked worker has its own pid."""
        return f"{os.getpid()}.{self._token}"

    def _shared_checks(
        self, block: _Block, aged: list[int], now: float, wall: float
    ) -> tuple[list[int], list[str]]:
        """Of a block's buckets due by age, those this process checks itself, and the
        claims it took on them in Redis (to give back in _publish_checks).

        Every process holds the same buckets and would check each once per maximum age.
        A check of one process is as good for any other that holds the same rows: the
        same digest (_digests) means the same rows, current when that check began. So a
        process publishes its checks (CHECKS_KEY: digest, time, who), and one whose bucket
        comes due takes a check published by another process with its own digest as its
        own: the bucket is deemed loaded then. A bucket still due is claimed (SET NX, for
        CHECK_CLAIM_SECONDS) before it is checked; a bucket another process is checking
        waits for the next round (DELIVERY_SNAPSHOT_VERIFY_SECONDS), when that check is
        published, unless it is overdue (twice the maximum age). So the fleet checks a
        bucket about once per maximum age, not once in each process.

        Published times are wall-clock times: a host whose clock runs behind another's
        takes that host's checks as that much older than they were, and one whose clock
        runs ahead takes them as that much newer (milliseconds under NTP, against a
        maximum age of minutes). With Redis unreachable, every due bucket is checked here.
        """
        max_age = settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
        if any(block.digests[b] is None for b in aged):
            return aged, []  # no digest to compare (SQLite): nothing to share
        fields = [_check_field(block, b) for b in aged]
        records = redis_round_trip(
            "shared snapshot checks",
            lambda client: cast("list[bytes | None]", client.hmget(CHECKS_KEY, fields)),
        )
        if records is None:
            return aged, []
        owner = self._owner()
        due: list[int] = []
        for b, record in zip(aged, records, strict=True):
            published = _published_check(record)
            if published is not None:
                digest, at, who = published
                if who != owner and digest == block.digests[b]:
                    # Its time on this process's clock, and never in the future.
                    block.loaded[b] = max(block.loaded[b], now - max(0.0, wall - at))
            if now - block.loaded[b] >= max_age:
                due.append(b)
        if not due:
            return [], []
        claim_keys = [CLAIM_PREFIX + _check_field(block, b) for b in due]

        def claim(client: redis.Redis) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for name in claim_keys:
                pipe.set(name, owner, nx=True, px=int(CHECK_CLAIM_SECONDS * 1000))
            return pipe.execute()

        won = redis_round_trip("shared snapshot checks", claim)
        if won is None:
            return due, []
        checked: list[int] = []
        claims: list[str] = []
        for b, name, ours in zip(due, claim_keys, won, strict=True):
            if ours:
                checked.append(b)
                claims.append(name)
            elif now - block.loaded[b] >= 2 * max_age:  # overdue: whoever holds it
                checked.append(b)
        return checked, claims

    def _publish_checks(
        self, block: _Block, buckets: list[int], now: float, wall: float, claims: list[str]
    ) -> None:
        """Publish the digests of the buckets checked or read again just now (those
        loaded at `now`), with the time, and give back the claims taken on them."""
        if not settings.DELIVERY_SNAPSHOT_SHARE_CHECKS:
            return
        owner = self._owner()
        mapping = {
            _check_field(block, b): f"{block.digests[b]} {wall!r} {owner}"
            for b in buckets
            if block.loaded[b] == now and block.digests[b] is not None
        }
        if not mapping and not claims:
            return

        def publish(client: redis.Redis) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            if mapping:
                pipe.hset(CHECKS_KEY, mapping=mapping)
                # Fields of blocks no process holds any more go with the key, in time.
                pipe.expire(CHECKS_KEY, int(2 * settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS) + 60)
            if claims:
                pipe.delete(*claims)
            return pipe.execute()

        redis_round_trip("shared snapshot checks", publish)

    def _check_in_background(
        self, key: tuple[str, str, str], block: _Block, aged: list[int], now: float
    ) -> bool:
        """Leave a block's buckets due by age to this process's checker thread
        (_check_due), unless one is overdue (twice the maximum age: the thread is
        stuck or failing) or DELIVERY_SNAPSHOT_BACKGROUND_CHECKS is off. True if left.

        A check waits on PostgreSQL for most of its time (~16 ms at 160 products, cold,
        most of it the database's): in the request that found the bucket due, a sync
        worker served nothing meanwhile, and with every worker's CPU busy the wait grew.
        The thread waits instead, without the GIL, while requests go on with the
        buckets held, at most a second and a check older than the maximum age.
        """
        max_age = settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
        if not settings.DELIVERY_SNAPSHOT_BACKGROUND_CHECKS or any(
            now - block.loaded[b] >= 2 * max_age for b in aged
        ):
            return False
        with self._lock:
            self._start_checker()
            if key not in self._queued:
                self._queued.add(key)
                self._due.put(key)
        return True

    def _start_checker(self) -> None:
        """Start this process's checker thread unless it runs (under self._lock). Started
        by a request, so after gunicorn forks: threads do not survive a fork."""
        if self._checker is None or not self._checker.is_alive():
            self._checker = threading.Thread(
                target=self._check_due, name="live-snapshot-checker", daemon=True
            )
            self._checker.start()

    def _aged_blocks(self, now: float) -> list[tuple[str, str, str]]:
        """The blocks held whole, asked for within the maximum age, with a bucket due by
        age: a block nobody asks for any more is not kept fresh (its next request checks
        it, and the LRU order drops it first)."""
        max_age = settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS
        with self._lock:
            held = list(self._blocks.items())
        return [
            key
            for key, block in held
            if block.slots is not None
            and now - block.requested < max_age
            and now - min(block.loaded) >= max_age
        ]

    def _check_due(self) -> None:
        """The checker thread. Every DELIVERY_SNAPSHOT_VERIFY_SECONDS, and whenever a
        request leaves it a block, it checks each block with buckets due by age
        (_aged_blocks) as block() does, so buckets are checked as they come due, on a
        clock of their own, not in bursts when traffic returns to a block. On its own
        database connection, kept while it works whatever CONN_MAX_AGE says (at the
        default, 0, a round would open one), closed after an error that left it
        unusable and after CHECKER_IDLE_SECONDS without a check. None in the queue
        stops it."""
        connected, worked = False, time.monotonic()
        while True:
            left: list[tuple[str, str, str]] = []
            try:
                key = self._due.get(timeout=settings.DELIVERY_SNAPSHOT_VERIFY_SECONDS)
                if key is None:
                    connections.close_all()  # this thread's
                    return
                left.append(key)
            except queue.Empty:
                pass
            now = time.monotonic()
            keys = list(dict.fromkeys(left + self._aged_blocks(now)))
            if not keys:
                if connected and now - worked >= CHECKER_IDLE_SECONDS:
                    connections.close_all()
                    connected = False
                continue
            for connection in connections.all(initialized_only=True):  # this thread's
                if connection.errors_occurred:
                    if not connection.is_usable():
                        connection.close()
                    connection.errors_occurred = False
            connected, worked = True, now
            for key in keys:
                try:
                    self.block(*key, checker=True)
                except Exception:  # the thread lives on; a request checks past 2x the age
                    log.exception("checking the live copy snapshot's block %s failed", key)
                finally:
                    with self._lock:
                        self._queued.discard(key)

    def stop_checker(self) -> None:
        """Stop this process's checker thread, if it runs, once it has closed its
        database connections (a test database cannot be dropped while one is open)."""
        with self._lock:
            thread, self._checker = self._checker, None
        if thread is not None and thread.is_alive():
            self._due.put(None)
            thread.join(timeout=30)

    def _touch(self, key: tuple[str, str, str]) -> None:
        with contextlib.suppress(KeyError):  # dropped by another thread meanwhile
            self._blocks.move_to_end(key)

    def _slots_from(
        self, block: _Block, product_ids: list[int] | None
    ) -> tuple[str, list[int | str | list[int]]]:
        """The FROM, JOINs and WHERE of a block's slots, of every product or of these, and
        their parameters: a row per published variant of the segment in a language the
        choice can take (a product with none has one row of NULLs)."""
        # Only the languages the choice can take: the one asked, its base language and
        # that base's regional tags, the default, and "" (published before languages).
        tags = sorted({"", block.language, block.asked, languages.base_language(block.asked)})
        regional = f"{languages.base_language(block.asked)}-%" if block.asked else ""
        where = ""
        params: list[int | str | list[int]] = [
            block.prompt_id,
            block.segment_id,
            Variant.Status.PUBLISHED,
        ]
        params += [*tags, regional]
        connection = connections[Variant.objects.db]
        if product_ids is not None and connection.vendor == "postgresql":
            # One array, not a list of literals: PostgreSQL plans a long IN list slowly.
            where, params = "WHERE p.id = ANY(%s) ", [*params, product_ids]
        elif product_ids is not None:
            where = f"WHERE p.id IN ({', '.join(['%s'] * len(product_ids))}) "
            params += product_ids
        sql = (
            f"FROM {Product._meta.db_table} p "
            f"LEFT JOIN {Variant._meta.db_table} v ON v.product_id = p.id "
            "AND v.prompt_id = %s AND v.segment_id = %s AND v.status = %s "
            f"AND (v.language IN ({', '.join(['%s'] * len(tags))}) OR v.language LIKE %s) "
            f"LEFT JOIN {PromptVersion._meta.db_table} pv ON pv.id = v.prompt_version_id "
            f"{where}"
        )
        return sql, params

    def _rows_of(
        self, block: _Block, product_ids: list[int] | None = None
    ) -> list[tuple[Any, ...]]:
        """(sku, product id, base copy, translations, variant id, version number, text,
        language) of every product, or of these (_slots_from), followed on PostgreSQL by
        the versions of the rows read (_SLOT_VERSIONS)."""
        connection = connections[Variant.objects.db]
        joins, params = self._slots_from(block, product_ids)
        # The translations only where a language is asked: the default block needs none.
        translations = "p.translations" if block.asked else "NULL"
        versions = f", {_SLOT_VERSIONS}" if connection.vendor == "postgresql" else ""
        sql = (
            f"SELECT p.sku, p.id, p.description, {translations}, v.id, pv.number, v.text, "
            f"v.language{versions} {joins}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows

    def _versions(self, block: _Block, buckets: list[int]) -> list[str | None] | None:
        """Each bucket's digest of the rows it would be read from now (the other
        buckets' digests mean nothing), or None where the database keeps no row
        versions (SQLite: a bucket due by age is then read again whole).

        A bucket is read from its products' rows and their published variants
        (_rows_of) and from their slots' running experiments with their shares, arms and
        texts (_experiments). The digest is of those rows' versions, not their content:
        PostgreSQL's (xmin, ctid), which any write changes, the application's or not, in
        its own transaction or not, and which never come back. Here the same two
        queries read only the versions, of the same rows as the bucket's last read
        (its experiments in the languages that read took, `block.stored`): 16 ms
        against 22 ms for reading the bucket again at full size (bench/delivery.py),
        the same joins on rows gone cold in PostgreSQL's cache. The digest a bucket keeps was
        taken from the very rows it was read from (_digests), so a write after that read
        moves it however fast it came.
        """
        connection = connections[Variant.objects.db]
        slots = block.slots
        if connection.vendor != "postgresql" or slots is None:
            return None
        versions: _Versions = []
        # The buckets' products, by the stored languages their last read took.
        by_stored: dict[tuple[str, ...], list[int]] = {}
        for b in buckets:
            by_stored.setdefault(block.stored[b], []).extend(
                slots[sku].product_id for sku in block.skus[b]
            )
        product_ids = [pk for ids in by_stored.values() for pk in ids]
        if not product_ids:
            return _digests(versions, block, block.stored)
        joins, params = self._slots_from(block, product_ids)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT p.id, {_SLOT_VERSIONS} {joins}", params)
            versions += cursor.fetchall()
            for stored, ids in by_stored.items():
                if not stored or not ids:
                    continue
                joins, params = _experiments_from(
                    block.prompt_id, block.segment_id, list(stored), ids
                )
                cursor.execute(f"SELECT e.product_id, {_EXPERIMENT_VERSIONS} {joins}", params)
                versions += cursor.fetchall()
        return _digests(versions, block, block.stored)

    def _served(
        self, block: _Block, rows: list[tuple[Any, ...]], product_ids: list[int] | None = None
    ) -> _Read:
        """What each product's slot serves in the block's language, from _rows_of's
        rows (of every product, or of these) and the running experiments of the slots
        chosen: sku -> its slot's fields (a slot read again with the same ones is kept,
        and so is its rendered answer); with the stored languages whose experiments were
        read, and the versions of every row read (on PostgreSQL).

        1. Each product's copy in the block's language (_choose_language).
        2. The experiments of the slots chosen, in one query: only in the languages
           those slots are stored in (mostly one), not every one _rows_of reads.
        3. Each slot with its experiment, if one runs.
        """
        products: dict[str, tuple[int, str, object]] = {}
        live: dict[str, dict[str, _Copy]] = {}
        postgresql = connections[Variant.objects.db].vendor == "postgresql"
        versions = [(row[1], row[8]) for row in rows] if postgresql else None
        for sku, product_id, description, translations, variant_id, number, text, tag, *_ in rows:
            products[sku] = (product_id, description, translations)
            if variant_id is not None:
                live.setdefault(sku, {})[tag or ""] = _Copy(variant_id, number, text, tag or "")
        wanted = [block.asked] if block.asked else []
        chosen: dict[str, tuple[int, str, dict[str, object], _Choice]] = {}
        for sku, (product_id, description, translations) in products.items():
            if isinstance(translations, str):  # SQLite, and jsonb read as text
                translations = json.loads(translations)
            assert translations is None or isinstance(translations, dict)
            choice = _choose_language(
                default=block.language,
                wanted=wanted,
                live=live.get(sku, {}),
                translations=translations or {},
                description=description,
            )
            chosen[sku] = (product_id, description, translations or {}, choice)
        stored = sorted({c[3][0].stored for c in chosen.values() if c[3][0] is not None})
        experiments = (
            _experiments(
                block.prompt_id,
                block.segment_id,
                tags=stored,
                product_ids=product_ids,
                versions=versions,
            )
            if stored
            else {}
        )
        served: dict[str, _Served] = {}
        for sku, (product_id, description, translations, choice) in chosen.items():
            copy, tag, reason, fallback, text = choice
            trial = (
                _trial(
                    experiments,
                    product_id,
                    copy,
                    default=block.language,
                    reason=reason,
                    translations=translations,
                    description=description,
                )
                if experiments
                else None
            )
            served[sku] = (
                product_id,
                description,
                copy.variant_id if copy else None,
                copy.prompt_version if copy else None,
                text,
                tag,
                reason,
                fallback,
                trial,
            )
        return _Read(served, tuple(stored), versions)

    def _slot(
        self,
        product_id: int,
        description: str,
        variant_id: int | None,
        prompt_version: int | None,
        text: str,
        language: str,
        language_reason: str,
        fallback_reason: str | None,
        trial: _Trial | None,
    ) -> _Slot:
        """A slot from what it serves (_Served)."""
        # Every block holds each product's base copy: share one string among them.
        if self._descriptions.get(product_id) != description:
            self._descriptions[product_id] = description
        return _Slot(
            product_id,
            self._descriptions[product_id],
            variant_id,
            prompt_version,
            text,
            language,
            language_reason,
            fallback_reason,
            trial,
        )

    def _load_block(
        self,
        key: tuple[str, str, str],
        prompt: tuple[int, int, str],
        segment: Segment,
        bucket_epochs: list[_Epoch],
        now: float,
        drops: int,
    ) -> _Block | None:
        """Read the whole block (under its own lock) and hold it, unless everything was
        dropped meanwhile: then None, and the caller reads the database this time."""
        limit = settings.DELIVERY_SNAPSHOT_MAX_ROWS
        # Bucket b is deemed loaded b/BUCKETS of the maximum age earlier than it was,
        # so that one bucket comes due at a time (see block()).
        spread = settings.DELIVERY_SNAPSHOT_MAX_AGE_SECONDS / BUCKETS
        loaded = [now - b * spread for b in range(BUCKETS)]
        block = _Block(
            prompt[0],
            key[0],
            segment.pk,
            segment.slug,
            None,
            list(bucket_epochs),
            loaded,
            now,
            now,
            prompt[2],
            key[2],
        )
        if Product.objects.count() <= limit:
            read = self._served(block, self._rows_of(block))
            block.slots = {sku: self._slot(*rest) for sku, rest in read.served.items()}
            block.index()
            block.stored = [read.stored] * BUCKETS
            block.digests = _digests(read.versions, block, block.stored) or [None] * BUCKETS
        with self._lock:
            if self._drops != drops:
                return None
            old = self._blocks.pop(key, None)
            if old is not None:
                self._rows -= len(old.slots or ())
            self._blocks[key] = block
            self._rows += len(block.slots or ())
            if settings.DELIVERY_SNAPSHOT_BACKGROUND_CHECKS:
                self._start_checker()
            while self._rows > limit and len(self._blocks) > 1:
                _key, evicted = self._blocks.popitem(last=False)
                self._rows -= len(evicted.slots or ())
        self._settle()
        return block

    def _settle(self) -> None:
        """Once this process holds more than DELIVERY_SNAPSHOT_FREEZE_ROWS slots, move
        every object tracked now (the snapshot's slots and their experiments among them)
        into the collector's permanent generation, after collecting the young ones.

        A slot is a tuple of tuples, strings and numbers: it holds no reference cycle,
        so it is freed by reference counting when its block goes, frozen or not. Only
        cyclic garbage that is still in the old generation at that moment is never
        collected: a few objects a read, against a full collection of every slot
        (1.35 s at 420,000 slots with experiments) that blocked the worker each time
        its old generation grew by a quarter, and slowed every block read by as much.
        """
        if self._rows > settings.DELIVERY_SNAPSHOT_FREEZE_ROWS:
            gc.collect(1)
            gc.freeze()

    def _reload_buckets(
        self, block: _Block, buckets: list[int], epochs: list[_Epoch], now: float
    ) -> None:
        """Read these buckets' slots again (their epochs were read before this)."""
        slots = block.slots
        assert slots is not None  # block() loads a block too big to hold whole instead
        held = [sku for b in buckets for sku in block.skus[b]]
        product_ids = [slots[sku].product_id for sku in held]
        read = (
            self._served(block, self._rows_of(block, product_ids), product_ids)
            if held
            else _Read(
                {}, (), [] if connections[Variant.objects.db].vendor == "postgresql" else None
            )
        )
        digests = _digests(read.versions, block, [read.stored] * BUCKETS)
        found: dict[str, _Slot] = {}
        for sku, row in read.served.items():
            slot = slots.get(sku)
            # Mostly nothing changed (a bucket read again for its age): keep the slot
            # and its rendered answer rather than render it again.
            if slot is None or tuple(slot) != row:
                slot = self._slot(*row)
            found[sku] = slot
        change = 0
        for sku in held:
            if sku not in found:  # the product was deleted or its SKU changed
                del slots[sku]
                change -= 1
        for sku, slot in found.items():
            change += sku not in slots
            slots[sku] = slot
        with self._lock:
            self._rows += change
        for b in buckets:
            block.skus[b] = []
        for sku, slot in found.items():
            block.skus[slot.product_id % BUCKETS].append(sku)
        for b in buckets:
            block.epochs[b] = epochs[b]
            block.loaded[b] = now
            block.digests[b] = digests[b] if digests is not None else None
            block.stored[b] = read.stored
        self._settle()


snapshot = Snapshot()


# ----------------------------------------------------------------------------------
# Resolving live copy


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
        return segment_for(customer.segment_attributes(), snapshot.segments()), customer
    segment = Segment.objects.filter(slug=segment_slug).first()
    if segment is None:
        raise DeliveryError(f"Unknown segment '{segment_slug}'")
    return segment, None


def _all_found(found: list[Live | None]) -> TypeGuard[list[Live]]:
    """The snapshot could say for every product asked for."""
    return None not in found


def live_from_snapshot(
    prompt_slug: str, skus: list[str], segment_slug: str, asked: str = "", visitor: str = ""
) -> list[Live] | None:
    """The live copy of these products for a segment, for readers who ask for the
    language `asked` ("" for none), from this process's snapshot, or None when it cannot
    say (an unknown name, a block too big to hold): the caller then asks the database,
    which also names what is unknown. `visitor` picks the arms of running experiments."""
    block = snapshot.block(prompt_slug, segment_slug, asked)
    if block is None:
        return None
    found = [block.live(sku, visitor) for sku in skus]
    return found if _all_found(found) else None


class _Own(NamedTuple):
    """A customer's own published variant, as their answer needs it."""

    variant_id: int
    prompt_version: int
    text: str
    language: str


def _customer_with_own(
    prompt_id: int, skus: list[str], customer_id: str
) -> tuple[Customer, dict[int, _Own]] | None:
    """The customer and their own published variants of the prompt for these products
    (by product id), in one query; None for an unknown customer.

    The customer's row LEFT JOINs their variants, so a customer with none still comes
    back (one row of NULLs). Every table is read by an index (EXPLAIN at 1,000,000
    customers and 520,000 variants, bench/delivery.py prints it): the customer by their
    unique external id, their variants by the customer's foreign key (a handful a
    customer), a variant's product and version by primary key. Several messages
    (purposes) may be live for one product: rows come oldest first, so the newest wins.
    """
    connection = connections[Variant.objects.db]
    sql = (
        "SELECT c.id, c.external_id, c.language, c.attributes, "
        "v.product_id, v.id, pv.number, v.text, v.language "
        f"FROM {Customer._meta.db_table} c "
        f"LEFT JOIN {Variant._meta.db_table} v ON v.customer_id = c.id "
        "AND v.prompt_id = %s AND v.status = %s "
        f"AND v.product_id IN (SELECT p.id FROM {Product._meta.db_table} p "
        f"WHERE p.sku IN ({', '.join(['%s'] * len(skus))})) "
        f"LEFT JOIN {PromptVersion._meta.db_table} pv ON pv.id = v.prompt_version_id "
        "WHERE c.external_id = %s "
        "ORDER BY v.published, v.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [prompt_id, Variant.Status.PUBLISHED, *skus, customer_id])
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    if not rows:
        return None
    pk, external_id, language, attributes = rows[0][:4]
    if isinstance(attributes, str):  # SQLite, and jsonb read as text
        attributes = json.loads(attributes)
    customer = Customer(pk=pk, external_id=external_id, language=language, attributes=attributes)
    own = {
        product_id: _Own(variant_id, number, text, tag)
        for *_customer, product_id, variant_id, number, text, tag in rows
        if variant_id is not None
    }
    return customer, own


def _live_for_customer(
    prompt_slug: str, skus: list[str], customer_id: str, asked: str = "", visitor: str = ""
) -> list[Live] | None:
    """The live copy of these products for a customer with one query (the customer and
    their own published variants, _customer_with_own), the rest from the snapshot; None
    when it cannot say (an unknown name, the holdout, no matching segment, a block too
    big to hold): the caller then asks the database, which also names what is unknown.

    1. The holdout is decided from the id asked for (external ids match exactly, so it
       is the customer's), before any query: the control group's base copy is chosen
       for their language without the variants, on the database path (a tenth of
       customer requests or so), which also answers 404 for an unknown id.
    2. The customer and their own variants, in one query.
    3. Their segment from their attributes, and that segment's block in the language
       asked, else the customer's own; each product's slot from it.
    4. A customer's own variant replaces the segment's (and its experiment: one-to-one
       copy is in none), in its own language, as the database path answers.
    """
    names = snapshot.names()
    prompt = names.prompts.get(prompt_slug)
    if prompt is None or _in_holdout(prompt_slug, prompt[1], customer_id):
        return None
    with_own = _customer_with_own(prompt[0], skus, customer_id)
    if with_own is None:
        return None
    customer, own = with_own
    segment = segment_for(customer.segment_attributes(), list(names.segments.values()))
    asked = asked or customer.language  # a customer reads their own language
    block = snapshot.block(prompt_slug, segment.slug, asked) if segment is not None else None
    found = [block.live(sku, visitor) for sku in skus] if block is not None else [None]
    if not _all_found(found):
        return None
    for live in found:
        live.customer_id, live.customer = customer.pk, customer.external_id
        variant = own.get(live.product_id)
        if variant is not None:
            live.leave_experiment()
            live.variant_id, live.prompt_version = variant.variant_id, variant.prompt_version
            live.text, live.source, live.fallback_reason = variant.text, "customer", None
            live.language, live.language_reason = variant.language or prompt[2], "exact"
    return found


def rendered_from_snapshot(
    prompt_slug: str, sku: str, segment_slug: str, asked: str = "", visitor: str = ""
) -> tuple[bytes, str] | None:
    """One product's answer for a segment as the API sends it, (body, ETag), from the
    snapshot; None as for live_from_snapshot."""
    block = snapshot.block(prompt_slug, segment_slug, asked)
    return None if block is None else block.rendered(sku, visitor)


def live_copy(
    *,
    prompt_slug: str,
    skus: list[str],
    segment_slug: str | None = None,
    customer_id: str | None = None,
    pinned_variant_id: int | None = None,
    wanted: list[str] | None = None,
    visitor: str = "",
) -> list[Live]:
    """Resolve the live copy of each product, in the order asked, with a constant
    number of queries however many products there are.

    `wanted` are the languages the reader asked for (language= or Accept-Language),
    most wanted first; a customer is read in their own language unless one is asked.
    `visitor` (the client's anonymous id; "" for none) picks the arm of a slot whose
    experiment runs (_serve_arm); without one, the slot's published variant serves.

    0. With no pin and at most one language asked: from the snapshot (for a customer,
       their own variants from the database), unless it cannot say.
    1. Look up the prompt, the products and the audience (404 for any unknown one).
    2. A pinned variant must be copy of the slot asked for (prompt, product, and the
       segment or customer) and have been live.
    3. Customers in the holdout get the base copy, in their language where the catalog
       has it.
    4. Otherwise fetch every published variant of these slots in one query; take the
       customer's own, else the segment's in the reader's language (_choose_language).
    5. Where that segment's slot runs an experiment (one more query, for them all),
       serve the visitor's arm as the snapshot does.
    """
    wanted = list(wanted or [])
    # The snapshot holds one block per language asked: one tag, or none.
    if pinned_variant_id is None and len(wanted) <= 1 and wanted != ["*"]:
        asked = wanted[0] if wanted else ""
        if customer_id is not None:
            snapshot_copy = _live_for_customer(prompt_slug, skus, customer_id, asked, visitor)
        elif segment_slug is not None:
            snapshot_copy = live_from_snapshot(prompt_slug, skus, segment_slug, asked, visitor)
        else:
            snapshot_copy = None  # no audience: the database path names what is missing
        if snapshot_copy is not None:
            return snapshot_copy
    prompt = _prompt(prompt_slug)
    products = {p.sku: p for p in Product.objects.filter(sku__in=skus)}
    missing = [sku for sku in skus if sku not in products]
    if missing:
        raise DeliveryError("Unknown product " + ", ".join(f"'{s}'" for s in missing))
    segment, customer = _audience(segment_slug=segment_slug, customer_id=customer_id)
    if customer is not None and not wanted:
        wanted = [customer.language]

    def answer(
        product: Product,
        variant: Variant | None,
        source: str,
        reason: str | None = None,
        **language: str,
    ) -> Live:
        return _live(prompt, product, segment, customer, variant, source, reason, **language)

    if pinned_variant_id is not None:
        product = products[skus[0]]
        variant = (
            Variant.objects.filter(pk=pinned_variant_id, prompt=prompt, product=product)
            .select_related("prompt_version")
            .first()
        )
        # The pin must be copy of the slot asked for: a customer's own message only for
        # that customer, a segment's variant only for that segment (named, or the
        # customer's). Otherwise it reads as unknown: a read token cannot probe ids.
        if variant is None:
            in_slot = False
        elif variant.customer_id is not None:
            in_slot = customer is not None and variant.customer_id == customer.pk
        else:
            in_slot = segment is not None and variant.segment_id == segment.pk
        if variant is None or not in_slot:
            who = f"customer '{customer_id}'" if customer_id else f"segment '{segment_slug}'"
            raise DeliveryError(
                f"Variant {pinned_variant_id} is not copy of prompt '{prompt.slug}' "
                f"for product '{product.sku}' and {who}"
            )
        # A challenger serving in an experiment (testing) is live copy too.
        if variant.status not in (
            Variant.Status.PUBLISHED,
            Variant.Status.TESTING,
            Variant.Status.RETIRED,
        ):
            raise DeliveryError(
                f"Variant {pinned_variant_id} was never live (it is {variant.get_status_display()})"
            )
        return [answer(product, variant, "pinned")]

    def choose(product: Product, live: dict[str, _Copy]) -> _Choice:
        return _choose_language(
            default=prompt.default_language,
            wanted=wanted,
            live=live,
            translations=product.translations or {},
            description=product.description,
        )

    if customer is not None and in_holdout(prompt, customer):
        results = []
        for sku in skus:
            _v, tag, why, _f, text = choose(products[sku], {})
            results.append(
                answer(
                    products[sku],
                    None,
                    "base_copy",
                    "holdout",
                    language=tag,
                    language_reason=why,
                    text=text,
                )
            )
        return results

    audience = Q(segment=segment) if segment is not None else Q(pk__in=[])
    if customer is not None:
        audience |= Q(customer=customer)
    own: dict[int, Variant] = {}
    found: dict[int, dict[str, Variant]] = {}
    for variant in (
        Variant.objects.published()
        .filter(audience, prompt=prompt, product__in=products.values())
        .select_related("prompt_version")
        .order_by("published", "id")  # the newest of a customer's messages wins
    ):
        if variant.customer_id:
            own[variant.product_id] = variant
        else:
            found.setdefault(variant.product_id, {})[variant.language] = variant

    chosen = {}
    for product in products.values():
        by_language = found.get(product.pk, {})
        copies = {
            tag: _Copy(v.pk, v.prompt_version.number, v.text, tag) for tag, v in by_language.items()
        }
        chosen[product.pk] = choose(product, copies)
    experiments: _Experiments = {}
    if segment is not None and any(
        chosen[p.pk][0] is not None and p.pk not in own for p in products.values()
    ):
        experiments = _experiments(
            prompt.pk, segment.pk, product_ids=[p.pk for p in products.values()]
        )

    results = []
    for sku in skus:
        product = products[sku]
        if product.pk in own:
            results.append(answer(product, own[product.pk], "customer", language_reason="exact"))
            continue
        copy, tag, why, fallback, text = chosen[product.pk]
        if copy is not None:
            variant = next(v for v in found[product.pk].values() if v.pk == copy.variant_id)
            live = answer(product, variant, "segment", language=tag, language_reason=why)
            trial = _trial(
                experiments,
                product.pk,
                copy,
                default=prompt.default_language,
                reason=why,
                translations=product.translations or {},
                description=product.description,
            )
            if trial is not None:
                _serve_arm(live, trial, visitor)
            results.append(live)
            continue
        if customer is not None and segment is None:
            fallback = "no_matching_segment"
        results.append(
            answer(
                product,
                None,
                "base_copy",
                fallback,
                language=tag,
                language_reason=why,
                text=text,
            )
        )
    return results
