"""Demo data: commerce's paid orders shipped, tracked, delayed, returned and refunded.

* a delivered parcel with its full journey (PostNord format);
* a parcel whose promise was broken: the sweep flags it, and the proactive apology
  (purpose ``service``) is in the customer's communication archive;
* a parcel held up by a carrier exception (DHL format), at risk;
* a delivered order returned through self-service and refunded at the return
  parcel's first carrier scan (the default policy), with its SLA;
* a parcel waiting for its first scan, and a tracking number no shipment claims.

Idempotent: a marker in ``fulfilment_config`` makes a second run do nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from kunde.commerce.service_orders import OrderService
from kunde.fulfilment.config import FulfilmentConfig
from kunde.fulfilment.models import Checkpoint, TrackingUpdate
from kunde.fulfilment.service import FulfilmentService
from kunde.fulfilment.service_care import CareService
from kunde.fulfilment.service_returns import ReturnService
from kunde.fulfilment.tables import fulfilment_config, shipments
from kunde.kernel import Kernel

MARKER = "demo"
# Development-only webhook secret for trying the carrier endpoint by hand (docs/fulfilment.md).
DEMO_SECRET = "whsec_" + "ZGVtby1jYXJyaWVyLXNlY3JldC1ub3QtZm9yLXByb2R1Y3Rpb24="


async def load(kernel: Kernel) -> None:
    config = kernel.service(FulfilmentConfig)
    async with kernel.db.read() as conn:
        if (await conn.execute(sa.select(fulfilment_config.c.key).where(
                fulfilment_config.c.key == MARKER))).first() is not None:
            return
    for carrier in ("postnord", "dhl", "kunde"):
        await config.add_carrier_secret(carrier, DEMO_SECRET)
    orders = kernel.service(OrderService)
    paid = [o for o in await orders.search(status="paid", external=False, limit=50)]
    paid.sort(key=lambda o: o["placed_at"])
    plans = [_delivered, _delayed, _held_up, _returned, _waiting]
    for plan, summary in zip(plans, paid, strict=False):
        await plan(kernel, await orders.get_order(summary["order_id"]))
    await _unknown(kernel)
    await kernel.service(CareService).sweep()
    await config._put(MARKER, {"loaded": True})


async def _ship(kernel: Kernel, order: dict[str, Any], carrier: str, number: str
                ) -> dict[str, Any]:
    return await kernel.service(FulfilmentService).create_shipment(
        order_id=order["order_id"], carrier=carrier, service="parcel", tracking_number=number,
        lines={ln["line_id"]: ln["quantity"] for ln in order["lines"]},
        country="DE")


async def _scans(kernel: Kernel, carrier: str, number: str,
                 steps: list[tuple[int, str, str, str]]) -> None:
    """Apply checkpoints ``(hours ago, status, message, place)``."""
    now = kernel.clock.now()
    service = kernel.service(FulfilmentService)
    async with kernel.db.transaction() as uow:
        for hours_ago, status, message, place in steps:
            await service.apply(uow, carrier, TrackingUpdate(number, Checkpoint(
                at=now - timedelta(hours=hours_ago), status=status,  # type: ignore[arg-type]
                message=message, location=place, carrier_code=status.upper())))


JOURNEY = [(70, "info_received", "Shipment information received", "Kassel"),
           (60, "in_transit", "Collected from the sender", "Kassel"),
           (40, "in_transit", "Arrived at the terminal", "Hamburg"),
           (20, "out_for_delivery", "Out for delivery", "Berlin"),
           (16, "delivered", "Delivered to the front door", "Berlin")]


async def _delivered(kernel: Kernel, order: dict[str, Any]) -> None:
    await _ship(kernel, order, "postnord", "00370726200000000011")
    await _scans(kernel, "postnord", "00370726200000000011", JOURNEY)


async def _delayed(kernel: Kernel, order: dict[str, Any]) -> None:
    ship = await _ship(kernel, order, "postnord", "00370726200000000028")
    await _scans(kernel, "postnord", "00370726200000000028", JOURNEY[:3])
    # The promise was yesterday: the sweep finds it broken and cares for the customer.
    promised = (kernel.clock.now() - timedelta(days=1)).date()
    async with kernel.db.transaction() as uow:
        await uow.execute(shipments.update().where(shipments.c.id == ship["id"]).values(
            promised_date=promised, promised_by=kernel.clock.now() - timedelta(hours=2),
            eta=(kernel.clock.now() + timedelta(days=1)).date()))


async def _held_up(kernel: Kernel, order: dict[str, Any]) -> None:
    await _ship(kernel, order, "dhl", "JD014600006281230000")
    await _scans(kernel, "dhl", "JD014600006281230000", [
        *JOURNEY[:2], (10, "exception", "Address could not be found", "Berlin")])


async def _returned(kernel: Kernel, order: dict[str, Any]) -> None:
    await _ship(kernel, order, "postnord", "00370726200000000035")
    await _scans(kernel, "postnord", "00370726200000000035", JOURNEY)
    line = order["lines"][0]
    ret = await kernel.service(ReturnService).request(
        order_id=order["order_id"], actor="demo", customer_id=order["customer_id"],
        lines=[{"line_id": line["line_id"], "quantity": 1, "reason": "too_small"}])
    if ret.get("tracking_number"):
        # The carrier's first scan of the return parcel: the refund follows at once.
        await _scans(kernel, "postnord", ret["tracking_number"],
                     [(2, "in_transit", "Handed in at the service point", "Berlin")])


async def _waiting(kernel: Kernel, order: dict[str, Any]) -> None:
    await _ship(kernel, order, "dhl", "JD014600006281239999")


async def _unknown(kernel: Kernel) -> None:
    await _scans(kernel, "dhl", "JD999999999999999999",
                 [(5, "in_transit", "Processed at the hub", "Leipzig")])
