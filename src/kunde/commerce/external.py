"""External orders: placed in another shop, recorded beside native ones (``external=true``).

Two ways in, both idempotent by ``<source>:<their order id>`` (a unique column):
the bulk import API and the ``interaction.recorded`` consumer (kind
``order_completed``). Each becomes an order that is placed and paid at once, so
loyalty and personalisation see ``commerce.order_placed`` + ``commerce.order_paid``
exactly as for native orders. An ``Order Completed`` that names one of Kunde's
own orders (the shop reporting a checkout it made through Kunde) is skipped.
``Order Cancelled`` and ``Order Refunded`` for an external order cancel it and record
the refund (``commerce.refund_issued``, method ``original``, money moved by the shop).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa

from kunde.commerce.errors import BadImport
from kunde.commerce.service_carts import ensure_customer
from kunde.commerce.service_orders import OrderService
from kunde.commerce.tables import orders, products, variants
from kunde.core.events import Event
from kunde.store.consumers import Consumer
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.kernel import Kernel


class ExternalLineIn(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    quantity: int
    unit_price_minor: int
    title: str | None = None
    category: str | None = None
    product_id: str | None = None


class ExternalOrderIn(msgspec.Struct, forbid_unknown_fields=True):
    external_id: str
    currency: str
    lines: list[ExternalLineIn]
    source: str = "shop"
    customer_id: str | None = None
    email: str | None = None
    channel: str = "web"
    placed_at: datetime | None = None
    discount_minor: int = 0
    shipping_minor: int = 0


async def import_orders(kernel: Kernel, items: Sequence[ExternalOrderIn]) -> dict[str, Any]:
    """Record each order once; returns how many were new and which were already known."""
    created, known = 0, 0
    async with kernel.db.transaction() as uow:
        for item in items:
            if not item.lines or any(ln.quantity <= 0 or ln.unit_price_minor < 0
                                     for ln in item.lines):
                raise BadImport(f"order {item.external_id}: lines need quantity > 0 and "
                                "price ≥ 0")
            customer_id = item.customer_id
            if item.email and not customer_id:
                customer_id = await ensure_customer(kernel, uow, item.email, item.channel)
            new = await record_external(
                kernel, uow, ref=f"{item.source}:{item.external_id}", customer_id=customer_id,
                channel=item.channel, currency=item.currency.upper(),
                lines=[msgspec.structs.asdict(ln) for ln in item.lines],
                discount_minor=item.discount_minor, shipping_minor=item.shipping_minor,
                placed_at=item.placed_at)
            created += 1 if new else 0
            known += 0 if new else 1
    return {"created": created, "already_known": known}


async def record_external(kernel: Kernel, uow: UnitOfWork, *, ref: str,
                          customer_id: str | None, channel: str, currency: str,
                          lines: list[dict[str, Any]], discount_minor: int = 0,
                          shipping_minor: int = 0, placed_at: datetime | None = None
                          ) -> str | None:
    """Place and mark paid an external order; None when ``ref`` was recorded before."""
    svc = kernel.service(OrderService)
    if await svc.id_by_key(uow, "external_ref", ref[:200]) is not None:
        return None
    enriched = await _from_catalog(uow, lines)
    total = sum(ln["quantity"] * ln["unit_price_minor"] for ln in enriched) \
        - discount_minor + shipping_minor
    return await svc.place(
        uow, customer_id=customer_id, channel=channel, currency=currency, lines=enriched,
        discount_minor=discount_minor, shipping_minor=shipping_minor,
        shipping_method="external", external=True, external_ref=ref[:200],
        placed_at=placed_at, captured=("external:" + ref, total) if total > 0 else None)


async def _from_catalog(conn: Any, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill product id, title and category from the catalog where the SKU is known."""
    skus = [ln["sku"] for ln in lines]
    rows = await conn.execute(
        sa.select(variants.c.sku, variants.c.product_id, variants.c.title,
                  products.c.category)
        .join(products, products.c.id == variants.c.product_id)
        .where(variants.c.sku.in_(skus)))
    known = {r.sku: r for r in rows}
    out = []
    for ln in lines:
        k = known.get(ln["sku"])
        out.append({
            "sku": ln["sku"], "quantity": int(ln["quantity"]),
            "unit_price_minor": int(ln["unit_price_minor"]),
            "product_id": ln.get("product_id") or (k.product_id if k else None),
            "title": ln.get("title") or (k.title if k else ln["sku"]),
            "category": ln.get("category") or (k.category if k else ""),
        })
    return out


async def _on_interactions(kernel: Kernel, uow: UnitOfWork, events: Sequence[Event]) -> None:
    for e in events:
        p = e.payload or {}
        if not p.get("order_id"):
            continue
        if p.get("kind") in ("order_cancelled", "order_refunded"):
            await _after_sale(kernel, uow, e, p)
            continue
        if p.get("kind") != "order_completed":
            continue
        their_id = str(p["order_id"])
        by_number = await kernel.service(OrderService).id_by_key(uow, "number", their_id)
        native = (await uow.execute(sa.select(orders.c.id).where(
            orders.c.id.in_(sorted({their_id, by_number or their_id})),
            orders.c.external.is_(False)))).first()
        if native is not None:
            continue
        lines = [{"sku": str(x.get("sku") or x.get("product_id") or "unknown"),
                  "quantity": int(x.get("quantity") or 1),
                  "unit_price_minor": int(x.get("price_minor") or 0),
                  "product_id": x.get("product_id"), "category": x.get("category")}
                 for x in (p.get("products") or [])]
        if not lines and p.get("revenue_minor"):
            lines = [{"sku": "external", "quantity": 1,
                      "unit_price_minor": int(p["revenue_minor"])}]
        if not lines:
            continue
        subtotal = sum(ln["quantity"] * ln["unit_price_minor"] for ln in lines)
        revenue = p.get("revenue_minor")
        discount = max(0, subtotal - int(revenue)) if revenue is not None else 0
        await record_external(
            kernel, uow, ref=f"{p.get('channel') or e.source}:{their_id}",
            customer_id=e.subject_id, channel=str(p.get("channel") or e.source),
            currency=str(p.get("currency") or "EUR").upper(), lines=lines,
            discount_minor=discount, placed_at=e.occurred_at)


async def _after_sale(kernel: Kernel, uow: UnitOfWork, e: Event, p: dict[str, Any]) -> None:
    """Order Cancelled / Order Refunded from the external shop, for its external orders."""
    from kunde.commerce.errors import OrderRule
    from kunde.commerce.refunds import record_external_refund

    ref = f"{p.get('channel') or e.source}:{p['order_id']}"[:200]
    order_id = await kernel.service(OrderService).id_by_key(uow, "external_ref", ref)
    row = None if order_id is None else (await uow.execute(
        sa.select(orders.c.id, orders.c.total_minor).where(orders.c.id == order_id))).first()
    if row is None:
        return  # not an order we recorded (or one of Kunde's own: refunded here already)
    if p["kind"] == "order_cancelled":
        with contextlib.suppress(OrderRule):  # it shipped: the shop will send a refund
            await kernel.service(OrderService).cancel(uow, row.id,
                                                      "cancelled in the external shop")
        return
    amount = int(p.get("revenue_minor") or row.total_minor)
    await record_external_refund(kernel, uow, row.id, amount, f"interaction:{e.id}",
                                 "refunded in the external shop")


def consumers(kernel: Kernel) -> list[Consumer]:
    async def handle(uow: UnitOfWork, events: Sequence[Event]) -> None:
        await _on_interactions(kernel, uow, events)

    return [Consumer(name="commerce.external_orders", handle=handle,
                     types=frozenset({"interaction.recorded"}))]
