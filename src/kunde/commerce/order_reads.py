"""Reading orders: one order in full, a customer's orders, the console's search.

`OrderReads` also rebuilds the pure `models.Order` from its row (`_load`, which
every state change starts from) and finds an order by one of its keys. It is
mixed into `OrderService`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.commerce.errors import OrderNotFound
from kunde.commerce.models import Order, OrderLine
from kunde.commerce.tables import order_history, order_keys, order_lines, orders, payments, refunds

if TYPE_CHECKING:
    from kunde.kernel import Kernel


class OrderReads:
    """Reads of orders; mixed into `OrderService`, which provides ``kernel``."""

    kernel: Kernel

    async def id_by_key(self, conn: Any, kind: str, key: str) -> str | None:
        """The order holding ``key`` of ``kind`` ("number", "external_ref", "cart")."""
        found = (await conn.execute(sa.select(order_keys.c.order_id).where(
            order_keys.c.kind == kind, order_keys.c.key == key))).scalar()
        return None if found is None else str(found)

    async def _load(self, conn: Any, row: Any) -> Order:
        lines = await conn.execute(sa.select(order_lines).where(
            order_lines.c.order_id == row.id))
        order = Order(
            id=row.id, currency=row.currency, total_minor=row.total_minor,
            shipping_minor=row.shipping_minor or 0,
            lines={ln.id: OrderLine(ln.id, ln.sku, ln.quantity, ln.unit_price_minor,
                                    ln.total_minor) for ln in lines})
        order.load_facts(row.state or {})
        return order

    async def get_order(self, order_id: str) -> dict[str, Any]:
        """The order with lines (shipped/returned per line), payments, refunds and history."""
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(orders).where(orders.c.id == order_id))).first()
            if row is None:
                raise OrderNotFound(f"no order {order_id}")
            return await self._describe(conn, row)

    async def get_by_number(self, number: str) -> dict[str, Any]:
        async with self.kernel.db.read() as conn:
            order_id = await self.id_by_key(conn, "number", number)
            row = None if order_id is None else (await conn.execute(
                sa.select(orders).where(orders.c.id == order_id))).first()
            if row is None:
                raise OrderNotFound(f"no order {number}")
            return await self._describe(conn, row)

    async def _describe(self, conn: Any, row: Any) -> dict[str, Any]:
        order = await self._load(conn, row)
        line_rows = (await conn.execute(sa.select(order_lines).where(
            order_lines.c.order_id == row.id).order_by(order_lines.c.position))).all()
        pays = (await conn.execute(sa.select(payments).where(
            payments.c.order_id == row.id).order_by(payments.c.created_at))).all()
        refs = (await conn.execute(sa.select(refunds).where(
            refunds.c.order_id == row.id).order_by(refunds.c.created_at))).all()
        hist = (await conn.execute(sa.select(order_history).where(
            order_history.c.order_id == row.id).order_by(order_history.c.at,
                                                         order_history.c.id))).all()
        out = summary(row)
        out.update({
            "refundable_minor": order.refundable_minor,
            "lines": [{"line_id": ln.id, "sku": ln.sku, "product_id": ln.product_id,
                       "title": ln.title, "category": ln.category, "quantity": ln.quantity,
                       "unit_price_minor": ln.unit_price_minor, "total_minor": ln.total_minor,
                       "shipped": order.shipped(ln.id), "returned": order.returned(ln.id)}
                      for ln in line_rows],
            "shipments": order.shipments, "delivered_shipments": order.delivered,
            "returns": order.returns,
            "payments": [{"payment_id": p.id, "provider": p.provider, "status": p.status,
                          "amount_minor": p.amount_minor, "currency": p.currency,
                          "provider_ref": p.provider_ref, "decline_reason": p.decline_reason,
                          "created_at": p.created_at.isoformat()} for p in pays],
            "refunds": [{"refund_id": r.id, "amount_minor": r.amount_minor,
                         "method": r.method, "status": r.status, "reason": r.reason,
                         "return_id": r.return_id, "voucher_code": r.voucher_code,
                         "created_at": r.created_at.isoformat()} for r in refs],
            "history": [{"at": h.at.isoformat(), "from": h.from_status, "to": h.to_status,
                         "cause": h.cause, "cause_ref": h.cause_ref} for h in hist],
        })
        return out

    async def list_orders(self, customer_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The customer's orders, newest first (native and external)."""
        async with self.kernel.db.read() as conn:
            rows = await conn.execute(sa.select(orders).where(
                orders.c.customer_id == customer_id)
                .order_by(orders.c.placed_at.desc()).limit(limit))
            return [summary(r) for r in rows]

    async def search(self, *, status: str | None = None, external: bool | None = None,
                     number: str | None = None, customer_id: str | None = None,
                     limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Orders for the console and the API, newest first, filtered."""
        q = sa.select(orders)
        if status:
            q = q.where(orders.c.status == status)
        if external is not None:
            q = q.where(orders.c.external == external)
        if number:
            q = q.where(orders.c.number == number.strip().upper())
        if customer_id:
            q = q.where(orders.c.customer_id == customer_id)
        async with self.kernel.db.read() as conn:
            rows = await conn.execute(q.order_by(orders.c.placed_at.desc(), orders.c.id.desc())
                                      .limit(limit).offset(offset))
            return [summary(r) for r in rows]


def summary(row: Any) -> dict[str, Any]:
    return {
        "order_id": row.id, "number": row.number, "customer_id": row.customer_id,
        "channel": row.channel, "currency": row.currency, "external": bool(row.external),
        "status": row.status, "subtotal_minor": row.subtotal_minor,
        "discount_minor": row.discount_minor, "shipping_minor": row.shipping_minor,
        "total_minor": row.total_minor, "captured_minor": row.captured_minor,
        "refunded_minor": row.refunded_minor, "shipping_method": row.shipping_method,
        "promised_date": row.promised_date.isoformat() if row.promised_date else None,
        "placed_at": row.placed_at.isoformat(),
        "pseudonymised": row.pseudonymised_at is not None,
    }
