"""Profiles REST API and console pages, driven over HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from conftest import AppClient, app_client
from kunde.features import all_features
from kunde.kernel import Kernel
from kunde.profiles.handlers import consumers
from kunde.profiles.service import ProfileService
from kunde.store.consumers import ConsumerRunner

OWN_FEATURES = {"access", "web", "profiles", "ingest"}


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[AppClient]:
    async with app_client(kernel, features=[f for f in all_features()
                                            if f.name in OWN_FEATURES]) as c:
        yield c


async def drain(kernel: Kernel) -> None:
    await ConsumerRunner(kernel.db, kernel.log, consumers(kernel),
                         lambda: frozenset(range(kernel.settings.partitions))).drain()


@pytest.fixture
async def shopper(client: httpx.AsyncClient, kernel: Kernel) -> str:
    _, key = await kernel.access.create_source("shop", "web")
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    batch = [{"type": "page", "anonymousId": "a1", "name": f"P{i}", "messageId": f"p{i}",
              "timestamp": f"2026-11-01T10:{i:02d}:00Z"} for i in range(5)]
    batch.append({"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "id1",
                  "traits": {"email": "Ana@Example.com", "first_name": "Ana"},
                  "timestamp": "2026-11-01T11:00:00Z"})
    batch.append({"type": "track", "userId": "u1", "event": "Product Added", "messageId": "t1",
                  "properties": {"sku": "S", "price": 10}, "timestamp": "2026-11-01T11:01:00Z"})
    r = await client.post("/v1/batch", json={"batch": batch}, headers=auth)
    assert r.status_code == 200
    await drain(kernel)
    return str(await kernel.service(ProfileService).resolve("user_id", "u1"))


async def test_profile_by_id_and_by_email(client: httpx.AsyncClient, shopper: str,
                                          admin_headers: dict[str, str]) -> None:
    r = await client.get(f"/v1/profiles/{shopper}", headers=admin_headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["first_name"] == "Ana" and body["computed"]["events_count"] == 7
    r = await client.get("/v1/profiles/lookup", params={"kind": "email",
                                                        "value": "  ana@EXAMPLE.com"},
                         headers=admin_headers)
    assert r.status_code == 200 and r.json()["id"] == shopper
    r = await client.get("/v1/profiles/lookup", params={"kind": "email", "value": "x@y.z"},
                         headers=admin_headers)
    assert r.status_code == 404 and r.json()["code"] == "profiles.customer_not_found"
    r = await client.get(f"/v1/profiles/{shopper}")
    assert r.status_code == 401


async def test_timeline_pages_and_filters(client: httpx.AsyncClient, shopper: str,
                                          admin_headers: dict[str, str]) -> None:
    url = f"/v1/profiles/{shopper}/timeline"
    first = (await client.get(url, params={"limit": 4}, headers=admin_headers)).json()
    assert len(first["items"]) == 4 and first["next"]
    rest = (await client.get(url, params={"limit": 50, "cursor": first["next"]},
                             headers=admin_headers)).json()
    positions = [e["position"] for e in first["items"] + rest["items"]]
    assert positions == sorted(positions, reverse=True) and len(set(positions)) == len(positions)
    types = {e["type"] for e in first["items"] + rest["items"]}
    assert {"ingest.page", "ingest.identify", "ingest.track", "interaction.recorded"} <= types
    pages = (await client.get(url, params={"type": "ingest.page"}, headers=admin_headers)).json()
    assert {e["type"] for e in pages["items"]} == {"ingest.page"} and len(pages["items"]) == 5
    none = (await client.get(url, params={"channel": "store"}, headers=admin_headers)).json()
    assert none["items"] == []


async def test_identities_consent_and_segments(client: httpx.AsyncClient, shopper: str,
                                               admin_headers: dict[str, str]) -> None:
    ids = (await client.get(f"/v1/profiles/{shopper}/identities", headers=admin_headers)).json()
    kinds = sorted(i["kind"] for i in ids["identities"])
    assert kinds == ["anonymous_id", "email", "user_id"]
    assert any(i["value"] == "Ana@Example.com" for i in ids["identities"])
    url = f"/v1/profiles/{shopper}/consent"
    r = await client.post(url, json={"purpose": "marketing_sms", "granted": True,
                                     "method": "form", "channel": "web", "text_version": "v1"},
                          headers=admin_headers)
    assert r.status_code == 200 and r.json()["changed"] is True
    r = await client.post(url, json={"purpose": "spam", "granted": True},
                          headers=admin_headers)
    assert r.status_code == 422 and r.json()["code"] == "consent.unknown_purpose"
    consent = (await client.get(url, headers=admin_headers)).json()
    assert consent["purposes"]["marketing_sms"]["granted"] is True
    assert consent["history"][0]["actor"].startswith("api_key:")
    r = await client.post("/v1/segments", json={"name": "Adders", "rules": {"all": [
        {"field": "event.Product Added", "op": "within_days", "value": 100000}]}},
        headers=admin_headers)
    assert r.status_code == 201, r.text
    seg = r.json()
    assert seg["members"] == 1
    members = (await client.get(f"/v1/segments/{seg['id']}/members",
                                headers=admin_headers)).json()
    assert [m["customer_id"] for m in members["items"]] == [shopper]
    mine = (await client.get(f"/v1/profiles/{shopper}/segments", headers=admin_headers)).json()
    assert [s["name"] for s in mine] == ["Adders"]
    r = await client.post("/v1/segments", json={"name": "Bad", "rules": {"all": [
        {"field": "nope", "op": "eq"}]}}, headers=admin_headers)
    assert r.status_code == 422 and r.json()["code"] == "segments.invalid_rules"


async def test_staff_merge_and_unmerge(client: httpx.AsyncClient, kernel: Kernel,
                                       admin_headers: dict[str, str]) -> None:
    profiles = kernel.service(ProfileService)
    a = await profiles.ensure_customer({"email": "p1@example.com"}, "web")
    b = await profiles.ensure_customer({"phone": "+49 30 1234567"}, "store")
    r = await client.post("/v1/profiles/merge", json={"customer_ids": [a, b],
                                                      "reason": "same person, verified"},
                          headers=admin_headers)
    assert r.status_code == 200 and r.json()["survivor_id"] == min(a, b)
    merged = max(a, b)
    r = await client.post(f"/v1/profiles/{merged}/unmerge", json={"reason": "mistake"},
                          headers=admin_headers)
    assert r.status_code == 200 and r.json()["restored_id"] == merged
    ids = (await client.get(f"/v1/profiles/{a}/identities", headers=admin_headers)).json()
    assert ids["merges"][0]["undone_by"].startswith("api_key:")
    r = await client.post(f"/v1/profiles/{merged}/unmerge", json={"reason": "again"},
                          headers=admin_headers)
    assert r.status_code == 409 and r.json()["code"] == "profiles.not_merged"


async def test_console_search_and_360(client: httpx.AsyncClient, shopper: str,
                                      admin_headers: dict[str, str]) -> None:
    r = await client.get("/console/customers", params={"q": "ana@example.com"},
                         headers=admin_headers)
    assert r.status_code in (302, 303) and r.headers["location"].endswith(shopper)
    r = await client.get(f"/console/customers/{shopper}", headers=admin_headers)
    assert r.status_code == 200, r.text
    for text in ("Ana", "Identities", "anonymous_id", "Timeline", "Consent", "Segments"):
        assert text in r.text
    r = await client.get("/console/customers", params={"q": "nobody@example.com"},
                         headers=admin_headers)
    assert r.status_code == 200 and "No customer holds" in r.text
