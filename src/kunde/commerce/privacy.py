"""GDPR hooks of commerce: export everything about a customer; erase without losing the books.

Orders and their payments and refunds are accounting records: German law (HGB §257,
AO §147) requires keeping them ten years. Erasure therefore *pseudonymises* them —
the delivery address is dropped (and was sealed under the customer's key, which
privacy shreds), the order keeps only the customer's random id, which nothing links
to a person any more — and sets ``delete_after``; privacy's retention job deletes
orders through `purge` once the ``orders_invoices`` period has passed (legal holds
respected, counted in its report). Carts and unused vouchers are deleted at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.commerce.service_carts import CartService
from kunde.commerce.service_orders import OrderService
from kunde.commerce.tables import (
    cart_lines,
    carts,
    order_history,
    order_lines,
    orders,
    payments,
    refunds,
    vouchers,
)
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.kernel import Kernel


async def export(kernel: Kernel, customer_ids: Sequence[str]) -> dict[str, Any]:
    svc = kernel.service(OrderService)
    ids = list(customer_ids)
    async with kernel.db.read() as conn:
        order_ids = (await conn.execute(sa.select(orders.c.id).where(
            orders.c.customer_id.in_(ids)).order_by(orders.c.placed_at))).scalars().all()
        cart_rows = (await conn.execute(sa.select(carts).where(
            carts.c.customer_id.in_(ids)))).all()
        voucher_rows = (await conn.execute(sa.select(vouchers).where(
            vouchers.c.customer_id.in_(ids)))).all()
    carts_svc = kernel.service(CartService)
    return {
        "orders": [await svc.get_order(i) for i in order_ids],
        "carts": [await carts_svc.get(c.id) for c in cart_rows],
        "vouchers": [{"code": v.code, "kind": v.kind, "value": v.value,
                      "currency": v.currency, "source": v.source,
                      "created_at": v.created_at.isoformat(),
                      "expires_at": v.expires_at.isoformat() if v.expires_at else None,
                      "redeemed_at": v.redeemed_at.isoformat() if v.redeemed_at else None}
                     for v in voucher_rows],
    }


async def erase(kernel: Kernel, uow: UnitOfWork, customer_ids: Sequence[str]
                ) -> dict[str, int]:
    ids = list(customer_ids)
    now = kernel.clock.now()
    keep = timedelta(days=kernel.settings.retention_orders_invoices_days)
    rows = (await uow.execute(sa.select(orders.c.id, orders.c.placed_at).where(
        orders.c.customer_id.in_(ids), orders.c.pseudonymised_at.is_(None)))).all()
    for r in rows:
        await uow.execute(orders.update().where(orders.c.id == r.id).values(
            address_enc=None, pseudonymised_at=now, delete_after=r.placed_at + keep))
    cart_ids = (await uow.execute(sa.select(carts.c.id).where(
        carts.c.customer_id.in_(ids)))).scalars().all()
    carts_svc = kernel.service(CartService)
    for cart_id in cart_ids:
        await carts_svc._release(uow, cart_id, None, None)
        await uow.execute(cart_lines.delete().where(cart_lines.c.cart_id == cart_id))
    await uow.execute(carts.delete().where(carts.c.id.in_(list(cart_ids))))
    gone = await uow.execute(vouchers.delete().where(
        vouchers.c.customer_id.in_(ids), vouchers.c.redeemed_at.is_(None)))
    return {"orders_pseudonymised": len(rows), "carts_deleted": len(cart_ids),
            "vouchers_deleted": int(gone.rowcount)}


async def purge(kernel: Kernel, uow: UnitOfWork, data_class: str, cutoff: datetime,
                held: frozenset[str]) -> int:
    """Retention of ``orders_invoices`` (privacy's policy, ten years by default): orders
    placed before ``cutoff`` go with their lines, history, payments and refunds, except
    orders of customers under a legal hold. Returns orders deleted."""
    if data_class != "orders_invoices":
        return 0
    q = sa.select(orders.c.id).where(orders.c.placed_at < cutoff)
    if held:
        q = q.where(sa.or_(orders.c.customer_id.is_(None),
                           orders.c.customer_id.not_in(sorted(held))))
    purged = 0
    while ids := [str(i) for i in (await uow.execute(q.limit(500))).scalars().all()]:
        for table in (order_lines, order_history, payments, refunds):
            await uow.execute(table.delete().where(table.c.order_id.in_(ids)))
        purged += int((await uow.execute(orders.delete().where(orders.c.id.in_(ids)))).rowcount)
    return purged
