"""Guarantees that hold across all orders, vouchers and returns although their rows are
distributed by order id or code (docs/commerce.md, "Distribution (Citus)"): order
numbers, external references and carts, one voucher per cause, RMA numbers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from kunde.commerce.external import record_external
from kunde.commerce.service_orders import OrderService
from kunde.commerce.service_vouchers import VoucherService
from kunde.commerce.tables import order_keys, voucher_causes, vouchers
from kunde.core.ids import new_id
from kunde.fulfilment import service_returns
from kunde.fulfilment.models import rma_number
from kunde.fulfilment.service_returns import ReturnService
from kunde.fulfilment.tables import return_rmas
from kunde.kernel import Kernel

LINES = [{"sku": "TEE-M", "title": "Tee", "quantity": 1, "unit_price_minor": 1000}]


async def _place(kernel: Kernel, **extra: Any) -> tuple[str, str, str]:
    async with kernel.db.transaction() as uow:
        return await kernel.service(OrderService).insert_order(
            uow, customer_id=None, channel="web", currency="EUR", lines=LINES, **extra)


async def test_numbers_references_and_carts_name_one_order(kernel: Kernel) -> None:
    order_id, number, _ = await _place(kernel, cart_id="cart-1")
    assert (await kernel.service(OrderService).get_by_number(number))["order_id"] == order_id
    # One order per cart: a second order for the cart fails as a whole.
    with pytest.raises(IntegrityError):
        await _place(kernel, cart_id="cart-1")
    async with kernel.db.transaction() as uow:
        first = await record_external(kernel, uow, ref="shop:9", customer_id=None,
                                      channel="shop", currency="EUR", lines=LINES)
    async with kernel.db.transaction() as uow:
        again = await record_external(kernel, uow, ref="shop:9", customer_id=None,
                                      channel="shop", currency="EUR", lines=LINES)
    assert first is not None and again is None
    # Even past the check (a concurrent import), the reference cannot be taken twice.
    with pytest.raises(IntegrityError):
        await _place(kernel, external=True, external_ref="shop:9")
    async with kernel.db.read() as conn:
        keys = (await conn.execute(sa.select(order_keys.c.kind, order_keys.c.order_id)
                                   .order_by(order_keys.c.kind))).all()
    assert sorted(k for k, _ in keys) == ["cart", "external_ref", "number", "number"]
    assert ("cart", order_id) in [tuple(k) for k in keys]


async def test_one_voucher_per_cause_across_customers(kernel: Kernel) -> None:
    svc = kernel.service(VoucherService)
    codes = []
    for customer_id in (new_id(), new_id(), None):
        async with kernel.db.transaction() as uow:
            codes.append(await svc.issue(
                uow, customer_id=customer_id, kind="amount", value=500, currency="EUR",
                source="goodwill", source_ref="case-1", expires_at=None))
    assert len(set(codes)) == 1
    async with kernel.db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(vouchers))
                ).scalar() == 1
        assert (await conn.execute(sa.select(voucher_causes.c.code))).scalar() == codes[0]


async def test_a_taken_rma_number_draws_a_new_return_id(
        kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    taken, fresh = new_id(), new_id()
    ids: Iterator[str] = iter([taken, taken, fresh])
    monkeypatch.setattr(service_returns, "new_id", lambda: next(ids))
    svc = kernel.service(ReturnService)
    async with kernel.db.transaction() as uow:
        assert await svc._claim_rma(uow, "order-1") == taken
    async with kernel.db.transaction() as uow:
        assert await svc._claim_rma(uow, "order-2") == fresh
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(return_rmas.c.rma, return_rmas.c.order_id)
                                   .order_by(return_rmas.c.order_id))).all()
    assert [tuple(r) for r in rows] == [(rma_number(taken), "order-1"),
                                        (rma_number(fresh), "order-2")]
