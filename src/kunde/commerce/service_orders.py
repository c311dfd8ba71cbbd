"""Orders: placing and every state change, each one an event.

All changes go through `OrderService._mutate`, which locks the order row
(``SELECT … FOR UPDATE``; SQLite serialises writers anyway), rebuilds the pure
`models.Order`, applies one command, and writes the facts back together with a
status-history row and a ``commerce.order_status_changed`` event when the
derived status moved. Concurrent or retried commands therefore see each other's
effects and the idempotency keys inside the facts make repeats no-ops. Reading
orders is in `kunde.commerce.order_reads`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.commerce.allocation import ShippingRule
from kunde.commerce.errors import OrderNotFound, from_rule
from kunde.commerce.models import Order, OrderRuleBroken
from kunde.commerce.order_reads import OrderReads
from kunde.commerce.tables import (
    locations,
    order_history,
    order_keys,
    order_lines,
    orders,
    stock,
    variants,
)
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

RETENTION = timedelta(days=3653)  # HGB §257 / AO §147: ten years


def order_number(now: datetime) -> str:
    return f"K{now:%y%m%d}-{secrets.token_hex(3).upper()}"


class OrderService(OrderReads):
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    # -- placing ---------------------------------------------------------------------------
    async def place(self, uow: UnitOfWork, **order: Any) -> str:
        """Insert an order with its lines and emit ``commerce.order_placed``; returns its id.

        Takes `insert_order`'s keyword arguments. ``lines``: dicts with sku, product_id,
        title, category, quantity, unit_price_minor. ``captured`` (payment id, amount)
        records a payment taken before the order row existed (checkout), emitting
        ``commerce.order_paid`` too.
        """
        order_id, _, _ = await self.insert_order(uow, **order)
        return order_id

    async def insert_order(
        self,
        uow: UnitOfWork,
        *,
        customer_id: str | None,
        channel: str,
        currency: str,
        lines: Sequence[dict[str, Any]],
        discount_minor: int = 0,
        shipping_minor: int = 0,
        shipping_method: str = "standard",
        external: bool = False,
        external_ref: str | None = None,
        cart_id: str | None = None,
        voucher_code: str | None = None,
        promised_date: date | None = None,
        ship_country: str | None = None,
        address_enc: bytes | None = None,
        placed_at: datetime | None = None,
        captured: tuple[str, int] | None = None,
        order_id: str | None = None,
    ) -> tuple[str, str, str]:
        """`place`, returning (order id, number, status) for callers that show them.

        ``order_id``: the id checkout chose when it started the payment."""
        now = self.kernel.clock.now()
        placed_at = placed_at or now
        order_id = order_id or new_id()
        rows = []
        for i, ln in enumerate(lines):
            qty, unit = int(ln["quantity"]), int(ln["unit_price_minor"])
            rows.append({
                "id": new_id(), "order_id": order_id, "position": i, "sku": ln["sku"],
                "product_id": ln.get("product_id"), "title": ln.get("title") or ln["sku"],
                "category": ln.get("category") or "", "quantity": qty,
                "unit_price_minor": unit, "total_minor": qty * unit,
            })
        subtotal = sum(r["total_minor"] for r in rows)
        total = subtotal - discount_minor + shipping_minor
        order = Order(order_id, currency, total, {})
        if captured is not None:  # checkout's payment was captured before the order existed
            order.capture(*captured)
        number = await self._claim_keys(uow, order_id, placed_at, external_ref, cart_id)
        await uow.execute(orders.insert().values(
            id=order_id, number=number, customer_id=customer_id,
            channel=channel, currency=currency, external=external, external_ref=external_ref,
            cart_id=cart_id, status=order.status, subtotal_minor=subtotal,
            discount_minor=discount_minor, shipping_minor=shipping_minor, total_minor=total,
            captured_minor=order.captured_minor, shipping_method=shipping_method,
            voucher_code=voucher_code, promised_date=promised_date, ship_country=ship_country,
            address_enc=address_enc, placed_at=placed_at, updated_at=now, state=order.facts(),
        ))
        if rows:
            await uow.execute(order_lines.insert(), rows)
        history: list[tuple[str, str | None, str, str | None]] = [
            ("placed", None, "commerce.order_placed", None)]
        if order.status != "placed":
            history.append((order.status, "placed", "commerce.order_paid", captured[0]
                            if captured else None))
        await uow.execute(order_history.insert(), [
            {"id": new_id(), "order_id": order_id, "at": now, "from_status": before,
             "to_status": after, "cause": cause, "cause_ref": ref}
            for after, before, cause, ref in history])
        uow.emit(Event.new("commerce.order_placed", {
            "order_id": order_id, "number": number, "customer_id": customer_id,
            "channel": channel, "currency": currency, "external": external,
            "lines": [{"line_id": r["id"], "sku": r["sku"], "product_id": r["product_id"],
                       "title": r["title"], "category": r["category"],
                       "quantity": r["quantity"], "unit_price_minor": r["unit_price_minor"],
                       "total_minor": r["total_minor"]} for r in rows],
            "subtotal_minor": subtotal, "discount_minor": discount_minor,
            "shipping_minor": shipping_minor, "total_minor": total,
            "shipping_method": shipping_method,
            "promised_date": promised_date.isoformat() if promised_date else None,
        }, subject_id=customer_id, source=channel, occurred_at=placed_at))
        if order.status != "placed":
            uow.emit(Event.new("commerce.order_status_changed", {
                "order_id": order_id, "from": "placed", "to": order.status,
                "cause": "commerce.order_paid", "cause_ref": captured[0] if captured else None},
                subject_id=customer_id, source="commerce"))
            uow.emit(Event.new("commerce.order_paid", {
                "order_id": order_id, "amount_minor": order.captured_minor,
                "currency": currency, "external": external,
            }, subject_id=customer_id, source=channel))
        return order_id, number, order.status

    async def _claim_keys(self, uow: UnitOfWork, order_id: str, placed_at: datetime,
                          external_ref: str | None, cart_id: str | None) -> str:
        """Claim what must be unique across all orders (orders are distributed by id):
        a fresh order number, and the external reference and cart, whose second claim
        fails the transaction (re-imports and a second order for a cart cannot land)."""
        for _ in range(8):
            number = order_number(placed_at)
            claimed = await uow.execute(insert_ignore(uow.dialect, order_keys, ["kind", "key"]),
                                        {"kind": "number", "key": number, "order_id": order_id})
            if claimed.rowcount == 1:
                break
        else:
            raise RuntimeError("no free order number after 8 tries")
        taken = [("external_ref", external_ref), ("cart", cart_id)]
        rows = [{"kind": k, "key": v, "order_id": order_id} for k, v in taken if v]
        if rows:
            await uow.execute(order_keys.insert(), rows)
        return number

    async def capture(self, uow: UnitOfWork, order_id: str, payment_id: str,
                      amount_minor: int) -> bool:
        """Record money captured for the order; emits ``commerce.order_paid`` once fully paid."""
        order, changed, row = await self._mutate(
            uow, order_id, lambda o: o.capture(payment_id, amount_minor),
            "commerce.order_paid", payment_id)
        if changed and order.captured_minor >= order.total_minor:
            uow.emit(Event.new("commerce.order_paid", {
                "order_id": order_id, "amount_minor": order.captured_minor,
                "currency": order.currency, "external": bool(row.external),
            }, subject_id=row.customer_id, source=row.channel))
        return changed

    async def cancel(self, uow: UnitOfWork, order_id: str, reason: str) -> bool:
        """Cancel before anything shipped; native orders' units go back on the shelf.

        Money is not refunded here: refund separately (the customer may be owed less).
        """
        order, changed, row = await self._mutate(uow, order_id, lambda o: o.cancel(),
                                                 "commerce.order_cancelled", reason)
        if changed and not row.external:
            await self._restock(uow, order)
        if changed:
            uow.emit(Event.new("commerce.order_cancelled", {"order_id": order_id,
                                                            "reason": reason},
                               subject_id=row.customer_id, source="commerce"))
        return changed

    async def _restock(self, uow: UnitOfWork, order: Order) -> None:
        """Units of a cancelled order return to the variant's first warehouse (by code)."""
        for line in sorted(order.lines.values(), key=lambda ln: ln.sku):
            target = (await uow.execute(
                sa.select(stock.c.variant_id, stock.c.location_id)
                .join(variants, variants.c.id == stock.c.variant_id)
                .join(locations, locations.c.id == stock.c.location_id)
                .where(variants.c.sku == line.sku)
                .order_by(sa.case((locations.c.kind == "warehouse", 0), else_=1),
                          locations.c.code).limit(1))).first()
            if target is not None:
                await uow.execute(stock.update().where(
                    stock.c.variant_id == target.variant_id,
                    stock.c.location_id == target.location_id)
                    .values(on_hand=stock.c.on_hand + line.quantity))

    # -- driven by fulfilment ----------------------------------------------------------------
    async def record_fulfilment(self, uow: UnitOfWork, order_id: str,
                                quantities: dict[str, int], shipment_id: str) -> bool:
        """Lines leave in a shipment. Idempotent by shipment id; never ships more than ordered."""
        _, changed, _ = await self._mutate(
            uow, order_id, lambda o: o.fulfil(shipment_id, quantities),
            "fulfilment.shipment_created", shipment_id)
        return changed

    async def record_delivery(self, uow: UnitOfWork, order_id: str, shipment_id: str) -> bool:
        _, changed, _ = await self._mutate(uow, order_id, lambda o: o.deliver(shipment_id),
                                           "fulfilment.shipment_delivered", shipment_id)
        return changed

    async def record_return(self, uow: UnitOfWork, order_id: str,
                            quantities: dict[str, int], return_id: str) -> bool:
        """Goods came back. Idempotent by return id; never more than was shipped."""
        _, changed, _ = await self._mutate(
            uow, order_id, lambda o: o.return_(return_id, quantities),
            "fulfilment.return_received", return_id)
        return changed

    async def refund(self, order_id: str, amount_minor: int | None, *, reason: str,
                     method: str, idempotency_key: str, return_id: str | None = None,
                     lines: dict[str, int] | None = None,
                     shipping_rule: ShippingRule = "full_return") -> dict[str, Any]:
        """Refund to the original payment or as store credit; see `refunds.refund`.

        ``amount_minor=None`` with ``lines``: refund those returned units at what was
        paid for them (discounts spread pro rata, shipping by ``shipping_rule``; see
        `kunde.commerce.allocation`), computed under the order's lock."""
        from kunde.commerce.refunds import refund

        return await refund(self.kernel, order_id, amount_minor, reason=reason, method=method,
                            idempotency_key=idempotency_key, return_id=return_id, lines=lines,
                            shipping_rule=shipping_rule)

    async def quote_refund(self, order_id: str, lines: dict[str, int],
                           shipping_rule: ShippingRule = "full_return") -> int:
        """What refunding ``lines`` would pay now (an estimate: other refunds may come
        first; the amount is fixed when the refund is made)."""
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(orders).where(orders.c.id == order_id))).first()
            if row is None:
                raise OrderNotFound(f"no order {order_id}")
            order = await self._load(conn, row)
        try:
            return order.quote_lines(lines, shipping_rule)
        except OrderRuleBroken as exc:
            raise from_rule(exc) from exc

    # -- the one way state changes -------------------------------------------------------------
    async def _mutate(self, uow: UnitOfWork, order_id: str, command: Callable[[Order], bool],
                      cause: str, cause_ref: str | None) -> tuple[Order, bool, Any]:
        row = (await uow.execute(
            sa.select(orders).where(orders.c.id == order_id).with_for_update())).first()
        if row is None:
            raise OrderNotFound(f"no order {order_id}")
        order = await self._load(uow, row)
        before = order.status
        try:
            changed = command(order)
        except OrderRuleBroken as exc:
            raise from_rule(exc) from exc
        if not changed:
            return order, False, row
        after = order.status
        await uow.execute(orders.update().where(orders.c.id == order_id).values(
            state=order.facts(), status=after, captured_minor=order.captured_minor,
            refunded_minor=order.refunded_minor, version=orders.c.version + 1,
            updated_at=self.kernel.clock.now()))
        if after != before:
            await self._history(uow, order_id, before, after, cause, cause_ref)
            uow.emit(Event.new("commerce.order_status_changed", {
                "order_id": order_id, "from": before, "to": after, "cause": cause,
                "cause_ref": cause_ref}, subject_id=row.customer_id, source="commerce"))
        return order, True, row

    async def _history(self, uow: UnitOfWork, order_id: str, before: str | None, after: str,
                       cause: str, cause_ref: str | None) -> None:
        await uow.execute(order_history.insert().values(
            id=new_id(), order_id=order_id, at=self.kernel.clock.now(), from_status=before,
            to_status=after, cause=cause, cause_ref=cause_ref))
