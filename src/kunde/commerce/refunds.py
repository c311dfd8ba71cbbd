"""Refunds: idempotent, partial, to the original payment or as store credit.

A refund's id is derived from (order, idempotency key), so every retry — sequential
or concurrent, from any process — is the same refund:

1. one transaction reserves the amount on the order (the pure model refuses more
   than captured minus refunded) and records the refund as ``pending``;
2. the provider is called with the refund id as its idempotency key (the money
   moves at most once even if we crash and retry);
3. a second transaction marks it ``succeeded`` with a guarded
   ``UPDATE … WHERE status = 'pending'`` — only one caller wins and emits
   ``commerce.refund_issued`` — or ``failed``, releasing the amount.

Store credit needs no provider: a voucher (kind ``amount``) is issued inside step 1.

A refund of returned *lines* (``amount_minor=None``) gets its amount in step 1, under
the order's lock, from `kunde.commerce.allocation`: the units' share of what was paid
(order-level discounts spread pro rata, shipping by the rule), clipped to what is
left. Retries compare the lines instead of the amount. When nothing is left to pay
(earlier refunds took it), the refund succeeds with amount 0, without the provider
and without ``commerce.refund_issued``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.commerce.allocation import SHIPPING_RULES, ShippingRule
from kunde.commerce.errors import IdempotencyKeyReused, OrderRule
from kunde.commerce.gateway import PaymentGateway
from kunde.commerce.payments import RefundRequest
from kunde.commerce.service_orders import OrderService
from kunde.commerce.service_vouchers import VoucherService
from kunde.commerce.tables import orders, payments, refunds
from kunde.core.events import Event
from kunde.core.ids import derived_id
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

METHODS = ("original", "store_credit")


async def refund(kernel: Kernel, order_id: str, amount_minor: int | None, *, reason: str,
                 method: str, idempotency_key: str, return_id: str | None = None,
                 lines: dict[str, int] | None = None,
                 shipping_rule: ShippingRule = "full_return") -> dict[str, Any]:
    if amount_minor is None and not lines:
        raise OrderRule("a refund needs an amount or lines", code="commerce.invalid_amount")
    if shipping_rule not in SHIPPING_RULES:
        raise OrderRule(f"shipping rule must be one of {', '.join(SHIPPING_RULES)}",
                        code="commerce.invalid_shipping_rule")
    if method not in METHODS:
        raise OrderRule(f"refund method must be one of {', '.join(METHODS)}",
                        code="commerce.invalid_refund_method")
    if not idempotency_key:
        raise OrderRule("a refund needs an idempotency key", code="commerce.idempotency_required")
    refund_id = derived_id("commerce.refund", order_id, idempotency_key)
    async with kernel.db.transaction() as uow:
        row = await _reserve(kernel, uow, refund_id, order_id, amount_minor, reason=reason,
                             method=method, key=idempotency_key, return_id=return_id,
                             lines=lines, shipping_rule=shipping_rule)
        if row["status"] != "pending" or method == "store_credit":
            return _result(row, order_id)
        amount_minor = int(row["amount_minor"])
        order = (await uow.execute(sa.select(orders.c.external, orders.c.currency).where(
            orders.c.id == order_id))).one()
        pay = (await uow.execute(sa.select(payments).where(
            payments.c.order_id == order_id, payments.c.status == "captured")
            .order_by(payments.c.created_at).limit(1))).first()
    if pay is None:
        # External orders were paid in another shop, which moves the money itself.
        if not order.external:
            return await _finish(kernel, refund_id, order_id, None, "no captured payment")
        return await _finish(kernel, refund_id, order_id, "external", None)
    provider = kernel.service(PaymentGateway).get(pay.provider)
    result = await provider.refund(RefundRequest(refund_id, pay.provider_ref, amount_minor,
                                                 order.currency))
    if result.succeeded:
        return await _finish(kernel, refund_id, order_id, result.provider_ref, None)
    return await _finish(kernel, refund_id, order_id, None,
                         result.failure_reason or "the provider refused the refund")


def _key(order_id: str, refund_id: str) -> sa.ColumnElement[bool]:
    """One refund, by its full key (refunds are distributed by order)."""
    return sa.and_(refunds.c.order_id == order_id, refunds.c.id == refund_id)


async def _reserve(kernel: Kernel, uow: UnitOfWork, refund_id: str, order_id: str,
                   amount_minor: int | None, *, reason: str, method: str, key: str,
                   return_id: str | None, lines: dict[str, int] | None,
                   shipping_rule: ShippingRule = "full_return") -> dict[str, Any]:
    orders_svc = kernel.service(OrderService)
    existing = (await uow.execute(sa.select(refunds).where(_key(order_id, refund_id)))).first()
    by_lines = amount_minor is None
    if existing is not None and (
            existing.method != method
            or (not by_lines and existing.amount_minor != amount_minor)
            or (by_lines and _clean_lines(existing.lines) != _clean_lines(lines))):
        raise IdempotencyKeyReused("this idempotency key was used for a different refund",
                                   refund_id=refund_id)
    if existing is not None and existing.status == "succeeded":
        return dict(existing._mapping)
    if amount_minor is None:
        order, _, row = await orders_svc._mutate(
            uow, order_id, lambda o: o.refund_returned(refund_id, lines or {}, shipping_rule),
            "commerce.refund_issued", refund_id)
    else:
        fixed = amount_minor
        order, _, row = await orders_svc._mutate(
            uow, order_id, lambda o: o.refund(refund_id, fixed), "commerce.refund_issued",
            refund_id)
    amount = order.refunds[refund_id]
    now = kernel.clock.now()
    await uow.execute(insert_ignore(uow.dialect, refunds), {
        "id": refund_id, "order_id": order_id, "idempotency_key": key, "amount_minor": amount,
        "currency": order.currency, "method": method, "reason": reason[:200],
        "return_id": return_id, "lines": lines, "status": "pending", "created_at": now})
    await uow.execute(refunds.update().where(_key(order_id, refund_id),
                                             refunds.c.status == "failed")
                      .values(status="pending", amount_minor=amount))
    if amount == 0:  # returned lines whose value was already refunded: nothing to pay
        await uow.execute(refunds.update().where(
            _key(order_id, refund_id), refunds.c.status == "pending").values(
            status="succeeded", completed_at=now))
    elif method == "store_credit":
        code = await kernel.service(VoucherService).issue(
            uow, customer_id=row.customer_id, kind="amount", value=amount,
            currency=order.currency, source="refund", source_ref=refund_id, expires_at=None)
        done = await uow.execute(refunds.update().where(
            _key(order_id, refund_id), refunds.c.status == "pending").values(
            status="succeeded", voucher_code=code, completed_at=now))
        if done.rowcount == 1:
            _emit_issued(uow, order_id, row.customer_id, refund_id, amount, order.currency,
                         method, return_id, lines)
    fresh = (await uow.execute(sa.select(refunds).where(_key(order_id, refund_id)))).one()
    return dict(fresh._mapping)


async def record_external_refund(kernel: Kernel, uow: UnitOfWork, order_id: str,
                                 amount_minor: int, key: str, reason: str) -> bool:
    """An external shop refunded its order itself: record it inside the caller's
    transaction (a consumer's), so loyalty claws back points from
    ``commerce.refund_issued``. Idempotent by ``key``; clipped to what is refundable."""
    refund_id = derived_id("commerce.refund", order_id, key)
    existing = (await uow.execute(sa.select(refunds.c.id).where(
        _key(order_id, refund_id)))).first()
    if existing is not None:
        return False
    row = (await uow.execute(sa.select(orders.c.captured_minor, orders.c.refunded_minor,
                                       orders.c.external, orders.c.customer_id)
                             .where(orders.c.id == order_id))).one()
    amount = min(amount_minor, row.captured_minor - row.refunded_minor)
    if amount <= 0 or not row.external:
        return False
    await _reserve(kernel, uow, refund_id, order_id, amount, reason=reason, method="original",
                   key=key, return_id=None, lines=None)
    ref = (await uow.execute(sa.select(refunds).where(_key(order_id, refund_id)))).one()
    await uow.execute(refunds.update().where(_key(order_id, refund_id)).values(
        status="succeeded", provider_ref="external", completed_at=kernel.clock.now()))
    _emit_issued(uow, order_id, row.customer_id, refund_id, amount, ref.currency, "original",
                 None, None)
    return True


async def _finish(kernel: Kernel, refund_id: str, order_id: str, provider_ref: str | None,
                  failure: str | None) -> dict[str, Any]:
    async with kernel.db.transaction() as uow:
        now = kernel.clock.now()
        if failure is None:
            done = await uow.execute(refunds.update().where(
                _key(order_id, refund_id), refunds.c.status == "pending").values(
                status="succeeded", provider_ref=provider_ref, completed_at=now))
            ref = (await uow.execute(sa.select(refunds).where(_key(order_id, refund_id)))).one()
            if done.rowcount == 1:
                row = (await uow.execute(sa.select(orders.c.customer_id).where(
                    orders.c.id == order_id))).one()
                _emit_issued(uow, order_id, row.customer_id, refund_id, ref.amount_minor,
                             ref.currency, ref.method, ref.return_id, ref.lines)
            return _result(dict(ref._mapping), order_id)
        done = await uow.execute(refunds.update().where(
            _key(order_id, refund_id), refunds.c.status == "pending").values(
            status="failed", completed_at=now))
        if done.rowcount == 1:
            await kernel.service(OrderService)._mutate(
                uow, order_id, lambda o: o.release_refund(refund_id), "commerce.refund_failed",
                refund_id)
    raise OrderRule(f"the refund failed: {failure}", code="commerce.refund_failed",
                    refund_id=refund_id)


def _clean_lines(lines: dict[str, int] | None) -> dict[str, int]:
    return {str(k): int(v) for k, v in (lines or {}).items() if int(v)}


def _emit_issued(uow: UnitOfWork, order_id: str, customer_id: str | None, refund_id: str,
                 amount: int, currency: str, method: str, return_id: str | None,
                 lines: dict[str, int] | None) -> None:
    payload: dict[str, Any] = {"order_id": order_id, "refund_id": refund_id,
                               "amount_minor": amount, "currency": currency, "method": method,
                               "return_id": return_id, "lines": lines}
    uow.emit(Event.new("commerce.refund_issued", payload, subject_id=customer_id,
                       source="commerce"))


def _result(row: dict[str, Any], order_id: str) -> dict[str, Any]:
    return {"refund_id": row["id"], "order_id": order_id, "amount_minor": row["amount_minor"],
            "currency": row["currency"], "method": row["method"], "status": row["status"],
            "reason": row["reason"], "return_id": row["return_id"],
            "voucher_code": row["voucher_code"], "provider_ref": row["provider_ref"]}
