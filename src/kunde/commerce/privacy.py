"""GDPR hooks of commerce: export everything about a customer; erase without losing the books.

Orders and their payments and refunds are accounting records: German law (HGB §257,
AO §147) requires keeping them ten years. Erasure therefore *pseudonymises* them —
the delivery address is dropped (and was sealed under the customer's key, which
privacy shreds), the order keeps only the customer's random id, which nothing links
to a person any more — and sets ``delete_after``; the retention job deletes them
then. Carts and unused vouchers are deleted at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.commerce.service_carts import CartService
from kunde.commerce.service_orders import RETENTION, OrderService
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
from kunde.store.jobs import PeriodicJob

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
    rows = (await uow.execute(sa.select(orders.c.id, orders.c.placed_at).where(
        orders.c.customer_id.in_(ids), orders.c.pseudonymised_at.is_(None)))).all()
    for r in rows:
        await uow.execute(orders.update().where(orders.c.id == r.id).values(
            address_enc=None, pseudonymised_at=now, delete_after=r.placed_at + RETENTION))
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


async def purge_expired_orders(kernel: Kernel) -> int:
    """Delete pseudonymised orders whose legal retention ended."""
    async with kernel.db.transaction() as uow:
        ids = (await uow.execute(sa.select(orders.c.id).where(
            orders.c.delete_after < kernel.clock.now()).limit(1000))).scalars().all()
        if ids:
            for table in (order_lines, order_history, payments, refunds):
                await uow.execute(table.delete().where(table.c.order_id.in_(list(ids))))
            await uow.execute(orders.delete().where(orders.c.id.in_(list(ids))))
    return len(ids)


def retention_job(kernel: Kernel) -> PeriodicJob:
    async def run() -> str:
        return f"deleted {await purge_expired_orders(kernel)} orders past retention"

    return PeriodicJob(name="commerce.order_retention", every=timedelta(days=1), run=run)
