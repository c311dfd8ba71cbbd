"""Shared set-up for the fulfilment tests: a customer, a paid order, signed carrier calls."""

from __future__ import annotations

import time
import uuid
from typing import Any

from kunde.commerce.service_orders import OrderService
from kunde.core import jsonutil
from kunde.fulfilment.config import FulfilmentConfig
from kunde.kernel import Kernel
from kunde.messaging import signing
from kunde.profiles.service import ProfileService

SECRET = "whsec_" + "dGVzdC1jYXJyaWVyLXNlY3JldC0xMjM0NTY="


async def customer(kernel: Kernel, email: str = "ada@example.com") -> str:
    return await kernel.service(ProfileService).ensure_customer(
        {"email": email}, "web", traits={"first_name": "Ada", "locale": "da-DK"})


async def paid_order(kernel: Kernel, customer_id: str, *, qty: int = 2,
                     external: bool = True) -> dict[str, Any]:
    """An order paid in full (external: the refund then needs no payment provider)."""
    orders = kernel.service(OrderService)
    async with kernel.db.transaction() as uow:
        order_id = await orders.place(
            uow, customer_id=customer_id, channel="web", currency="DKK", external=external,
            lines=[{"sku": "BOOT-42", "title": "Boots", "quantity": qty,
                    "unit_price_minor": 50000},
                   {"sku": "SOCK-1", "title": "Socks", "quantity": 1,
                    "unit_price_minor": 5000}])
        order = await orders._describe(uow, await _row(uow, order_id))
        await orders.capture(uow, order_id, f"pay-{order_id}", order["total_minor"])
    return await orders.get_order(order_id)


async def _row(uow: Any, order_id: str) -> Any:
    import sqlalchemy as sa

    from kunde.commerce.tables import orders

    return (await uow.execute(sa.select(orders).where(orders.c.id == order_id))).one()


async def configure_carriers(kernel: Kernel) -> None:
    config = kernel.service(FulfilmentConfig)
    for carrier in ("postnord", "dhl", "kunde"):
        await config.add_carrier_secret(carrier, SECRET)


def signed(body: dict[str, Any], *, msg_id: str | None = None, ts: int | None = None,
           secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    raw = jsonutil.dumps(body)
    hdrs = signing.headers(secret, msg_id or f"msg_{uuid.uuid4().hex}",
                           ts if ts is not None else int(time.time()), raw)
    hdrs["content-type"] = "application/json"
    return raw, hdrs


def postnord_event(item: str, code: str, at: str, **extra: Any) -> dict[str, Any]:
    return {"events": [{"itemId": item, "eventCode": code, "eventTime": at,
                        "eventDescription": code.replace("_", " ").title(),
                        "location": {"displayName": "Copenhagen"}, **extra}]}


def kunde_update(number: str, status: str, at: str, **extra: Any) -> dict[str, Any]:
    return {"updates": [{"tracking_number": number, "status": status, "at": at, **extra}]}


