"""The offline writer over HTTP, through the official openai client. No database.

The client never retries (max_retries=0), so each test sees what the server sent. The
fixtures are here; the test modules import the helpers and constants below, as other
tests import from tests/conftest.py.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest

from hyperpers.offline_writer import (
    OfflineWriterServer,
    serve_in_thread,
)

KEY = "test-key"
NAME = "Chaz Kangeroo Hoodie"
DESCRIPTION = (
    "Ideal for cold-weather training, the Chaz Hoodie promises superior warmth. "
    "Thick material blocks out the wind as ribbed cuffs seal in body heat. "
    "Machine wash/dry."
)


@pytest.fixture
def writer():
    server, _base_url = serve_in_thread(api_key=KEY, models=["offline-writer-1", "other"])
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(writer) -> openai.OpenAI:
    return openai.OpenAI(base_url=writer.base_url, api_key=KEY, max_retries=0)


def _data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "brand": "Luma",
        "channel": "product_page",
        "language": "en",
        "max_length": 600,
        "product": {
            "sku": "MH01",
            "name": NAME,
            "category": "Men",
            "subcategory": "Hoodies",
            "description": DESCRIPTION,
            "attributes": {"color": "gray"},
        },
        "audience": {
            "kind": "segment",
            "name": "Hoodies × high value",
            "rules": {"preferred_subcategory": "Hoodies", "value_tier": "high"},
            "member_count": 120,
            "summary": {"discount_sensitivity": {"low": 0.7, "high": 0.3}},
        },
        "protected_terms": ["Chaz Hoodie", "Luma"],
        "banned_phrases": [],
    }
    data.update(overrides)
    return data


def _messages(data: dict[str, Any]) -> list[dict[str, str]]:
    block = json.dumps(data, ensure_ascii=False, indent=1)
    return [
        {"role": "system", "content": "Plain and warm.\n\nOutput format: copy, then Rationale."},
        {"role": "user", "content": f"Rewrite the product.\n\n<data>\n{block}\n</data>"},
    ]


SCHEMA = {"type": "json_schema", "json_schema": {"name": "c", "schema": {"type": "object"}}}


@pytest.fixture
def start_writer():
    """Start writers with the given settings (no api key); stop them all afterwards."""
    servers: list[OfflineWriterServer] = []

    def start(**options: Any) -> OfflineWriterServer:
        server, _base_url = serve_in_thread(**options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _client(server: OfflineWriterServer, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, **options)


def _complete(client: openai.OpenAI) -> Any:
    return client.chat.completions.create(model="offline-writer-1", messages=_messages(_data()))


def _control(
    server: OfflineWriterServer, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """(status, JSON) of a request to a control endpoint, as another process would send it."""
    request = urllib.request.Request(
        server.base_url.removesuffix("/v1") + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _stats(server: OfflineWriterServer) -> dict[str, Any]:
    status, stats = _control(server, "GET", "/_offline/stats")
    assert status == 200
    return stats


def _ask(server: OfflineWriterServer, sku: str = "MH01", **extra: Any) -> Any:
    product = {**_data()["product"], "sku": sku}
    return _client(server).chat.completions.create(
        model="offline-writer-1", messages=_messages(_data(product=product)), **extra
    )


def _choices(server: OfflineWriterServer, count: int = 24, **extra: Any) -> list[Any]:
    """The first choice of answers to `count` requests that differ only in the SKU."""
    return [_ask(server, sku=f"S{i}", **extra).choices[0] for i in range(count)]
