"""API tokens for delivery systems: authentication, what each kind may do, rate limits.

A token is `hp_<kind letter>_<secret>`; only its SHA-256 is stored, so a stolen
database does not leak working keys, and the admin shows the key once, on creation.
A token is not a user: requests made with one carry a `TokenClient` as
`request.user`, so views written for people (the review UI, the workflow API) never
mistake a web shop for a copywriter.

Each web process remembers a token it has found for TOKEN_CACHE_SECONDS, so the live
endpoint does not look it up on every request: a token revoked on the tokens page or
in the admin, or given a new rate limit, keeps its old state for up to that long in
processes that used it just before. Unknown and revoked tokens are never remembered:
a new token works at once.

A token's last use (`last_used`, on the tokens page) is written at most once a minute
per token, never once a request: see token_used.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import redis
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from review.delivery import redis_round_trip
from review.models import ApiToken

KEYWORD = b"bearer"
PREFIX = "hp_"
TOKEN_CACHE_SECONDS = 5.0
TOKEN_CACHE_MAX = 1000
# Rate limits: a lease is at most one LEASE_SHARE-th of a token's minute, and at most
# LEASE_MAX requests (see token_rate_wait).
LEASE_SHARE = 1000
LEASE_MAX = 100
# The request attribute where the live endpoint's fast path leaves the rate check.
CHECKED_ATTRIBUTE = "hyperpers_token_rate_wait"
# key hash -> (monotonic time it expires, the token); shared by a process's threads.
_token_cache: dict[str, tuple[float, ApiToken]] = {}
# How stale a token's `last_used` may be: the page shows minutes, not requests.
LAST_USED_EVERY_SECONDS = 60
# key hash -> monotonic time this process last wrote (or found fresh) its last use.
_last_used_noted: dict[str, float] = {}

logger = logging.getLogger(__name__)


def token_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_create(
    *, name: str, kind: str, rate_per_minute: int | None = None, created_by=None
) -> tuple[ApiToken, str]:
    """Create a token and return it with its key, which is never stored nor shown again."""
    key = f"{PREFIX}{kind[0]}_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        name=name,
        kind=kind,
        prefix=key[:10],
        key_hash=token_digest(key),
        created_by=created_by,
    )
    if rate_per_minute is not None:
        token.rate_per_minute = rate_per_minute
    token.full_clean()
    token.save()
    return token, key


def api_token_revoke(*, token: ApiToken) -> bool:
    """Revoke the token: every request with it is refused (401) from now on, after at
    most TOKEN_CACHE_SECONDS in the web processes that used it just before. False when
    it was revoked already (the first revocation's time is kept)."""
    revoked = ApiToken.objects.filter(pk=token.pk, revoked__isnull=True).update(
        revoked=timezone.now()
    )
    _token_cache.pop(token.key_hash, None)
    token.refresh_from_db(fields=["revoked"])
    return bool(revoked)


def token_used(token: ApiToken) -> None:
    """Record that the token was used now, cheaply: at most one UPDATE a minute per token
    in each process (this process's memory), and that UPDATE writes the row only when
    its `last_used` is a minute old (so several processes still write it about once a
    minute). A database that refuses is logged: serving copy matters more."""
    now = time.monotonic()
    noted = _last_used_noted.get(token.key_hash)
    if noted is not None and now - noted < LAST_USED_EVERY_SECONDS:
        return
    if len(_last_used_noted) >= TOKEN_CACHE_MAX:
        _last_used_noted.clear()
    _last_used_noted[token.key_hash] = now
    stamp = timezone.now()
    stale = Q(last_used__isnull=True) | Q(
        last_used__lt=stamp - timedelta(seconds=LAST_USED_EVERY_SECONDS)
    )
    try:
        ApiToken.objects.filter(stale, pk=token.pk).update(last_used=stamp)
    except DatabaseError:
        logger.warning("could not record the last use of API token %s", token.pk, exc_info=True)


@dataclass(frozen=True)
class TokenClient:
    """`request.user` for a request made with an API token: authenticated, nobody's account."""

    token: ApiToken

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    @property
    def pk(self) -> None:
        return None

    def __str__(self) -> str:
        return f"API token {self.token.name}"

    def has_perm(self, perm: str, obj=None) -> bool:
        return False

    def has_perms(self, perms, obj=None) -> bool:
        return False

    @property
    def groups(self):  # a token belongs to no group: every group check says no
        from django.contrib.auth.models import Group

        return Group.objects.none()


def active_token(key_hash: str) -> ApiToken:
    """The active token of this hash, from this process's memory if it was found in the
    last TOKEN_CACHE_SECONDS (see the module's docstring for what that delays); its
    use is recorded (token_used)."""
    now = time.monotonic()
    cached = _token_cache.get(key_hash)
    if cached is not None and cached[0] > now:
        token_used(cached[1])
        return cached[1]
    token = ApiToken.objects.filter(key_hash=key_hash).first()
    if token is None:
        raise exceptions.AuthenticationFailed("Unknown API token.")
    if not token.is_active:
        _token_cache.pop(key_hash, None)
        raise exceptions.AuthenticationFailed(f"API token '{token.name}' was revoked.")
    if len(_token_cache) >= TOKEN_CACHE_MAX:
        _token_cache.clear()
    _token_cache[key_hash] = (now + TOKEN_CACHE_SECONDS, token)
    token_used(token)
    return token


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer hp_...`; anything else is left to the next authenticator."""

    def authenticate(self, request: Request) -> tuple[TokenClient, ApiToken] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != KEYWORD:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Authorization header must be 'Bearer <token>', with no spaces in the token."
            )
        try:
            key = header[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed(
                "The token has characters it cannot have."
            ) from exc
        token = active_token(token_digest(key))
        return TokenClient(token), token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def request_token(request: Request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


def is_person(request: Request) -> bool:
    user = request.user
    return bool(user and user.is_authenticated and not isinstance(user, TokenClient))


class CanReadLive(BasePermission):
    """Live copy: read tokens, and people signed in (to preview what shops get)."""

    message = "Live copy needs a read token (write tokens only post events and imports)."

    def has_permission(self, request: Request, view) -> bool:
        token = request_token(request)
        if token is not None:
            return token.kind == ApiToken.Kind.READ
        return is_person(request)


class CanPostEvents(BasePermission):
    """Engagement: write tokens only; people never post engagement by hand."""

    message = "Posting engagement needs a write token."

    def has_permission(self, request: Request, view) -> bool:
        token = request_token(request)
        return token is not None and token.kind == ApiToken.Kind.WRITE


@dataclass
class _Lease:
    """Requests of one token this process may still serve in the current minute."""

    window: int
    left: int


# key hash -> lease; shared by a process's threads, under _lease_lock.
_leases: dict[str, _Lease] = {}
_lease_lock = threading.Lock()


def lease_size(rate_per_minute: int) -> int:
    """How many requests a process takes from Redis at once: one (exact) for most
    tokens; up to LEASE_MAX for tokens allowed thousands a minute."""
    return max(1, min(LEASE_MAX, rate_per_minute // LEASE_SHARE))


def token_rate_wait(token: ApiToken) -> float | None:
    """Count one request of the token against its limit a minute, across every web
    process: None if it may go ahead, else the seconds until its window resets.

    A fixed window a minute, counted in Redis (INCRBY on the window's key). A process
    takes `lease_size` requests at a time and serves them from memory, so a busy
    token costs one round trip per lease rather than per request; a lease not used
    up by the end of its minute is lost, which refuses at most LEASE_MAX - 1
    requests a process and minute too early (one in LEASE_SHARE of the limit).
    Redis unreachable: the request goes ahead (delivery outlives Redis) and it is logged.
    """
    now = time.time()
    window = int(now // 60)
    with _lease_lock:
        lease = _leases.get(token.key_hash)
        if lease is not None and lease.window == window and lease.left > 0:
            lease.left -= 1
            return None
    size = lease_size(token.rate_per_minute)
    # Keyed by the hash, not the row id: ids come back after a database reset while
    # Redis still holds the old counts.
    key = f"hyperpers:rate:{token.key_hash}:{window}"

    def count(client: redis.Redis) -> list:
        pipe = client.pipeline(transaction=False)
        pipe.incrby(key, size)
        pipe.expire(key, 120)
        return pipe.execute()

    counted = redis_round_trip(f"the rate limit of API token '{token.name}'", count)
    if counted is None:
        return None
    total = counted[0]
    granted = max(0, min(size, token.rate_per_minute - (total - size)))
    if granted == 0:
        return max(1.0, (window + 1) * 60 - now)
    with _lease_lock:
        lease = _leases.get(token.key_hash)
        if lease is not None and lease.window == window:
            lease.left += granted - 1
        else:
            if len(_leases) >= TOKEN_CACHE_MAX:
                _leases.clear()
            _leases[token.key_hash] = _Lease(window, granted - 1)
    return None


class TokenRateThrottle(BaseThrottle):
    """Each token's requests a minute (token_rate_wait). A DRF throttle: requests
    made by people are not throttled here.

    The live endpoint's fast path counts the request before it hands it to DRF, and
    leaves what it found on the request (CHECKED_ATTRIBUTE), so it is counted once.
    """

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view) -> bool:
        token = request_token(request)
        if token is None:
            return True
        if hasattr(request._request, CHECKED_ATTRIBUTE):
            self._wait = getattr(request._request, CHECKED_ATTRIBUTE)
        else:
            self._wait = token_rate_wait(token)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait
