"""Telling a message's caller what became of it: a signed POST to its callback URL,
after commit, from a Celery task with retries (generation.tasks.message_callback).

A callback URL is checked when the message is asked for and again when it is called:
http(s) only, and (unless MESSAGE_CALLBACK_ALLOW_PRIVATE) to public addresses only,
connecting to the address that was checked (no second resolution, no redirects).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import urllib.parse

import httpx2 as httpx
from django.conf import settings
from django.db import transaction

from generation.models import Variant
from hyperpers.logs import redact

logger = logging.getLogger(__name__)

CALLBACK_TIMEOUT_SECONDS = 10


def message_notify_on_commit(variant: Variant) -> None:
    """A one-to-one message with a callback URL: tell the caller, after commit, what
    became of it (published, rejected or failed)."""
    if not variant.callback_url:
        return
    from generation.tasks import message_callback  # tasks imports this module

    pk, status = variant.pk, variant.status
    transaction.on_commit(lambda: message_callback.delay(pk, status))


def message_payload(variant: Variant) -> dict:
    """What a caller learns about its message: the text only once it is published."""
    published = variant.status == Variant.Status.PUBLISHED
    return {
        "id": variant.pk,
        "status": variant.status,
        "prompt": variant.prompt.slug,
        "prompt_version": variant.prompt_version.number,
        "product": variant.product.sku,
        "customer": variant.customer.external_id if variant.customer else None,
        "purpose": variant.purpose,
        "language": variant.language,
        "text": variant.text if published else None,
        "published": variant.published.isoformat() if published and variant.published else None,
        "review_policy": variant.prompt.review_policy,
        "policy_outcome": variant.policy_outcome or None,
        "checks_failed": variant.checks_failed,
        "error": variant.error or None,
    }


class CallbackFailed(Exception):
    """The callback URL did not take the notification; worth trying again."""


class CallbackRefused(ValueError):
    """A callback URL we will not call: not http(s), or (unless allowed) an address on
    this machine or a private network."""


# IPv6 forms that carry an IPv4 address a gateway or the host would reach: NAT64
# (64:ff9b::/96, 64:ff9b:1::/48), 6to4 (2002::/16), IPv4-compatible (::a.b.c.d) and the
# deprecated site-local fec0::/10. ipaddress counts several of them as global.
_REFUSED_V6 = tuple(
    ipaddress.ip_network(n)
    for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96", "fec0::/10")
)


def address_public(address: str) -> bool:
    """A global unicast address that embeds no other: a callback may go there."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_public(str(ip.ipv4_mapped))
        if any(ip in network for network in _REFUSED_V6):
            return False
    return ip.is_global and not ip.is_multicast


def callback_url_check(url: str) -> list[str]:
    """The addresses `url` resolves to, once checked: https (or http where allowed),
    and unless MESSAGE_CALLBACK_ALLOW_PRIVATE no loopback, private, link-local or
    reserved address (nor an IPv6 form embedding one), so a token cannot point our
    workers at internal services. The caller connects to these addresses, not to the
    name again: a second lookup could answer otherwise (DNS rebinding)."""
    parts = urllib.parse.urlsplit(url)
    schemes = ("https", "http") if settings.MESSAGE_CALLBACK_ALLOW_HTTP else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise CallbackRefused(f"{url}: callbacks go to {' or '.join(schemes)} URLs only")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CallbackFailed(f"{url}: cannot resolve {parts.hostname} ({exc})") from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    if not settings.MESSAGE_CALLBACK_ALLOW_PRIVATE:
        for address in addresses:
            if not address_public(address):
                raise CallbackRefused(f"{url}: {parts.hostname} is {address}, not a public address")
    return addresses


def callback_signature(body: bytes) -> str:
    """HMAC-SHA256 of the body with MESSAGE_CALLBACK_SECRET: receivers check it to know
    the callback is ours."""
    digest = hmac.new(settings.MESSAGE_CALLBACK_SECRET.encode(), body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def message_callback_send(*, variant_id: int) -> int | None:
    """POST the message's payload to its callback URL, signed (X-Hyperpers-Signature);
    the status code, or None when there is nothing to send or the URL is refused.
    Raises CallbackFailed on a network error or a 5xx/429."""
    variant = (
        Variant.objects.select_related("prompt", "prompt_version", "product", "customer")
        .filter(pk=variant_id)
        .first()
    )
    if variant is None or not variant.callback_url:
        return None
    try:
        addresses = callback_url_check(variant.callback_url)
    except CallbackRefused as exc:
        logger.warning("callback for message %s not sent: %s", variant_id, redact(str(exc)))
        return None
    body = json.dumps(
        {"event": f"message.{variant.status}", "message": message_payload(variant)}
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Hyperpers-callback/1",
        "X-Hyperpers-Signature": callback_signature(body),
    }
    shown = redact(variant.callback_url)
    try:
        status = _callback_post(variant.callback_url, addresses[0], body=body, headers=headers)
    except httpx.HTTPError as exc:
        raise CallbackFailed(f"{shown}: {redact(str(exc))}") from exc
    if status >= 500 or status == 429:
        raise CallbackFailed(f"{shown}: HTTP {status}")
    if status >= 300:
        logger.warning("callback for message %s answered HTTP %s; not retried", variant_id, status)
    return status


def _callback_post(url: str, address: str, *, body: bytes, headers: dict) -> int:
    """POST to `url` at the checked `address`: the connection goes to that address (no
    second lookup), the Host header and the TLS name (SNI and certificate) stay the URL's.
    No redirects: one would turn the POST into a GET somewhere we were not told to call.
    Userinfo in the URL is sent as basic auth by the client, never logged."""
    parts = urllib.parse.urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host + (f":{parts.port}" if parts.port else "")
    target = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    auth = (
        (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
        if parts.username
        else None
    )
    hostname = parts.hostname or ""  # callback_url_check refused a URL without one
    name = f"[{hostname}]" if ":" in hostname else hostname
    host_header = name + (f":{parts.port}" if parts.port else "")
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    with httpx.Client(
        timeout=CALLBACK_TIMEOUT_SECONDS, follow_redirects=False, trust_env=False
    ) as client:
        response = client.post(
            target,
            content=body,
            headers={**headers, "Host": host_header},
            auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
            extensions=extensions,
        )
    return response.status_code
