"""Self-service returns, the return parcel, and refunds by policy, with their SLA."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from fulfilment_helpers import (
    configure_carriers,
    customer,
    kunde_update,
    paid_order,
    signed,
)
from kunde.commerce.service_orders import OrderService
from kunde.core.clock import FrozenClock
from kunde.fulfilment.service import FulfilmentService
from kunde.fulfilment.service_returns import ReturnService
from kunde.kernel import Kernel


async def delivered_order(client: httpx.AsyncClient, kernel: Kernel,
                          headers: dict[str, str], number: str) -> tuple[str, dict[str, Any]]:
    await configure_carriers(kernel)
    cid = await customer(kernel)
    order = await paid_order(kernel, cid)
    r = await client.post("/v1/shipments", headers=headers, json={
        "order_id": order["order_id"], "carrier": "kunde", "tracking_number": number,
        "lines": {ln["line_id"]: ln["quantity"] for ln in order["lines"]}})
    assert r.status_code == 201, r.text
    await scan(client, kernel, number, "delivered")
    return cid, await kernel.service(OrderService).get_order(order["order_id"])


async def scan(client: httpx.AsyncClient, kernel: Kernel, number: str, status: str) -> None:
    at = kernel.clock.now().isoformat()
    body, hdrs = signed(kunde_update(number, status, at))
    r = await client.post("/webhooks/carriers/kunde", content=body, headers=hdrs)
    assert r.status_code == 202, r.text
    await kernel.service(FulfilmentService).apply_pending()


def customer_headers(kernel: Kernel, cid: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {kernel.access.issue_customer_token(cid)}"}


async def test_return_refunded_at_first_scan(client: httpx.AsyncClient, kernel: Kernel,
                                             admin_headers: dict[str, str]) -> None:
    cid, order = await delivered_order(client, kernel, admin_headers, "OUT-1")
    boots = next(ln for ln in order["lines"] if ln["sku"] == "BOOT-42")
    me = customer_headers(kernel, cid)
    # More than was bought, or a made-up reason: refused with a clear code.
    r = await client.post("/v1/returns", headers=me, json={
        "order_id": order["order_id"],
        "lines": [{"line_id": boots["line_id"], "quantity": 3, "reason": "too_small"}]})
    assert r.status_code == 422 and r.json()["code"] == "fulfilment.too_many"
    r = await client.post("/v1/returns", headers=me, json={
        "order_id": order["order_id"],
        "lines": [{"line_id": boots["line_id"], "quantity": 1, "reason": "bored"}]})
    assert r.json()["code"] == "fulfilment.bad_reason"
    # Another customer cannot return my order.
    other = customer_headers(kernel, await customer(kernel, "bob@example.com"))
    r = await client.post("/v1/returns", headers=other, json={
        "order_id": order["order_id"],
        "lines": [{"line_id": boots["line_id"], "quantity": 1, "reason": "too_small"}]})
    assert r.status_code == 422 and r.json()["code"] == "fulfilment.not_your_order"

    r = await client.post("/v1/returns", headers=me, json={
        "order_id": order["order_id"],
        "lines": [{"line_id": boots["line_id"], "quantity": 1, "reason": "too_small"}]})
    assert r.status_code == 201, r.text
    ret = r.json()
    assert ret["status"] == "approved" and ret["rma"].startswith("RMA-")
    assert ret["label_ref"].startswith("LBL-") and ret["amount_minor"] == 50000
    assert ret["sla"] == "waiting"
    # The same quantity cannot be returned twice while the first return is open.
    r = await client.post("/v1/returns", headers=me, json={
        "order_id": order["order_id"],
        "lines": [{"line_id": boots["line_id"], "quantity": 2, "reason": "too_small"}]})
    assert r.json()["code"] == "fulfilment.too_many"

    # The carrier's first scan of the return parcel triggers the refund.
    await scan(client, kernel, ret["tracking_number"], "in_transit")
    done = (await client.get(f"/v1/returns/{ret['id']}", headers=me)).json()
    assert done["status"] == "refunded" and done["refund_id"]
    assert done["sla"] == "on_time" and done["seconds_to_refund"] < 60
    fresh = await kernel.service(OrderService).get_order(order["order_id"])
    assert fresh["refunded_minor"] == 50000
    # A retried refund never pays twice.
    await kernel.service(ReturnService).refund_now(ret["id"], "test")
    await kernel.service(ReturnService).process_refunds()
    assert (await kernel.service(OrderService).get_order(order["order_id"]))[
        "refunded_minor"] == 50000
    # The parcel arrives: commerce records the returned goods.
    await scan(client, kernel, ret["tracking_number"], "delivered")
    fresh = await kernel.service(OrderService).get_order(order["order_id"])
    assert next(ln for ln in fresh["lines"] if ln["sku"] == "BOOT-42")["returned"] == 1
    assert (await client.get(f"/v1/returns/{ret['id']}", headers=me)).json()[
        "received_at"] is not None


async def test_inspection_policy_review_and_window(client: httpx.AsyncClient,
                                                   kernel: Kernel,
                                                   admin_headers: dict[str, str]) -> None:
    r = await client.put("/v1/fulfilment/policy", headers=admin_headers, json={
        "refund_trigger": "inspection", "reasons_needing_review": ["damaged"],
        "refund_method": "store_credit"})
    assert r.status_code == 200 and r.json()["refund_trigger"] == "inspection"
    assert (await client.put("/v1/fulfilment/policy", headers=admin_headers,
                             json={"refund_trigger": "never"})).status_code == 422
    cid, order = await delivered_order(client, kernel, admin_headers, "OUT-2")
    socks = next(ln for ln in order["lines"] if ln["sku"] == "SOCK-1")
    me = customer_headers(kernel, cid)
    r = await client.post("/v1/returns", headers=me, json={
        "order_id": order["order_id"],
        "lines": [{"line_id": socks["line_id"], "quantity": 1, "reason": "damaged"}]})
    ret = r.json()
    assert ret["status"] == "requested"  # damaged goods wait for a person
    queue = (await client.get("/v1/returns?status=open", headers=admin_headers)).json()
    assert [q["id"] for q in queue] == [ret["id"]]
    assert (await client.post(f"/v1/returns/{ret['id']}/inspect",
                              headers=admin_headers)).status_code == 409
    r = await client.post(f"/v1/returns/{ret['id']}/approve", headers=admin_headers)
    assert r.status_code == 200 and r.json()["status"] == "approved"
    await scan(client, kernel, r.json()["tracking_number"], "in_transit")
    await scan(client, kernel, r.json()["tracking_number"], "delivered")
    got = (await client.get(f"/v1/returns/{ret['id']}", headers=admin_headers)).json()
    assert got["status"] == "received" and got["sla"] == "waiting"
    r = await client.post(f"/v1/returns/{ret['id']}/inspect", headers=admin_headers)
    assert r.json()["status"] == "refunded" and r.json()["refund_method"] == "store_credit"

    # Past the window there is no self-service return.
    assert isinstance(kernel.clock, object)
    kernel.clock = FrozenClock(kernel.clock.now() + timedelta(days=31))
    boots = next(ln for ln in order["lines"] if ln["sku"] == "BOOT-42")
    r = await client.post("/v1/returns", headers=me, json={
        "order_id": order["order_id"],
        "lines": [{"line_id": boots["line_id"], "quantity": 1, "reason": "changed_mind"}]})
    assert r.status_code == 422 and r.json()["code"] == "fulfilment.return_window_closed"


async def test_reject_closes_the_return(client: httpx.AsyncClient, kernel: Kernel,
                                        admin_headers: dict[str, str]) -> None:
    await client.put("/v1/fulfilment/policy", headers=admin_headers,
                     json={"auto_approve_returns": False})
    cid, order = await delivered_order(client, kernel, admin_headers, "OUT-3")
    line = order["lines"][0]
    ret = (await client.post("/v1/returns", headers=customer_headers(kernel, cid), json={
        "order_id": order["order_id"],
        "lines": [{"line_id": line["line_id"], "quantity": 1, "reason": "other"}]})).json()
    r = await client.post(f"/v1/returns/{ret['id']}/reject", headers=admin_headers,
                          json={"reason": "worn"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert (await client.post(f"/v1/returns/{ret['id']}/refund",
                              headers=admin_headers)).status_code == 409


async def test_return_request_with_idempotency_key(client: httpx.AsyncClient, kernel: Kernel,
                                                   admin_headers: dict[str, str]) -> None:
    cid, order = await delivered_order(client, kernel, admin_headers, "OUT-4")
    me = {**customer_headers(kernel, cid), "Idempotency-Key": "ret-1"}
    body = {"order_id": order["order_id"],
            "lines": [{"line_id": order["lines"][0]["line_id"], "quantity": 1,
                       "reason": "too_large"}]}
    first = await client.post("/v1/returns", headers=me, json=body)
    again = await client.post("/v1/returns", headers=me, json=body)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    assert len((await client.get("/v1/returns", headers=admin_headers)).json()) == 1
