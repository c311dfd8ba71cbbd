"""Refunds of returned lines: order-level discounts and shipping allocated in integer
minor units (largest remainder), never more than captured — pure properties, then the
service and the returns flow on the real databases."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fulfilment_helpers import customer
from kunde.commerce.allocation import (
    SHIPPING_RULES,
    LineValue,
    OrderValue,
    largest_remainder,
)
from kunde.commerce.errors import IdempotencyKeyReused, OrderRule
from kunde.commerce.models import Order, OrderLine
from kunde.commerce.service_orders import OrderService
from kunde.fulfilment.service import FulfilmentService
from kunde.fulfilment.service_returns import ReturnService
from kunde.kernel import Kernel
from test_fulfilment_returns import customer_headers, scan

# -- largest remainder --------------------------------------------------------------------


def test_largest_remainder_examples() -> None:
    assert largest_remainder(100, [1, 1, 1]) == [34, 33, 33]
    assert largest_remainder(1000, [5000, 2500, 2500]) == [500, 250, 250]
    assert largest_remainder(7, [0, 0]) == [4, 3]  # all free: split evenly
    assert largest_remainder(0, [3, 4]) == [0, 0]
    with pytest.raises(ValueError, match="needs a total"):
        largest_remainder(-1, [1])


@given(st.integers(0, 10**9), st.lists(st.integers(0, 10**7), min_size=1, max_size=12))
def test_largest_remainder_sums_exactly_and_is_proportional(total: int,
                                                            weights: list[int]) -> None:
    parts = largest_remainder(total, weights)
    assert sum(parts) == total
    assert all(isinstance(p, int) and p >= 0 for p in parts)
    whole = sum(weights) or len(weights)
    for p, w in zip(parts, weights or [], strict=True):
        exact = total * (w if sum(weights) else 1) / whole
        assert abs(p - exact) < 1  # never more than one unit from the exact share


# -- the pure order: any order, any sequence of partial returns -----------------------------

LINE = st.tuples(st.integers(1, 5), st.integers(0, 20_000))  # quantity, unit price


@st.composite
def orders_and_returns(draw: Any) -> tuple[Order, list[dict[str, int]], str, int]:
    lines = draw(st.lists(LINE, min_size=1, max_size=5))
    order_lines = {f"l{i}": OrderLine(f"l{i}", f"SKU{i}", q, p, q * p)
                   for i, (q, p) in enumerate(lines)}
    subtotal = sum(ln.total_minor for ln in order_lines.values())
    discount = draw(st.integers(0, subtotal))
    shipping = draw(st.sampled_from([0, 495, 995, draw(st.integers(0, 5000))]))
    order = Order("o", "EUR", subtotal - discount + shipping, order_lines,
                  shipping_minor=shipping)
    # Every unit, in a random order, cut into random consecutive returns.
    units = [ln_id for ln_id, ln in order_lines.items() for _ in range(ln.quantity)]
    units = draw(st.permutations(units))
    cuts = sorted(draw(st.sets(st.integers(1, max(len(units) - 1, 1)), max_size=6)))
    returns: list[dict[str, int]] = []
    for a, b in zip([0, *cuts], [*cuts, len(units)], strict=True):
        chunk: dict[str, int] = {}
        for ln_id in units[a:b]:
            chunk[ln_id] = chunk.get(ln_id, 0) + 1
        if chunk:
            returns.append(chunk)
    rule = draw(st.sampled_from(SHIPPING_RULES))
    captured = draw(st.sampled_from([order.total_minor, draw(st.integers(
        0, order.total_minor))]))
    return order, returns, rule, captured


@settings(max_examples=300, deadline=None)
@given(orders_and_returns(), st.integers(0, 6))
def test_refunds_of_returns_never_exceed_capture_and_add_up(
        case: tuple[Order, list[dict[str, int]], str, int], stop: int) -> None:
    order, returns, rule, captured = case
    if captured:
        order.capture("pay", captured)
    taken = returns[:stop] if stop < len(returns) else returns
    paid = []
    for i, qty in enumerate(taken):
        order.refund_returned(f"r{i}", qty, rule)  # type: ignore[arg-type]
        amount = order.refunds[f"r{i}"]
        assert isinstance(amount, int) and amount >= 0
        paid.append(amount)
        # A retry is the same refund: nothing more is paid.
        assert order.refund_returned(f"r{i}", qty, rule) is False  # type: ignore[arg-type]
    assert sum(paid) <= captured
    if taken is returns:  # everything came back
        whole = order.total_minor - (order.shipping_minor if rule == "never" else 0)
        assert sum(paid) == min(captured, whole)
        if rule != "never":
            assert sum(paid) == captured


@settings(max_examples=150, deadline=None)
@given(orders_and_returns(), st.lists(st.integers(1, 3000), max_size=3))
def test_goodwill_refunds_in_between_still_never_exceed_capture(
        case: tuple[Order, list[dict[str, int]], str, int], goodwill: list[int]) -> None:
    order, returns, rule, captured = case
    if captured:
        order.capture("pay", captured)
    for i, qty in enumerate(returns):
        if i < len(goodwill) and goodwill[i] <= order.refundable_minor:
            order.refund(f"g{i}", goodwill[i])
        order.refund_returned(f"r{i}", qty, rule)  # type: ignore[arg-type]
        assert order.refunds[f"r{i}"] >= 0
    assert order.refunded_minor <= captured


@given(orders_and_returns())
def test_allocation_of_every_line_is_a_non_negative_integer(
        case: tuple[Order, list[dict[str, int]], str, int]) -> None:
    order, _, rule, _ = case
    value = order.value(rule)  # type: ignore[arg-type]
    shares = value.shares()
    assert all(isinstance(s, int) and s >= 0 for s in shares.values())
    assert all(s <= order.lines[k].total_minor or rule == "pro_rata"
               for k, s in shares.items())
    assert sum(shares.values()) == order.total_minor - (
        0 if rule == "pro_rata" else order.shipping_minor)


def test_discount_is_spread_and_shipping_refunded_with_the_last_unit() -> None:
    # 2 x 30.00 + 1 x 40.00, 10.00 voucher, 4.95 shipping: 94.95 paid.
    value = OrderValue.of([LineValue("a", 2, 6000), LineValue("b", 1, 4000)],
                          9495, 495)
    assert value.shares() == {"a": 5400, "b": 3600}
    assert value.refund_for({}, {"a": 1}) == 2700
    assert value.refund_for({"a": 1}, {"b": 1}) == 3600
    assert value.refund_for({"a": 1, "b": 1}, {"a": 1}) == 2700 + 495
    never = OrderValue.of(value.lines, 9495, 495, "never")
    assert never.value({"a": 2, "b": 1}) == 9000


def test_more_units_than_ordered_are_refused() -> None:
    order = Order("o", "EUR", 1000, {"a": OrderLine("a", "A", 1, 1000, 1000)})
    order.capture("p", 1000)
    order.refund_returned("r1", {"a": 1})
    from kunde.commerce.models import OrderRuleBroken

    with pytest.raises(OrderRuleBroken) as err:
        order.refund_returned("r2", {"a": 1})
    assert err.value.code == "commerce.overrefund_lines"


# -- the service, on SQLite and PostgreSQL -----------------------------------------------------


async def discounted_order(kernel: Kernel) -> dict[str, Any]:
    """2 x 30.00 + 1 x 40.00 with a 10.00 discount and 4.95 shipping, paid (external, so
    the refunds need no provider)."""
    cid = await customer(kernel)
    orders = kernel.service(OrderService)
    async with kernel.db.transaction() as uow:
        order_id = await orders.place(
            uow, customer_id=cid, channel="web", currency="EUR", external=True,
            discount_minor=1000, shipping_minor=495,
            lines=[{"sku": "TEE", "title": "Tee", "quantity": 2, "unit_price_minor": 3000},
                   {"sku": "CAP", "title": "Cap", "quantity": 1, "unit_price_minor": 4000}])
        await orders.capture(uow, order_id, f"pay-{order_id}", 9495)
    return await orders.get_order(order_id)


async def test_line_refunds_allocate_discount_and_shipping(kernel: Kernel) -> None:
    order = await discounted_order(kernel)
    tee, cap = (next(ln["line_id"] for ln in order["lines"] if ln["sku"] == s)
                for s in ("TEE", "CAP"))
    svc = kernel.service(OrderService)
    oid = order["order_id"]
    assert await svc.quote_refund(oid, {tee: 1}) == 2700
    first = await svc.refund(oid, None, reason="return", method="original",
                             idempotency_key="ret-1", lines={tee: 1})
    assert first["amount_minor"] == 2700 and first["status"] == "succeeded"
    # Retried: the same refund; other lines under the same key: refused.
    again = await svc.refund(oid, None, reason="return", method="original",
                             idempotency_key="ret-1", lines={tee: 1})
    assert again["refund_id"] == first["refund_id"] and again["amount_minor"] == 2700
    with pytest.raises(IdempotencyKeyReused):
        await svc.refund(oid, None, reason="return", method="original",
                         idempotency_key="ret-1", lines={cap: 1})
    second = await svc.refund(oid, None, reason="return", method="store_credit",
                              idempotency_key="ret-2", lines={cap: 1})
    assert second["amount_minor"] == 3600 and second["voucher_code"]
    # The last unit brings the shipping back: everything captured is refunded.
    last = await svc.refund(oid, None, reason="return", method="original",
                            idempotency_key="ret-3", lines={tee: 1})
    assert last["amount_minor"] == 2700 + 495
    fresh = await svc.get_order(oid)
    assert fresh["refunded_minor"] == fresh["captured_minor"] == 9495
    assert fresh["status"] == "refunded"
    with pytest.raises(OrderRule) as err:
        await svc.refund(oid, None, reason="return", method="original",
                         idempotency_key="ret-4", lines={tee: 1})
    assert err.value.code == "commerce.overrefund_lines"


async def test_nothing_left_to_refund_is_a_zero_refund(kernel: Kernel) -> None:
    order = await discounted_order(kernel)
    svc = kernel.service(OrderService)
    oid = order["order_id"]
    await svc.refund(oid, 9000, reason="goodwill", method="original", idempotency_key="gw")
    line = order["lines"][0]["line_id"]
    done = await svc.refund(oid, None, reason="return", method="original",
                            idempotency_key="ret-late", lines={line: 2})
    assert done["amount_minor"] == 495 and done["status"] == "succeeded"
    zero = await svc.refund(oid, None, reason="return", method="original",
                            idempotency_key="ret-zero", lines={order["lines"][1]["line_id"]: 1})
    assert zero["amount_minor"] == 0 and zero["status"] == "succeeded"
    assert (await svc.get_order(oid))["refunded_minor"] == 9495


async def test_returns_refund_the_allocated_amount(client: httpx.AsyncClient, kernel: Kernel,
                                                   admin_headers: dict[str, str]) -> None:
    from fulfilment_helpers import configure_carriers

    await configure_carriers(kernel)
    r = await client.put("/v1/fulfilment/policy", headers=admin_headers,
                         json={"refund_shipping": "free"})
    assert r.status_code == 422
    order = await discounted_order(kernel)
    r = await client.post("/v1/shipments", headers=admin_headers, json={
        "order_id": order["order_id"], "carrier": "kunde", "tracking_number": "ALLOC-1",
        "lines": {ln["line_id"]: ln["quantity"] for ln in order["lines"]}})
    assert r.status_code == 201, r.text
    await scan(client, kernel, "ALLOC-1", "delivered")
    me = customer_headers(kernel, order["customer_id"])
    refunded = 0
    for batch in ([(0, 1)], [(0, 1), (1, 1)]):
        r = await client.post("/v1/returns", headers=me, json={
            "order_id": order["order_id"],
            "lines": [{"line_id": order["lines"][i]["line_id"], "quantity": q,
                       "reason": "too_small"} for i, q in batch]})
        assert r.status_code == 201, r.text
        ret = r.json()
        returns = kernel.service(ReturnService)
        shipment = await kernel.service(FulfilmentService).get_shipment(ret["shipment_id"])
        await scan(client, kernel, shipment["tracking_number"], "in_transit")
        done = await returns.get(ret["id"])
        assert done["status"] in ("refunded", "in_transit"), done
        await returns.process_refunds()
        done = await returns.get(ret["id"])
        assert done["status"] == "refunded"
        refunded += done["amount_minor"]
    assert refunded == 9495  # 27.00, then 27.00 + 36.00 + the shipping
    assert (await kernel.service(OrderService).get_order(order["order_id"]))[
        "refunded_minor"] == 9495


async def test_refund_api_by_lines(client: httpx.AsyncClient, kernel: Kernel,
                                   admin_headers: dict[str, str]) -> None:
    order = await discounted_order(kernel)
    url = f"/v1/orders/{order['order_id']}/refunds"
    cap = next(ln["line_id"] for ln in order["lines"] if ln["sku"] == "CAP")
    r = await client.post(url, headers={**admin_headers, "Idempotency-Key": "api-1"},
                          json={"reason": "return", "lines": {cap: 1}})
    assert r.status_code == 201, r.text
    assert r.json()["amount_minor"] == 3600
    r = await client.post(url, headers={**admin_headers, "Idempotency-Key": "api-2"},
                          json={"reason": "nothing named"})
    assert r.status_code >= 400 and r.json()["code"] == "commerce.invalid_amount"
