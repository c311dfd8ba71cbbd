"""Console, portal and public tracking pages render with real data (HTTP, no browser)."""

from __future__ import annotations

import httpx

from fulfilment_helpers import (
    configure_carriers,
    customer,
    kunde_update,
    paid_order,
    signed,
)
from kunde.fulfilment.service import FulfilmentService
from kunde.kernel import Kernel


async def test_pages(client: httpx.AsyncClient, kernel: Kernel,
                     admin_headers: dict[str, str]) -> None:
    await configure_carriers(kernel)
    cid = await customer(kernel)
    order = await paid_order(kernel, cid)
    shipment = await kernel.service(FulfilmentService).create_shipment(
        order_id=order["order_id"], carrier="kunde", service="parcel", tracking_number="PG1",
        lines={ln["line_id"]: ln["quantity"] for ln in order["lines"]})
    body, hdrs = signed(kunde_update("PG1", "delivered", "2030-01-02T10:00:00Z",
                                     location="Odense", message="Left at the door"))
    await client.post("/webhooks/carriers/kunde", content=body, headers=hdrs)
    await kernel.service(FulfilmentService).apply_pending()

    r = await client.get(f"/track/{shipment['token']}")
    assert r.status_code == 200 and "Delivered" in r.text and "Odense" in r.text
    assert "What happens next" in r.text and "no-referrer" in r.headers["referrer-policy"]
    # A public page for whoever holds the link: no way into an account from here.
    assert 'href="/portal' not in r.text and "Your account" not in r.text
    assert (await client.get("/track/guess")).status_code == 404
    assert (await client.get("/fulfilment/assets/fulfilment.css")).status_code == 200

    r = await client.get("/console/shipments?risk=ok", headers=admin_headers)
    assert r.status_code == 200 and "PG1" in r.text
    r = await client.get(f"/console/shipments/{shipment['id']}", headers=admin_headers)
    assert r.status_code == 200 and "Left at the door" in r.text
    assert (await client.get("/console/shipments/unknown", headers=admin_headers)
            ).status_code == 200

    me = {"Authorization": f"Bearer {kernel.access.issue_customer_token(cid)}"}
    r = await client.get("/portal/shipments", headers=me)
    assert r.status_code == 200 and f"/track/{shipment['token']}" in r.text
    r = await client.get("/portal/returns", headers=me)
    assert r.status_code == 200 and "Boots" in r.text
    r = await client.get("/console/returns", headers=admin_headers)
    assert r.status_code == 200


async def test_export_and_erase(kernel: Kernel) -> None:
    from kunde.fulfilment.feature import FEATURE as fulfilment
    from kunde.fulfilment.service_returns import ReturnService
    from kunde.messaging.feature import FEATURE as messaging

    await configure_carriers(kernel)
    cid = await customer(kernel)
    order = await paid_order(kernel, cid)
    service = kernel.service(FulfilmentService)
    shipment = await service.create_shipment(
        order_id=order["order_id"], carrier="kunde", service="parcel", tracking_number="EX1",
        lines={ln["line_id"]: ln["quantity"] for ln in order["lines"]})
    await kernel.service(ReturnService).request(
        order_id=order["order_id"], actor="test", customer_id=cid,
        lines=[{"line_id": order["lines"][0]["line_id"], "quantity": 1, "reason": "other"}])
    assert fulfilment.export and fulfilment.erase and messaging.export and messaging.erase
    data = await fulfilment.export(kernel, [cid])
    assert {s["tracking_number"] for s in data["shipments"]} >= {"EX1"}
    assert len(data["returns"]) == 1 and "token" not in data["shipments"][0]
    assert (await messaging.export(kernel, [cid]))["messages"]
    async with kernel.db.transaction() as uow:
        counts = await fulfilment.erase(kernel, uow, [cid])
        assert await messaging.erase(kernel, uow, [cid]) == {"messages": 1}
    assert counts["shipments"] == 2 and counts["returns"] == 1
    assert await fulfilment.export(kernel, [cid]) == {"shipments": [], "returns": []}
    assert await kernel.service(FulfilmentService).tracking_view(shipment["token"]) is None


async def test_promise_endpoint(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/promises", params={
        "method": "standard", "country": "DK", "at": "2026-04-01T08:00:00+00:00"})
    assert r.status_code == 200
    assert r.json() == {"method": "standard", "country": "DK", "promised_date": "2026-04-08",
                        "cutoff": "15:00"}
    r = await client.get("/v1/promises", params={"method": "teleport"})
    assert r.status_code == 422 and r.json()["code"] == "fulfilment.unknown_method"
    r = await client.get("/v1/promises", params={"at": "2026-04-01T08:00:00"})
    assert r.status_code == 422
