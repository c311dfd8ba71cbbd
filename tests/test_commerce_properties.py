"""Property-based tests of the order state machine: pure, then on the real databases with
retried and concurrent commands. A duplicate refund never pays twice; no invariant breaks."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kunde.commerce.errors import IdempotencyKeyReused, OrderRule
from kunde.commerce.gateway import PaymentGateway
from kunde.commerce.models import STATUSES, Order, OrderLine, OrderRuleBroken
from kunde.commerce.service_orders import OrderService
from kunde.commerce.tables import refunds, vouchers
from kunde.kernel import Kernel
from test_commerce_orders import paid_order

LINES = {"a": 3, "b": 1}
KEYS = st.sampled_from(["k1", "k2", "k3", "k4"])
AMOUNTS = st.sampled_from([1, 500, 1500, 4000, 9999])


class PureOrderMachine(RuleBasedStateMachine):
    """Any sequence of commands, repeated at will, keeps every invariant."""

    def __init__(self) -> None:
        super().__init__()
        self.order = Order("o", "EUR", 5000, {k: OrderLine(k, k, q, 1000, 1000 * q)
                                              for k, q in LINES.items()})
        self.refund_amounts: dict[str, int] = {}

    def _try(self, fn: Any) -> None:
        with contextlib.suppress(OrderRuleBroken):
            fn()

    @rule(pid=st.sampled_from(["p1", "p2"]), amount=st.sampled_from([2500, 5000]))
    def capture(self, pid: str, amount: int) -> None:
        self._try(lambda: self.order.capture(pid, amount))

    @rule(sid=st.sampled_from(["s1", "s2", "s3"]), a=st.integers(0, 3), b=st.integers(0, 1))
    def fulfil(self, sid: str, a: int, b: int) -> None:
        self._try(lambda: self.order.fulfil(sid, {"a": a, "b": b}))

    @rule(sid=st.sampled_from(["s1", "s2", "s3"]))
    def deliver(self, sid: str) -> None:
        self._try(lambda: self.order.deliver(sid))

    @rule(rid=st.sampled_from(["r1", "r2"]), a=st.integers(0, 3))
    def return_(self, rid: str, a: int) -> None:
        self._try(lambda: self.order.return_(rid, {"a": a}))

    @rule(key=KEYS, amount=AMOUNTS)
    def refund(self, key: str, amount: int) -> None:
        before = self.order.refunded_minor
        try:
            changed = self.order.refund(key, amount)
        except OrderRuleBroken:
            assert self.order.refunded_minor == before
            return
        if changed:
            self.refund_amounts[key] = amount
        else:  # a repeat: same amount, nothing paid again
            assert self.refund_amounts[key] == amount and self.order.refunded_minor == before

    @rule()
    def cancel(self) -> None:
        self._try(self.order.cancel)

    @invariant()
    def money_and_goods_add_up(self) -> None:
        o = self.order
        assert 0 <= o.refunded_minor <= o.captured_minor <= o.total_minor
        assert o.refunded_minor == sum(self.refund_amounts.values())
        for line_id, qty in LINES.items():
            assert 0 <= o.returned(line_id) <= o.shipped(line_id) <= qty
        assert o.status in STATUSES
        assert not (o.cancelled and any(o.shipped(i) for i in LINES))


TestPureOrderMachine = PureOrderMachine.TestCase
TestPureOrderMachine.settings = settings(max_examples=80, stateful_step_count=30,
                                         deadline=None)


# -- on the databases ---------------------------------------------------------------------
Command = tuple[str, str, int, str]  # kind, id/key, amount-or-qty, method
commands = st.lists(st.one_of(
    st.tuples(st.just("refund"), KEYS, AMOUNTS, st.sampled_from(["original", "store_credit"])),
    st.tuples(st.just("fulfil"), st.sampled_from(["s1", "s2"]), st.integers(1, 2),
              st.just("")),
    st.tuples(st.just("deliver"), st.sampled_from(["s1", "s2"]), st.just(0), st.just("")),
    st.tuples(st.just("return"), st.sampled_from(["r1", "r2"]), st.integers(1, 2),
              st.just("")),
), min_size=1, max_size=8)
# How each command is delivered: once, retried after it returned, or several at once.
deliveries = st.lists(st.sampled_from(["once", "retry", "concurrent"]), min_size=8,
                      max_size=8)


async def _run(kernel: Kernel, order: dict[str, Any], cmd: Command) -> None:
    svc = kernel.service(OrderService)
    kind, ref, n, method = cmd
    line = order["lines"][0]["line_id"]
    try:
        if kind == "refund":
            await svc.refund(order["order_id"], n, reason="property", method=method,
                             idempotency_key=ref)
            return
        async with kernel.db.transaction() as uow:
            if kind == "fulfil":
                await svc.record_fulfilment(uow, order["order_id"], {line: n}, ref)
            elif kind == "deliver":
                await svc.record_delivery(uow, order["order_id"], ref)
            else:
                await svc.record_return(uow, order["order_id"], {line: n}, ref)
    except (OrderRule, IdempotencyKeyReused):
        pass  # a refused command must leave no trace; checked below


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cmds=commands, how=deliveries)
async def test_retried_and_concurrent_commands_keep_invariants(
        kernel: Kernel, cmds: list[Command], how: list[str]) -> None:
    order = await paid_order(kernel, qty=3)  # 3 x 1500 + 1000 + 495 = 5995 captured
    psp = kernel.service(PaymentGateway).test
    for cmd, mode in zip(cmds, how, strict=False):
        copies = {"once": 1, "retry": 2, "concurrent": 3}[mode]
        if mode == "concurrent":
            await asyncio.gather(*[_run(kernel, order, cmd) for _ in range(copies)])
        else:
            for _ in range(copies):
                await _run(kernel, order, cmd)

    got = await kernel.service(OrderService).get_order(order["order_id"])
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(refunds).where(
            refunds.c.order_id == order["order_id"]))).all()
        credit = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(vouchers.c.value),
                                                                0)).where(
            vouchers.c.source == "refund",
            vouchers.c.source_ref.in_([r.id for r in rows])))).scalar_one()
        logged = await kernel.log.read(conn, types=["commerce.refund_issued"], limit=100_000)
    issued = Counter(e.payload["refund_id"] for e in logged
                     if e.payload and e.payload["order_id"] == order["order_id"])
    ok = [r for r in rows if r.status == "succeeded"]
    paid_out = sum(psp.refunds_paid.get(r.id, 0) for r in rows)
    # Every refund id is one key; money left once per id, by card or by voucher.
    assert len({r.idempotency_key for r in rows}) == len(rows)
    assert got["refunded_minor"] == sum(r.amount_minor for r in ok) == paid_out + credit
    assert got["refunded_minor"] <= got["captured_minor"] == 5995
    assert issued == Counter({r.id: 1 for r in ok})  # one event per refund, ever
    line = got["lines"][0]
    assert 0 <= line["returned"] <= line["shipped"] <= line["quantity"]
