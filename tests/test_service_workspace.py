"""The agent workspace over the API: every panel through its owning feature, only what
the caller's role allows, and actions in place through the owning feature's service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from conftest import AppClient, app_client
from kunde.commerce.service_orders import OrderService
from kunde.kernel import Kernel
from kunde.loyalty.service import LoyaltyService
from kunde.profiles.service_consent import ConsentService
from kunde.service.service import Actor, CaseService, NewCase
from test_service_cases import customer, service_features


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[AppClient]:
    async with app_client(kernel, features=service_features()) as c:
        yield c


async def key(kernel: Kernel, *scopes: str) -> dict[str, str]:
    _, secret = await kernel.access.create_api_key("test", list(scopes))
    return {"Authorization": f"Bearer {secret}"}


async def a_case(kernel: Kernel) -> tuple[str, str, str]:
    cid = await customer(kernel, "ws@example.com", "Mia")
    await kernel.service(ConsentService).grant(cid, "marketing_email", method="form",
                                               channel="web")
    async with kernel.db.transaction() as uow:
        order_id = await kernel.service(OrderService).place(
            uow, customer_id=cid, channel="web", currency="EUR",
            lines=[{"sku": "BOOT-43", "quantity": 1, "unit_price_minor": 8900}])
    case_id = await kernel.service(CaseService).open_case(
        NewCase(channel="portal", subject="Boots", customer_id=cid, order_id=order_id),
        Actor("customer", cid, "customer"), body="Wrong size")
    return cid, case_id, order_id


async def test_workspace_shows_every_panel_from_its_owner(
        kernel: Kernel, client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    _cid, case_id, order_id = await a_case(kernel)
    r = await client.get(f"/v1/service/cases/{case_id}/workspace", headers=admin_headers)
    assert r.status_code == 200, r.text
    ws = r.json()
    p = ws["panels"]
    assert p["profile"]["status"] == "ok" and p["profile"]["data"]["first_name"] == "Mia"
    assert {"kind": "email"}.items() <= p["profile"]["data"]["identities"][0].items()
    assert p["consents"]["data"]["marketing_email"] is True
    assert p["consents"]["data"]["marketing_sms"] is False
    assert p["orders"]["data"]["total"] == 1
    assert p["orders"]["data"]["orders"][0]["order_id"] == order_id
    assert p["loyalty"]["status"] == "ok" and "balance" in p["loyalty"]["data"]
    # Not computed yet, or not installed: shown as such, never invented.
    assert p["scores"]["status"] in ("ok", "not_available")
    assert p["shipments"]["status"] in ("ok", "not_available")
    assert [e["type"] for e in p["timeline"]["data"]][:2] == [
        "service.message_added", "service.case_opened"]
    assert ws["thread"][0]["body"] == "Wrong size"
    assert all(ws["actions"].values())


async def test_workspace_shows_only_what_the_role_allows(
        kernel: Kernel, client: httpx.AsyncClient) -> None:
    _, case_id, _order_id = await a_case(kernel)
    service_only = await key(kernel, "service:*")
    r = await client.get(f"/v1/service/cases/{case_id}/workspace", headers=service_only)
    ws = r.json()
    assert {n for n, p in ws["panels"].items() if p["status"] == "not_permitted"} == {
        "profile", "consents", "orders", "shipments", "loyalty", "scores", "timeline"}
    assert all(p["data"] is None for p in ws["panels"].values()
               if p["status"] == "not_permitted")
    assert not any(ws["actions"].values())
    r = await client.post(f"/v1/service/cases/{case_id}/actions/goodwill",
                          headers={**service_only, "Idempotency-Key": "k1"},
                          json={"points": 50})
    assert r.status_code == 403 and r.json()["permission"] == "loyalty:goodwill"

    analyst = await key(kernel, "service:read", "reports:read")
    r = await client.get(f"/v1/service/cases/{case_id}/workspace", headers=analyst)
    assert r.status_code == 403
    r = await client.get(f"/v1/service/cases/{case_id}", headers=analyst)
    assert r.status_code == 403
    r = await client.get("/v1/service/reports", headers=analyst)
    assert r.status_code == 200


async def test_actions_go_through_the_owning_feature(
        kernel: Kernel, client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    cid, case_id, order_id = await a_case(kernel)
    url = f"/v1/service/cases/{case_id}/actions"
    for _ in range(2):  # the same key grants once
        r = await client.post(f"{url}/goodwill", headers={**admin_headers,
                                                          "Idempotency-Key": "gw-1"},
                              json={"points": 150, "reason": "late parcel"})
        assert r.status_code == 201, r.text
    summary = await kernel.service(LoyaltyService).member_summary(cid)
    assert summary["balance"] == 150
    # Commerce applies its own rules: an unpaid order cannot be refunded.
    r = await client.post(f"{url}/refund", headers={**admin_headers, "Idempotency-Key": "rf-1"},
                          json={"order_id": order_id, "amount_minor": 100})
    assert r.status_code >= 400 and r.json()["code"].startswith("commerce.")
    r = await client.post(f"{url}/teleport", headers={**admin_headers, "Idempotency-Key": "x"},
                          json={})
    assert r.status_code == 422 and r.json()["code"] == "service.unknown_action"
    activity = await kernel.service(CaseService).activity(case_id)
    assert [a["action"] for a in activity].count("action:goodwill") == 2
    notes = [m for m in await kernel.service(CaseService).thread(case_id)
             if m["direction"] == "note"]
    assert "Action goodwill" in notes[0]["body"]


async def test_tracking_link_and_return_through_fulfilment(
        kernel: Kernel, client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    from kunde.fulfilment.service import FulfilmentService

    cid, case_id, order_id = await a_case(kernel)
    orders = kernel.service(OrderService)
    async with kernel.db.transaction() as uow:
        await orders.capture(uow, order_id, "pay-1", 8900)
    order = await orders.get_order(order_id)
    line_id = order["lines"][0]["line_id"]
    ship = await kernel.service(FulfilmentService).create_shipment(
        order_id=order_id, carrier="kunde", service="standard", tracking_number="TRK1",
        lines={line_id: 1})
    r = await client.get(f"/v1/service/cases/{case_id}/workspace", headers=admin_headers)
    shipments = r.json()["panels"]["shipments"]
    assert shipments["status"] == "ok"
    assert shipments["data"]["shipments"][0]["tracking_url"]
    url = f"/v1/service/cases/{case_id}/actions"
    r = await client.post(f"{url}/resend_tracking",
                          headers={**admin_headers, "Idempotency-Key": "t1"},
                          json={"shipment_id": ship["id"]})
    assert r.status_code == 201, r.text
    assert r.json()["result"]["delivery"].startswith("queued:")
    # A return of the shipped line, opened by fulfilment under its own rules.
    r = await client.post(f"{url}/start_return", headers={**admin_headers,
                                                          "Idempotency-Key": "x1"},
                          json={"order_id": order_id, "line_id": line_id, "quantity": 1,
                                "return_reason": "too_small"})
    assert r.status_code == 201, r.text
    assert r.json()["result"]["customer_id"] == cid
    r = await client.post(f"{url}/start_return", headers={**admin_headers,
                                                          "Idempotency-Key": "x2"},
                          json={"order_id": order_id, "line_id": line_id, "quantity": 1,
                                "return_reason": "too_small"})
    assert r.status_code >= 400 and r.json()["code"].startswith("fulfilment."), r.text
    actions = [a["action"] for a in await kernel.service(CaseService).activity(case_id)]
    assert actions.count("action:resend_tracking") == 1
    assert actions.count("action:start_return") == 1  # a refused action is not recorded


async def test_workspace_of_an_unverified_contact_and_of_a_shredded_key(
        kernel: Kernel, client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    cases = kernel.service(CaseService)
    stranger = await cases.open_case(
        NewCase(channel="email", subject="Hello", contact_email="who@example.net"),
        Actor("contact", None, "email"), body="Do you ship to Norway?")
    r = await client.get(f"/v1/service/cases/{stranger}/workspace", headers=admin_headers)
    assert r.status_code == 200, r.text
    ws = r.json()
    assert ws["case"]["contact_email"] == "who@example.net"
    assert ws["case"]["subject"] == "Hello" and ws["case"]["subject_tag"].startswith("[K-")
    assert "contact_email_enc" not in ws["case"] and "contact_email_index" not in ws["case"]
    assert [m["body"] for m in ws["thread"]] == ["Do you ship to Norway?"]
    assert {p["status"] for p in ws["panels"].values()} == {"unverified"}
    assert not any(ws["actions"].values())

    cid, case_id, _order = await a_case(kernel)
    async with kernel.db.transaction() as uow:
        await kernel.vault.shred(uow, cid, "test")
    r = await client.get(f"/v1/service/cases/{case_id}/workspace", headers=admin_headers)
    ws = r.json()
    assert ws["case"]["subject"] is None
    assert [m["body"] for m in ws["thread"]] == ["(erased)"]
    assert ws["panels"]["cases"]["data"][0]["subject"] is None
    r = await client.get("/v1/service/cases/nope/workspace", headers=admin_headers)
    assert r.status_code == 404
