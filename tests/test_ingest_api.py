"""The Segment Tracking API: auth, batches, de-duplication, limits, bad input."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from conftest import AppClient, app_client
from kunde.features import all_features
from kunde.kernel import Kernel
from kunde.store.tables import events

PROBLEM = "application/problem+json"


OWN_FEATURES = {"access", "web", "profiles", "ingest"}


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[AppClient]:
    """The app with the features ingestion needs, served in the test's own event loop."""
    async with app_client(kernel, features=[f for f in all_features()
                                            if f.name in OWN_FEATURES]) as c:
        yield c


@pytest.fixture
async def write_key(kernel: Kernel) -> str:
    _, key = await kernel.access.create_source("webshop", "web")
    return key


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def event(i: int, **kw: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Product Viewed", "anonymousId": f"anon-{i % 7}",
            "messageId": f"m-{i}", "timestamp": "2026-11-20T10:00:00Z",
            "properties": {"sku": f"SKU-{i}", "price": 19.99, "category": "shoes"}, **kw}


async def count(kernel: Kernel, type_: str | None = None) -> int:
    q = sa.select(sa.func.count()).select_from(events)
    if type_:
        q = q.where(events.c.type == type_)
    async with kernel.db.read() as conn:
        return int((await conn.execute(q)).scalar_one())


async def test_batch_is_stored_once_even_when_retried(
    client: httpx.AsyncClient, kernel: Kernel, write_key: str,
) -> None:
    body = {"batch": [event(i) for i in range(20)], "sentAt": "2026-11-20T10:00:05Z"}
    r = await client.post("/v1/batch", json=body, headers=basic(write_key))
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "stored": 20, "duplicates": 0, "suppressed": 0}
    r = await client.post("/v1/batch", json=body, headers=basic(write_key))
    assert r.json() == {"success": True, "stored": 0, "duplicates": 20, "suppressed": 0}
    assert await count(kernel, "ingest.track") == 20
    assert await count(kernel, "interaction.recorded") == 20
    assert await count(kernel, "profiles.customer_created") == 7


async def test_clock_skew_is_corrected_from_sent_at(
    client: httpx.AsyncClient, kernel: Kernel, write_key: str,
) -> None:
    # The device clock is a year behind; the event waited 5 s on the device.
    body = {"batch": [event(1, timestamp="2025-01-01T00:00:00Z")],
            "sentAt": "2025-01-01T00:00:05Z"}
    r = await client.post("/v1/batch", json=body, headers=basic(write_key))
    assert r.status_code == 200
    async with kernel.db.read() as conn:
        e = (await kernel.log.read(conn, types=["ingest.track"]))[0]
    delta = (e.received_at - e.occurred_at).total_seconds()
    assert 4 <= delta <= 7
    assert e.payload is not None and e.payload["timestamp"].startswith(str(e.occurred_at.year))


async def test_single_calls_write_key_in_body_and_gzip(
    client: httpx.AsyncClient, kernel: Kernel, write_key: str,
) -> None:
    r = await client.post("/v1/identify", json={
        "userId": "u-1", "anonymousId": "a-1", "traits": {"email": "ana@example.com"},
        "writeKey": write_key})
    assert r.status_code == 200, r.text
    for path, extra in (("/v1/page", {"name": "Home"}), ("/v1/screen", {"name": "Cart"}),
                        ("/v1/group", {"groupId": "g1"}), ("/v1/alias", {"previousId": "a-9"}),
                        ("/v1/track", {"event": "Signed Up"})):
        r = await client.post(path, json={"userId": "u-1", **extra}, headers=basic(write_key))
        assert r.status_code == 200, (path, r.text)
    raw = gzip.compress(json.dumps({"batch": [event(5)]}).encode())
    r = await client.post("/v1/batch", content=raw, headers={
        **basic(write_key), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert await count(kernel, "ingest.identify") == 1
    assert await count(kernel, "ingest.alias") == 1


@pytest.mark.parametrize(("body", "status", "code", "index", "field"), [
    ({"batch": [{"type": "track", "event": "x", "anonymousId": "a"},
                {"type": "track", "event": "x"}]}, 400, "ingest.missing_identity", 1, "userId"),
    ({"batch": [{"type": "track", "anonymousId": "a"}]}, 400, "ingest.invalid_event", 0, "event"),
    ({"batch": [{"type": "bogus", "anonymousId": "a"}]}, 400, "ingest.invalid_event", 0, "type"),
    ({"batch": [{"type": "page", "anonymousId": "a", "properties": [1]}]}, 400,
     "ingest.invalid_event", 0, "properties"),
    ({"batch": [{"type": "page", "anonymousId": "a", "timestamp": "yesterday"}]}, 400,
     "ingest.invalid_event", 0, "timestamp"),
    ({"batch": "nope"}, 400, "ingest.invalid_event", None, "batch"),
])
async def test_malformed_batch_is_rejected_whole(
    client: httpx.AsyncClient, kernel: Kernel, write_key: str, body: dict[str, Any],
    status: int, code: str, index: int | None, field: str,
) -> None:
    r = await client.post("/v1/batch", json=body, headers=basic(write_key))
    assert r.status_code == status
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["code"] == code and problem.get("index") == index
    assert problem["field"] == field
    assert await count(kernel) == 0


async def test_bad_bytes_and_limits(
    client: httpx.AsyncClient, kernel: Kernel, write_key: str,
) -> None:
    h = {**basic(write_key), "Content-Type": "application/json"}
    cases = [
        (b'{"batch": [{"type":"track","event":"\xff","anonymousId":"a"}]}', 400,
         "ingest.invalid_utf8"),
        (b"{not json", 400, "ingest.invalid_json"),
        (b"[" * 5000 + b"]" * 5000, 400, "ingest.too_deep"),
        (json.dumps({"batch": [event(1, properties={"a": {"b": {"c": {"d": {"e": {"f": {
            "g": {"h": {"i": {"j": {"k": {"l": {"m": {"n": {"o": {"p": {"q": 1}}}}}}}}}}}}}}}}}
        )]}).encode(), 400, "ingest.too_deep"),
        (json.dumps({"batch": [event(i, properties={"pad": "x" * 2000}) for i in range(300)]}
                    ).encode(), 413, "ingest.batch_too_large"),
        (json.dumps({"batch": [event(1, properties={"pad": "x" * 40_000})]}).encode(), 413,
         "ingest.event_too_large"),
    ]
    for raw, status, code in cases:
        r = await client.post("/v1/batch", content=raw, headers=h)
        assert (r.status_code, r.json()["code"]) == (status, code), raw[:60]
    r = await client.post("/v1/track", content=json.dumps(
        event(1, properties={"pad": "x" * 40_000})).encode(), headers=h)
    assert (r.status_code, r.json()["code"]) == (413, "ingest.event_too_large")
    bomb = gzip.compress(b'{"batch": [' + b" " * 2_000_000 + b"]}")
    r = await client.post("/v1/batch", content=bomb, headers={**h, "Content-Encoding": "gzip"})
    assert (r.status_code, r.json()["code"]) == (413, "ingest.batch_too_large")
    r = await client.post("/v1/batch", content=b"xx", headers={**h, "Content-Encoding": "br"})
    assert (r.status_code, r.json()["code"]) == (415, "ingest.unsupported_encoding")
    assert await count(kernel) == 0


async def test_write_key_is_required_and_checked(
    client: httpx.AsyncClient, write_key: str,
) -> None:
    body = {"batch": [event(1)]}
    r = await client.post("/v1/batch", json=body)
    assert (r.status_code, r.json()["code"]) == (401, "ingest.missing_write_key")
    r = await client.post("/v1/batch", json={**body, "writeKey": "wk_nope"})
    assert (r.status_code, r.json()["code"]) == (401, "ingest.unknown_write_key")
    r = await client.post("/v1/batch", json=body, headers=basic("wk_nope"))
    assert (r.status_code, r.json()["code"]) == (401, "ingest.unknown_write_key")
    r = await client.post("/v1/batch", json={**body, "writeKey": write_key})
    assert r.status_code == 200
