"""Shipments and track & trace through the HTTP API on a real database."""

from __future__ import annotations

import time
from typing import Any

import httpx
import sqlalchemy as sa

from fulfilment_helpers import (
    configure_carriers,
    customer,
    kunde_update,
    paid_order,
    postnord_event,
    signed,
)
from kunde.commerce.service_orders import OrderService
from kunde.fulfilment.service import FulfilmentService
from kunde.fulfilment.service_care import CareService
from kunde.kernel import Kernel
from kunde.messaging.tables import messages
from kunde.store.tables import events


async def ship(client: httpx.AsyncClient, headers: dict[str, str], order: dict[str, Any],
               number: str = "00370712345678901234", carrier: str = "postnord"
               ) -> dict[str, Any]:
    r = await client.post("/v1/shipments", headers=headers, json={
        "order_id": order["order_id"], "carrier": carrier, "tracking_number": number,
        "lines": {ln["line_id"]: ln["quantity"] for ln in order["lines"]}})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def event_types(kernel: Kernel) -> list[str]:
    async with kernel.db.read() as conn:
        return list((await conn.execute(sa.select(events.c.type)
                                        .order_by(events.c.position))).scalars())


async def test_signed_webhook_moves_the_parcel_to_delivered(
        client: httpx.AsyncClient, kernel: Kernel, admin_headers: dict[str, str]) -> None:
    await configure_carriers(kernel)
    cid = await customer(kernel)
    order = await paid_order(kernel, cid)
    shipment = await ship(client, admin_headers, order)
    assert shipment["status"] == "pending" and shipment["promised_date"]
    number = shipment["tracking_number"]
    body, hdrs = signed(postnord_event(number, "COLLECTED", "2030-01-07T09:00:00Z"),
                        msg_id="msg_1")
    r = await client.post("/webhooks/carriers/postnord", content=body, headers=hdrs)
    assert r.status_code == 202 and r.json() == {"accepted": 1}
    # The same message id again is a replay.
    r = await client.post("/webhooks/carriers/postnord", content=body, headers=hdrs)
    assert r.status_code == 409 and r.json()["code"] == "fulfilment.webhook_replayed"
    # A tampered body, an old timestamp, a missing signature: refused.
    _, good = signed(postnord_event(number, "DELIVERED", "2030-01-08T09:00:00Z"))
    r = await client.post("/webhooks/carriers/postnord", content=body + b" ", headers=good)
    assert r.status_code == 401 and r.json()["reason"] == "bad_signature"
    old_body, old = signed(postnord_event(number, "DELIVERED", "2030-01-08T09:00:00Z"),
                           ts=int(time.time()) - 301)
    r = await client.post("/webhooks/carriers/postnord", content=old_body, headers=old)
    assert r.status_code == 401 and r.json()["reason"] == "stale_timestamp"
    r = await client.post("/webhooks/carriers/postnord", content=old_body,
                          headers={"content-type": "application/json"})
    assert r.status_code == 401 and r.json()["reason"] == "missing_headers"
    bad_body, bad = signed({"events": [{"nope": 1}]})
    r = await client.post("/webhooks/carriers/postnord", content=bad_body, headers=bad)
    assert r.status_code == 422 and r.json()["code"] == "fulfilment.bad_tracking_payload"

    service = kernel.service(FulfilmentService)
    assert (await service.apply_pending()).startswith("applied 1")
    view = await service.get_shipment(shipment["id"])
    assert view["status"] == "in_transit" and len(view["checkpoints"]) == 1
    body, hdrs = signed(postnord_event(number, "DELIVERED", "2030-01-08T12:00:00Z"))
    assert (await client.post("/webhooks/carriers/postnord", content=body,
                              headers=hdrs)).status_code == 202
    await service.apply_pending()
    view = await service.get_shipment(shipment["id"])
    assert view["status"] == "delivered" and view["is_open"] is False
    assert (await kernel.service(OrderService).get_order(order["order_id"]))["status"] \
        == "delivered"
    types = await event_types(kernel)
    for t in ("fulfilment.shipment_created", "fulfilment.tracking_updated",
              "fulfilment.shipment_delivered"):
        assert t in types
    # The shipped mail is in the outbox.
    async with kernel.db.read() as conn:
        assert (await conn.execute(sa.select(messages.c.template))).scalars().all() \
            == ["shipped"]

    # The public page behind the token: timeline and next step, no login.
    token = view["tracking_url"].rsplit("/", 1)[1]
    r = await client.get(f"/v1/track/{token}")
    assert r.status_code == 200 and r.json()["status"] == "delivered"
    assert [c["status"] for c in r.json()["checkpoints"]] == ["delivered", "in_transit"]
    assert (await client.get("/v1/track/not-a-real-token")).status_code == 404


async def test_second_carrier_format_and_unknown_numbers_are_kept(
        client: httpx.AsyncClient, kernel: Kernel, admin_headers: dict[str, str]) -> None:
    await configure_carriers(kernel)
    dhl_body = {"shipments": [{"id": "JD014600003828", "estimatedTimeOfDelivery":
                               "2030-01-09T18:00:00Z", "events": [
        {"timestamp": "2030-01-07T08:00:00Z", "statusCode": "transit",
         "description": "Shipment is out with delivery courier",
         "location": {"address": {"addressLocality": "Aarhus"}}}]}]}
    body, hdrs = signed(dhl_body)
    assert (await client.post("/webhooks/carriers/dhl", content=body,
                              headers=hdrs)).status_code == 202
    service = kernel.service(FulfilmentService)
    assert "unknown 1" in await service.apply_pending()
    unknown = (await client.get("/v1/fulfilment/unknown-tracking",
                                headers=admin_headers)).json()
    assert unknown[0]["tracking_number"] == "JD014600003828"
    assert unknown[0]["last_status"] == "out_for_delivery"
    # When the shipment is registered, the early scan is applied, not lost.
    order = await paid_order(kernel, await customer(kernel))
    shipment = await ship(client, admin_headers, order, "JD014600003828", "dhl")
    view = await service.get_shipment(shipment["id"])
    assert view["status"] == "out_for_delivery" and view["eta"] == "2030-01-09"
    assert (await client.get("/v1/fulfilment/unknown-tracking",
                             headers=admin_headers)).json() == []


async def test_exception_scan_acts_by_policy(
        client: httpx.AsyncClient, kernel: Kernel, admin_headers: dict[str, str]) -> None:
    await configure_carriers(kernel)
    r = await client.put("/v1/fulfilment/policy", headers=admin_headers,
                         json={"goodwill_points": 0})
    assert r.status_code == 200
    order = await paid_order(kernel, await customer(kernel))
    shipment = await ship(client, admin_headers, order, "KX1")
    body, hdrs = signed(kunde_update("KX1", "exception", "2030-01-07T10:00:00Z",
                                     message="Damaged in sorting"))
    await client.post("/webhooks/carriers/kunde", content=body, headers=hdrs)
    await kernel.service(FulfilmentService).apply_pending()
    assert await kernel.service(CareService).act_on_due() == 1
    assert await kernel.service(CareService).act_on_due() == 0  # acted once
    risky = (await client.get("/v1/shipments?risk=at_risk", headers=admin_headers)).json()
    assert [s["id"] for s in risky] == [shipment["id"]]
    assert "fulfilment.delay_detected" in await event_types(kernel)
    async with kernel.db.read() as conn:
        templates = (await conn.execute(sa.select(messages.c.template, messages.c.purpose)
                                        .order_by(messages.c.created_at))).all()
    assert ("delay_apology", "service") in [tuple(t) for t in templates]


async def test_concurrent_deliveries_of_one_webhook_are_accepted_once(kernel: Kernel) -> None:
    import asyncio

    from kunde.fulfilment.errors import WebhookReplayed

    await configure_carriers(kernel)
    service = kernel.service(FulfilmentService)
    body, hdrs = signed(kunde_update("CC1", "in_transit", "2030-01-07T10:00:00Z"))
    others = [signed(kunde_update(f"CC{i}", "in_transit", "2030-01-07T10:00:00Z"))
              for i in range(2, 7)]
    results = await asyncio.gather(
        *[service.accept("kunde", hdrs, body) for _ in range(8)],
        *[service.accept("kunde", h, b) for b, h in others], return_exceptions=True)
    replays = [r for r in results if isinstance(r, WebhookReplayed)]
    assert len(replays) == 7 and results.count(1) == 6


async def test_out_of_order_scans_settle_on_the_newest(kernel: Kernel) -> None:
    import random
    from datetime import UTC, datetime, timedelta

    from kunde.fulfilment.models import Checkpoint, TrackingUpdate

    service = kernel.service(FulfilmentService)
    order = await paid_order(kernel, await customer(kernel), qty=12)
    lines = {order["lines"][0]["line_id"]: 1}
    start = datetime(2030, 1, 1, 8, tzinfo=UTC)
    journey = ["info_received", "in_transit", "in_transit", "exception", "out_for_delivery",
               "delivered"]
    rng = random.Random(7)
    for n in range(12):
        number = f"OOO{n}"
        ship = await service.create_shipment(
            order_id=order["order_id"], carrier="kunde", service="parcel",
            tracking_number=number, lines=lines)
        steps = list(enumerate(journey))
        rng.shuffle(steps)
        async with kernel.db.transaction() as uow:
            for i, status in steps + steps[:2]:  # some arrive twice
                await service.apply(uow, "kunde", TrackingUpdate(number, Checkpoint(
                    at=start + timedelta(hours=i), status=status,  # type: ignore[arg-type]
                    message=f"step {i}")))
        view = await service.get_shipment(ship["id"])
        assert view["status"] == "delivered" and view["is_open"] is False
        assert len(view["checkpoints"]) == len(journey)
        assert [c["status"] for c in view["checkpoints"]] == journey


async def test_one_batch_with_repeated_numbers_applies_like_one_by_one(
        client: httpx.AsyncClient, kernel: Kernel, admin_headers: dict[str, str]) -> None:
    """`apply_pending` reads a batch's shipments ahead; an update must still see what the
    previous update of the same parcel (or unknown number) wrote."""
    await configure_carriers(kernel)
    order = await paid_order(kernel, await customer(kernel))
    shipment = await ship(client, admin_headers, order, "KB1", "postnord")
    sends = [("KB1", "COLLECTED", "2030-01-07T09:00:00Z"),
             ("ZZ404", "COLLECTED", "2030-01-07T09:00:00Z"),
             ("KB1", "DELIVERED", "2030-01-08T09:00:00Z"),
             ("ZZ404", "DELIVERED", "2030-01-08T09:00:00Z"),
             ("KB1", "COLLECTED", "2030-01-07T09:00:00Z")]  # an older scan, repeated
    for number, code, at in sends:
        body, hdrs = signed(postnord_event(number, code, at))
        r = await client.post("/webhooks/carriers/postnord", content=body, headers=hdrs)
        assert r.status_code == 202
    service = kernel.service(FulfilmentService)
    assert await service.apply_pending() == "applied 3, unknown 2"
    view = await service.get_shipment(shipment["id"])
    assert view["status"] == "delivered" and len(view["checkpoints"]) == 2
    assert view["first_scan_at"].isoformat().startswith("2030-01-07T09:00")
    unknown = (await client.get("/v1/fulfilment/unknown-tracking",
                                headers=admin_headers)).json()
    assert [(u["tracking_number"], u["seen_count"], u["last_status"]) for u in unknown] \
        == [("ZZ404", 2, "delivered")]
    assert len(unknown[0]["updates"]) == 2
