"""Checkout: cart → order and payment, in two short transactions around the provider call.

1. *Prepare* (one transaction): refuse with a clear problem and **no order** when a
   price moved (the cart takes the new price, so the customer can confirm it) or a
   line cannot be reserved; otherwise hold the voucher, record the payment attempt
   and mark the cart ``checking_out`` so a second checkout cannot race it.
2. *Charge*: the provider is called with the payment id as idempotency key.
3. *Settle* (one transaction): approved or pending → the order is placed, stock
   leaves the shelves, the cart is ``ordered`` (and ``order_paid`` follows a
   capture); declined → nothing was captured, the voucher is freed and the cart
   is ``open`` again, ready for another payment method.

Checkout is a hot path, so each transaction does all it can: *prepare* also takes
the request's ``Idempotency-Key`` and resumes an interrupted attempt, reading the
cart once; *settle* also keeps the response for the key (`idempotency.claim_in`,
`store_in`). Two commits per order, no more.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.commerce import pricing
from kunde.commerce.errors import OutOfStock, PaymentDeclined, PriceChanged
from kunde.commerce.gateway import PaymentGateway
from kunde.commerce.idempotency import claim_in, store_in
from kunde.commerce.payments import ChargeRequest, ChargeResult
from kunde.commerce.service_carts import CartService, ensure_customer
from kunde.commerce.service_orders import OrderService
from kunde.commerce.service_vouchers import VoucherService
from kunde.commerce.tables import (
    cart_lines,
    carts,
    payments,
    reservations,
    stock,
    vouchers,
)
from kunde.core.errors import InvalidInput, Unavailable
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.kernel import Kernel

STALE_AFTER = timedelta(minutes=2)


async def checkout(kernel: Kernel, cart_id: str, *, payment_method: str = "test_approve",
                   expected_total_minor: int | None = None, email: str | None = None,
                   provider: str | None = None) -> dict[str, Any]:
    gateway = kernel.service(PaymentGateway)
    gateway.get(provider or gateway.default)  # an unknown provider fails before any write
    prepared = await _prepare(kernel, cart_id, expected_total_minor, email,
                              provider or gateway.default)
    psp = gateway.get(prepared["provider"])
    try:
        result = await psp.charge(ChargeRequest(
            prepared["payment_id"], prepared["total"], prepared["currency"], payment_method,
            prepared["customer_id"]))
    except Exception as exc:
        # We cannot know whether the provider charged: keep the attempt and let the next
        # checkout resume it at once with the same payment id (never a second charge).
        async with kernel.db.transaction() as uow:
            await uow.execute(carts.update().where(
                carts.c.id == cart_id, carts.c.status == "checking_out").values(
                updated_at=kernel.clock.now() - STALE_AFTER - timedelta(seconds=1)))
        raise Unavailable("the payment provider did not answer; retry the checkout — it "
                          "resumes the same payment, so nothing is charged twice",
                          code="commerce.provider_unavailable") from exc
    if result.status == "declined":
        await _settle_declined(kernel, prepared, result)
        raise PaymentDeclined(
            f"the payment was declined ({result.decline_reason or 'no reason given'}); "
            "nothing was charged and the cart is open for another payment method",
            cart_id=cart_id, reason=result.decline_reason)
    return await _settle_order(kernel, prepared, result)


async def _prepare(kernel: Kernel, cart_id: str, expected: int | None, email: str | None,
                   provider: str) -> dict[str, Any]:
    carts_svc = kernel.service(CartService)
    changed: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    async with kernel.db.transaction() as uow:
        await claim_in(kernel, uow)
        cart = (await uow.execute(sa.select(carts).where(carts.c.id == cart_id))).first()
        if cart is not None and cart.status == "checking_out" and \
                cart.updated_at <= kernel.clock.now() - STALE_AFTER:
            resumed = await _resume_stale(kernel, uow, cart)
            if resumed is not None:
                return resumed
        cart = carts_svc.check_open(cart_id, cart)
        lines = await carts_svc.lines(uow, cart_id, with_held=True)
        if not lines:
            raise InvalidInput("the cart is empty", code="commerce.empty_cart")
        held = {ln["variant_id"]: int(ln["held"]) for ln in lines}
        for ln in lines:
            if not ln["active"]:
                missing.append({"sku": ln["sku"], "requested": ln["quantity"], "available": 0})
                continue
            if ln["current_price"] != ln["unit_price_minor"]:
                changed.append({"sku": ln["sku"], "was_minor": ln["unit_price_minor"],
                                "now_minor": ln["current_price"]})
                await uow.execute(cart_lines.update().where(
                    cart_lines.c.cart_id == cart_id, cart_lines.c.sku == ln["sku"])
                    .values(unit_price_minor=ln["current_price"]))
            short = await _hold(carts_svc, uow, cart_id, ln, held.get(ln["variant_id"], 0))
            if short is not None:
                missing.append(short)
        if not changed and not missing:
            # No touch needed: a cart checking out is never swept.
            return await _start_payment(kernel, uow, cart, lines, expected, email, provider)
        await carts_svc.touch(uow, cart_id)
    if missing:
        raise OutOfStock("some lines are not in stock in the quantity asked; no order was "
                         "placed", lines=missing, price_changes=changed)
    raise PriceChanged("prices changed since the items were added; the cart now shows the "
                       "new prices — confirm and check out again. No order was placed",
                       lines=changed)


async def _hold(carts_svc: CartService, uow: UnitOfWork, cart_id: str, ln: dict[str, Any],
                held: int) -> dict[str, Any] | None:
    if held >= ln["quantity"]:
        return None
    try:
        await carts_svc.reserve(uow, cart_id, ln["variant_id"], ln["quantity"] - held,
                                ln["sku"])
    except OutOfStock as exc:
        return {"sku": ln["sku"], "requested": ln["quantity"],
                "available": held + int(exc.extra.get("available", 0))}
    return None


async def _start_payment(kernel: Kernel, uow: UnitOfWork, cart: Any,
                         lines: list[dict[str, Any]], expected: int | None, email: str | None,
                         provider: str) -> dict[str, Any]:
    carts_svc = kernel.service(CartService)
    customer_id = cart.customer_id
    if email and not customer_id:
        customer_id = await ensure_customer(kernel, uow, email, cart.channel)
    totals = await carts_svc.totals(uow, cart, lines)
    if expected is not None and expected != totals.total_minor:
        raise PriceChanged(f"the total is {totals.total_minor}, not {expected}; no order was "
                           "placed", total_minor=totals.total_minor)
    now = kernel.clock.now()
    if cart.voucher_code:
        await kernel.service(VoucherService).check(uow, cart.voucher_code,
                                                   customer_id=customer_id,
                                                   currency=cart.currency)
        await uow.execute(vouchers.update().where(
            vouchers.c.code == cart.voucher_code, vouchers.c.redeemed_at.is_(None))
            .values(redeemed_at=now, redeemed_order_id=cart.id))
    # The order's id is chosen now: the payment is filed under the order it pays for
    # (payments are distributed by order id), before the order row exists.
    payment_id, order_id = new_id(), new_id()
    await uow.execute(payments.insert().values(
        id=payment_id, order_id=order_id, cart_id=cart.id, provider=provider, status="started",
        amount_minor=totals.total_minor, currency=cart.currency, created_at=now,
        updated_at=now))
    await uow.execute(carts.update().where(carts.c.id == cart.id).values(
        status="checking_out", customer_id=customer_id, updated_at=now))
    return {"cart_id": cart.id, "payment_id": payment_id, "order_id": order_id,
            "total": totals.total_minor,
            "provider": provider,
            "currency": cart.currency, "customer_id": customer_id, "channel": cart.channel,
            "totals": totals, "lines": lines, "shipping_method": cart.shipping_method,
            "voucher_code": cart.voucher_code, "ship_country": cart.ship_country,
            "address_enc": cart.address_enc}


async def _resume_stale(kernel: Kernel, uow: UnitOfWork, cart: Any) -> dict[str, Any] | None:
    """A checkout that died between charging and settling (a crash, a lost connection)
    left its cart ``checking_out``; after `STALE_AFTER` the next checkout resumes it
    with the same payment id, so the provider answers what it did the first time and
    the customer is never charged twice. None when there is nothing to resume."""
    carts_svc = kernel.service(CartService)
    now = kernel.clock.now()
    cart_id = cart.id
    pay = (await uow.execute(sa.select(payments).where(
        payments.c.cart_id == cart_id, payments.c.status == "started")
        .order_by(payments.c.created_at.desc()).limit(1))).first()
    claimed = await uow.execute(carts.update().where(
        carts.c.id == cart_id, carts.c.status == "checking_out",
        carts.c.updated_at == cart.updated_at).values(updated_at=now))
    if pay is None or claimed.rowcount != 1:
        return None
    lines = await carts_svc.lines(uow, cart_id)
    totals = await carts_svc.totals(uow, cart, lines)
    if totals.total_minor != pay.amount_minor:
        # A promotion window closed in between: the customer pays what the interrupted
        # attempt quoted, which is what the provider may already have captured.
        totals.discount_minor += totals.total_minor - pay.amount_minor
        totals.total_minor = pay.amount_minor
    return {"cart_id": cart_id, "payment_id": pay.id, "order_id": pay.order_id,
            "total": pay.amount_minor,
            "provider": pay.provider, "currency": cart.currency,
            "customer_id": cart.customer_id, "channel": cart.channel, "totals": totals,
            "lines": lines, "shipping_method": cart.shipping_method,
            "voucher_code": cart.voucher_code, "ship_country": cart.ship_country,
            "address_enc": cart.address_enc}


async def _settle_declined(kernel: Kernel, p: dict[str, Any], result: ChargeResult) -> None:
    now = kernel.clock.now()
    async with kernel.db.transaction() as uow:
        await uow.execute(payments.update().where(
            payments.c.order_id == p["order_id"], payments.c.id == p["payment_id"]).values(
            status="declined", provider_ref=result.provider_ref or None,
            decline_reason=result.decline_reason, updated_at=now))
        if p["voucher_code"]:
            await uow.execute(vouchers.update().where(
                vouchers.c.code == p["voucher_code"],
                vouchers.c.redeemed_order_id == p["cart_id"]).values(
                redeemed_at=None, redeemed_order_id=None))
        await uow.execute(carts.update().where(carts.c.id == p["cart_id"]).values(
            status="open", last_decline=result.decline_reason, updated_at=now))
        uow.emit(Event.new("commerce.checkout_declined", {
            "cart_id": p["cart_id"], "payment_id": p["payment_id"],
            "reason": result.decline_reason, "amount_minor": p["total"],
            "currency": p["currency"]}, subject_id=p["customer_id"], source=p["channel"]))


async def _settle_order(kernel: Kernel, p: dict[str, Any], result: ChargeResult
                        ) -> dict[str, Any]:
    orders_svc = kernel.service(OrderService)
    now = kernel.clock.now()
    totals: pricing.Totals = p["totals"]
    method = pricing.SHIPPING_METHODS[p["shipping_method"]]
    promised = pricing.promised_date(now, method)
    async with kernel.db.transaction() as uow:
        order_id, number, status = await orders_svc.insert_order(
            uow, order_id=p["order_id"], customer_id=p["customer_id"], channel=p["channel"],
            currency=p["currency"],
            lines=[{"sku": ln["sku"], "product_id": ln["product_id"], "title": ln["title"],
                    "category": ln["category"], "quantity": ln["quantity"],
                    "unit_price_minor": ln["unit_price_minor"]} for ln in p["lines"]],
            discount_minor=totals.discount_minor, shipping_minor=totals.shipping_minor,
            shipping_method=p["shipping_method"], cart_id=p["cart_id"],
            voucher_code=p["voucher_code"], promised_date=promised,
            ship_country=p["ship_country"], address_enc=p["address_enc"],
            captured=(p["payment_id"], p["total"]) if result.status == "captured" else None)
        await _consume_stock(uow, p["cart_id"])
        if p["voucher_code"]:
            await uow.execute(vouchers.update().where(
                vouchers.c.code == p["voucher_code"],
                vouchers.c.redeemed_order_id == p["cart_id"]).values(
                redeemed_order_id=order_id))
        await uow.execute(carts.update().where(carts.c.id == p["cart_id"]).values(
            status="ordered", order_id=order_id, updated_at=now))
        await uow.execute(payments.update().where(
            payments.c.order_id == order_id, payments.c.id == p["payment_id"]).values(
            status=result.status, provider_ref=result.provider_ref,
            updated_at=now))
        answer = {"order_id": order_id, "number": number, "status": status,
                  "total_minor": p["total"], "currency": p["currency"],
                  "customer_id": p["customer_id"], "promised_date": promised.isoformat(),
                  "payment": {"payment_id": p["payment_id"], "status": result.status,
                              "provider_ref": result.provider_ref}}
        await store_in(uow, answer)
    return answer


_TAKE_STOCK = stock.update().where(
    stock.c.variant_id == sa.bindparam("v"), stock.c.location_id == sa.bindparam("loc")
).values(on_hand=stock.c.on_hand - sa.bindparam("q"),
         reserved=stock.c.reserved - sa.bindparam("q"))


async def _consume_stock(uow: UnitOfWork, cart_id: str) -> None:
    """Reserved units leave the shelves: on_hand and reserved go down together."""
    held = (await uow.execute(reservations.delete().where(
        reservations.c.cart_id == cart_id).returning(
        reservations.c.variant_id, reservations.c.location_id, reservations.c.quantity))).all()
    if held:
        # Rows in key order, so concurrent checkouts sharing SKUs cannot deadlock on
        # PostgreSQL; one statement for all of them.
        await uow.execute(_TAKE_STOCK, [
            {"v": r.variant_id, "loc": r.location_id, "q": r.quantity}
            for r in sorted(held, key=lambda r: (r.variant_id, r.location_id))])


async def confirm_payment(kernel: Kernel, provider: str, headers: Any, body: bytes
                          ) -> dict[str, Any]:
    """Apply a provider's signed webhook; repeats of the same outcome change nothing."""
    update = kernel.service(PaymentGateway).get(provider).parse_webhook(
        headers, body, kernel.clock.now())
    orders_svc = kernel.service(OrderService)
    async with kernel.db.transaction() as uow:
        found = (await uow.execute(sa.select(payments.c.order_id, payments.c.id).where(
            payments.c.provider == provider,
            payments.c.provider_ref == update.provider_ref))).first()
        # Locked by its key (payments are distributed by order), then checked again.
        pay = None if found is None else (await uow.execute(sa.select(payments).where(
            payments.c.order_id == found.order_id, payments.c.id == found.id,
            payments.c.provider_ref == update.provider_ref).with_for_update())).first()
        if pay is None or pay.status in ("started", "declined"):
            # A declined attempt's order id was never used: no order to update.
            return {"applied": False, "reason": "unknown payment"}
        if pay.status != "pending":
            return {"applied": False, "reason": f"payment already {pay.status}"}
        await uow.execute(payments.update().where(
            payments.c.order_id == pay.order_id, payments.c.id == pay.id).values(
            status=update.status, decline_reason=update.reason,
            updated_at=kernel.clock.now()))
        if update.status == "captured":
            await orders_svc.capture(uow, pay.order_id, pay.id, pay.amount_minor)
        else:
            await orders_svc.cancel(uow, pay.order_id, "payment declined")
    return {"applied": True, "order_id": pay.order_id, "status": update.status}
