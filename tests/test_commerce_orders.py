"""Orders through OrderService: the contract fulfilment, loyalty and the portal rely on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from kunde.commerce.errors import IdempotencyKeyReused, OrderRule
from kunde.commerce.gateway import PaymentGateway
from kunde.commerce.service_orders import OrderService
from kunde.commerce.service_vouchers import VoucherService
from kunde.commerce.tables import payments, vouchers
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.store.tables import events


async def paid_order(kernel: Kernel, customer_id: str | None = None, *, qty: int = 2,
                     price: int = 1500) -> dict[str, Any]:
    """A paid native order with two lines, as checkout would leave it."""
    svc = kernel.service(OrderService)
    customer_id = customer_id or new_id()
    async with kernel.db.transaction() as uow:
        order_id = await svc.place(
            uow, customer_id=customer_id, channel="web", currency="EUR",
            lines=[{"sku": "TEE-M", "title": "Tee M", "quantity": qty, "unit_price_minor": price},
                   {"sku": "CAP", "title": "Cap", "quantity": 1, "unit_price_minor": 1000}],
            shipping_minor=495)
        total = qty * price + 1000 + 495
        payment_id = new_id()
        now = kernel.clock.now()
        await uow.execute(payments.insert().values(
            id=payment_id, order_id=order_id, provider="test", provider_ref="tp_" + payment_id,
            status="captured", amount_minor=total, currency="EUR", created_at=now,
            updated_at=now))
        await svc.capture(uow, order_id, payment_id, total)
    return await svc.get_order(order_id)


async def event_types(kernel: Kernel, prefix: str = "commerce.") -> list[str]:
    async with kernel.db.read() as conn:
        rows = await conn.execute(sa.select(events.c.type).where(
            events.c.type.like(prefix + "%")).order_by(events.c.position))
        return [r for (r,) in rows]


async def test_order_lifecycle_through_the_contract(kernel: Kernel) -> None:
    svc = kernel.service(OrderService)
    order = await paid_order(kernel)
    assert order["status"] == "paid" and order["captured_minor"] == 4495
    tee, cap = (ln["line_id"] for ln in order["lines"])

    async with kernel.db.transaction() as uow:
        assert await svc.record_fulfilment(uow, order["order_id"], {tee: 1}, "shp-1")
    assert (await svc.get_order(order["order_id"]))["status"] == "partially_fulfilled"
    async with kernel.db.transaction() as uow:
        assert not await svc.record_fulfilment(uow, order["order_id"], {tee: 1}, "shp-1")
        assert await svc.record_fulfilment(uow, order["order_id"], {tee: 1, cap: 1}, "shp-2")
    assert (await svc.get_order(order["order_id"]))["status"] == "fulfilled"
    with pytest.raises(OrderRule) as info:
        async with kernel.db.transaction() as uow:
            await svc.record_fulfilment(uow, order["order_id"], {cap: 1}, "shp-3")
    assert info.value.code == "commerce.overshipment"

    async with kernel.db.transaction() as uow:
        await svc.record_delivery(uow, order["order_id"], "shp-1")
        await svc.record_delivery(uow, order["order_id"], "shp-2")
    assert (await svc.get_order(order["order_id"]))["status"] == "delivered"

    async with kernel.db.transaction() as uow:
        assert await svc.record_return(uow, order["order_id"], {tee: 1}, "ret-1")
    got = await svc.get_order(order["order_id"])
    assert got["status"] == "partially_returned"
    assert [ln["returned"] for ln in got["lines"]] == [1, 0]

    r1 = await svc.refund(order["order_id"], 1500, reason="return", method="original",
                          idempotency_key="ret-1", return_id="ret-1", lines={tee: 1})
    assert r1["status"] == "succeeded" and r1["amount_minor"] == 1500
    again = await svc.refund(order["order_id"], 1500, reason="return", method="original",
                             idempotency_key="ret-1", return_id="ret-1", lines={tee: 1})
    assert again["refund_id"] == r1["refund_id"]
    assert kernel.service(PaymentGateway).test.refunds_paid == {r1["refund_id"]: 1500}
    got = await svc.get_order(order["order_id"])
    assert got["status"] == "partially_refunded" and got["refunded_minor"] == 1500
    assert [h["to"] for h in got["history"]] == [
        "placed", "paid", "partially_fulfilled", "fulfilled", "delivered",
        "partially_returned", "partially_refunded"]

    types = await event_types(kernel)
    assert types.count("commerce.refund_issued") == 1
    assert types[:2] == ["commerce.order_placed", "commerce.order_status_changed"]
    assert "commerce.order_paid" in types


async def test_refund_never_exceeds_capture_and_key_reuse_is_refused(kernel: Kernel) -> None:
    svc = kernel.service(OrderService)
    order = await paid_order(kernel)
    with pytest.raises(OrderRule) as info:
        await svc.refund(order["order_id"], 5000, reason="x", method="original",
                         idempotency_key="k1")
    assert info.value.code == "commerce.refund_exceeds_capture"
    await svc.refund(order["order_id"], 4000, reason="x", method="original",
                     idempotency_key="k1")
    with pytest.raises(IdempotencyKeyReused):
        await svc.refund(order["order_id"], 400, reason="x", method="original",
                         idempotency_key="k1")
    with pytest.raises(OrderRule):
        await svc.refund(order["order_id"], 496, reason="x", method="original",
                         idempotency_key="k2")
    last = await svc.refund(order["order_id"], 495, reason="x", method="store_credit",
                            idempotency_key="k3")
    assert last["voucher_code"].startswith("KV-")
    got = await svc.get_order(order["order_id"])
    assert got["status"] == "refunded" and got["refundable_minor"] == 0


async def test_concurrent_duplicate_refunds_pay_once(kernel: Kernel) -> None:
    svc = kernel.service(OrderService)
    order = await paid_order(kernel)
    results = await asyncio.gather(*[
        svc.refund(order["order_id"], 1000, reason="dup", method="original",
                   idempotency_key="same") for _ in range(5)])
    assert {r["refund_id"] for r in results} == {results[0]["refund_id"]}
    assert sum(kernel.service(PaymentGateway).test.refunds_paid.values()) == 1000
    assert (await svc.get_order(order["order_id"]))["refunded_minor"] == 1000
    assert (await event_types(kernel)).count("commerce.refund_issued") == 1


async def test_cancel_before_shipping_only(kernel: Kernel) -> None:
    svc = kernel.service(OrderService)
    order = await paid_order(kernel)
    async with kernel.db.transaction() as uow:
        await svc.record_fulfilment(uow, order["order_id"],
                                    {order["lines"][0]["line_id"]: 1}, "s1")
    with pytest.raises(OrderRule):
        async with kernel.db.transaction() as uow:
            await svc.cancel(uow, order["order_id"], "customer asked")
    other = await paid_order(kernel)
    async with kernel.db.transaction() as uow:
        assert await svc.cancel(uow, other["order_id"], "customer asked")
    assert (await svc.get_order(other["order_id"]))["status"] == "cancelled"
    assert "commerce.order_cancelled" in await event_types(kernel)


async def test_list_orders_of_a_customer(kernel: Kernel) -> None:
    cid = new_id()
    a = await paid_order(kernel, cid)
    b = await paid_order(kernel, cid)
    await paid_order(kernel)
    listed = await kernel.service(OrderService).list_orders(cid)
    assert {o["order_id"] for o in listed} == {a["order_id"], b["order_id"]}


async def test_voucher_issue_is_idempotent_by_cause(kernel: Kernel) -> None:
    svc = kernel.service(VoucherService)
    cid = new_id()
    async with kernel.db.transaction() as uow:
        code = await svc.issue(uow, customer_id=cid, kind="amount", value=500, currency="eur",
                               source="loyalty", source_ref="reward-1", expires_at=None)
        same = await svc.issue(uow, customer_id=cid, kind="amount", value=500,
                               currency="EUR", source="loyalty", source_ref="reward-1",
                               expires_at=None)
    assert code == same and code.startswith("KV-")
    async with kernel.db.read() as conn:
        n = (await conn.execute(sa.select(sa.func.count()).select_from(vouchers))).scalar()
        found = await svc.check(conn, code, customer_id=cid, currency="EUR")
    assert n == 1 and found["value"] == 500
    assert (await event_types(kernel)).count("commerce.voucher_issued") == 1
