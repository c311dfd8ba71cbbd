"""Returns: self-service requests, RMA and label, the return parcel, and fast refunds.

The refund trigger is the installation's policy: ``first_scan`` (the carrier's
first scan of the return parcel), ``receipt`` (the parcel is delivered to the
warehouse) or ``inspection`` (staff mark it inspected). When it fires,
``refund_due_at`` is set in the same transaction; `process_refunds` then calls
commerce's idempotent ``OrderService.refund`` (key ``return:<id>``), right after
commit and again from a periodic job until it succeeds. The SLA runs from
``refund_due_at`` to ``refunded_at``.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from kunde.commerce.allocation import SHIPPING_RULES, ShippingRule
from kunde.commerce.service_orders import OrderService
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.fulfilment.config import FulfilmentConfig
from kunde.fulfilment.errors import ReturnNotFound, ReturnRefused, ReturnStateConflict
from kunde.fulfilment.models import (
    RETURN_REASONS,
    Checkpoint,
    Policy,
    return_window_open,
    rma_number,
    sla_state,
)
from kunde.fulfilment.service import FulfilmentService
from kunde.fulfilment.tables import return_rmas, returns, shipments
from kunde.kernel import Kernel
from kunde.messaging.service import MessagingService
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

log = logging.getLogger("kunde.fulfilment")


def _shipping_rule(policy: Policy) -> ShippingRule:
    rule = policy.refund_shipping
    return rule if rule in SHIPPING_RULES else "full_return"
OPEN = ("requested", "approved", "in_transit", "received")


class ReturnService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.shipping = kernel.service(FulfilmentService)

    async def _policy(self) -> Policy:
        return await self.kernel.service(FulfilmentConfig).policy()

    # -- requesting ---------------------------------------------------------------------
    async def request(self, *, order_id: str, lines: list[dict[str, Any]], actor: str,
                      customer_id: str | None = None) -> dict[str, Any]:
        """Open a return for lines of an order (``customer_id`` set: it must be theirs)."""
        policy = await self._policy()
        order = await self.kernel.service(OrderService).get_order(order_id)
        if customer_id is not None and order.get("customer_id") != customer_id:
            raise ReturnRefused("this order is not yours", code="fulfilment.not_your_order")
        now = self.kernel.clock.now()
        delivered = await self._delivered_at(order_id)
        if not return_window_open(delivered, datetime.fromisoformat(order["placed_at"]), now,
                                  policy.return_window_days):
            raise ReturnRefused(f"the {policy.return_window_days}-day return window has closed",
                                code="fulfilment.return_window_closed")
        chosen = await self._check_lines(order, lines)
        # What the units are worth now (discounts and shipping allocated); the refund
        # fixes the amount when it is made, as other refunds may come first.
        amount = await self.kernel.service(OrderService).quote_refund(
            order_id, {ln["line_id"]: ln["quantity"] for ln in chosen},
            _shipping_rule(policy))
        review = not policy.auto_approve_returns or any(
            ln["reason"] in policy.reasons_needing_review for ln in chosen)
        async with self.kernel.db.transaction() as uow:
            return_id = await self._claim_rma(uow, order_id)
            await uow.execute(returns.insert().values(
                id=return_id, order_id=order_id, order_number=order["number"],
                customer_id=order.get("customer_id"), rma=rma_number(return_id),
                status="requested", lines=chosen, amount_minor=amount,
                currency=order["currency"], refund_trigger=policy.refund_trigger,
                refund_method=policy.refund_method, requested_at=now))
            if order.get("customer_id"):
                uow.emit(Event.new("fulfilment.return_requested", {
                    "return_id": return_id, "order_id": order_id,
                    "lines": [{k: ln[k] for k in ("line_id", "quantity", "reason")}
                              for ln in chosen],
                    "amount_minor": amount, "currency": order["currency"],
                    "needs_review": review}, subject_id=order["customer_id"], source=actor))
            if not review:
                await self._approve(uow, return_id, actor, policy)
        return await self.get(return_id)

    async def _claim_rma(self, uow: UnitOfWork, order_id: str) -> str:
        """A new return id whose RMA number no other return has (returns are distributed
        by order, so the number's uniqueness is kept in ``fulfilment_rmas``)."""
        for _ in range(8):
            return_id = new_id()
            claimed = await uow.execute(insert_ignore(uow.dialect, return_rmas, ["rma"]), {
                "rma": rma_number(return_id), "order_id": order_id, "return_id": return_id})
            if claimed.rowcount == 1:
                return return_id
        raise RuntimeError("no free RMA number after 8 tries")

    async def _delivered_at(self, order_id: str) -> datetime | None:
        async with self.kernel.db.read() as conn:
            value = (await conn.execute(sa.select(sa.func.max(shipments.c.delivered_at)).where(
                shipments.c.order_id == order_id, shipments.c.kind == "outbound"))).scalar()
        if isinstance(value, datetime) and value.tzinfo is None:
            from datetime import UTC

            value = value.replace(tzinfo=UTC)
        return value if isinstance(value, datetime) else None

    async def _check_lines(self, order: dict[str, Any], lines: list[dict[str, Any]]
                           ) -> list[dict[str, Any]]:
        if not lines:
            raise ReturnRefused("choose at least one line to return")
        by_id = {ln["line_id"]: ln for ln in order["lines"]}
        pending = await self._pending_quantities(order["order_id"])
        chosen = []
        for want in lines:
            line = by_id.get(str(want.get("line_id")))
            qty = int(want.get("quantity") or 0)
            reason = str(want.get("reason") or "")
            if line is None:
                raise ReturnRefused(f"no line {want.get('line_id')} on this order")
            if reason not in RETURN_REASONS:
                raise ReturnRefused(f"reason must be one of {', '.join(RETURN_REASONS)}",
                                    code="fulfilment.bad_reason")
            can = int(line["shipped"]) - int(line["returned"]) - pending.get(line["line_id"], 0)
            if qty < 1 or qty > can:
                raise ReturnRefused(f"you can return at most {max(can, 0)} of {line['title']}",
                                    code="fulfilment.too_many", line_id=line["line_id"])
            chosen.append({"line_id": line["line_id"], "quantity": qty, "reason": reason,
                           "title": line["title"], "sku": line["sku"],
                           "unit_price_minor": int(line["unit_price_minor"])})
        return chosen

    async def _pending_quantities(self, order_id: str) -> dict[str, int]:
        """Quantities in returns that are open and not yet recorded by commerce."""
        out: dict[str, int] = {}
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(sa.select(returns.c.lines).where(
                returns.c.order_id == order_id, returns.c.received_at.is_(None),
                returns.c.status.in_(("requested", "approved", "in_transit"))))).all()
        for r in rows:
            for ln in r.lines:
                out[ln["line_id"]] = out.get(ln["line_id"], 0) + int(ln["quantity"])
        return out

    # -- staff decisions -------------------------------------------------------------------
    async def approve(self, return_id: str, actor: str) -> dict[str, Any]:
        policy = await self._policy()
        async with self.kernel.db.transaction() as uow:
            row = await self._row(uow, return_id)
            if row.status != "requested":
                raise ReturnStateConflict(f"a {row.status} return cannot be approved")
            await self._approve(uow, return_id, actor, policy)
        return await self.get(return_id)

    async def _approve(self, uow: UnitOfWork, return_id: str, actor: str, policy: Policy
                       ) -> None:
        row = await self._row(uow, return_id)
        shipment_id = new_id()
        tracking = "KR" + "".join(secrets.choice("0123456789") for _ in range(12)) + "DK"
        await self.shipping.insert_shipment(
            uow, shipment_id=shipment_id, order_id=row.order_id,
            order_number=row.order_number, customer_id=row.customer_id, kind="return",
            carrier=policy.return_carrier, service="return", tracking_number=tracking,
            lines={ln["line_id"]: ln["quantity"] for ln in row.lines}, country="DK",
            promised_date=None, return_id=return_id)
        await uow.execute(returns.update().where(returns.c.id == return_id).values(
            status="approved", decided_at=self.kernel.clock.now(), decided_by=actor,
            shipment_id=shipment_id, label_ref=f"LBL-{tracking}"))

    async def reject(self, return_id: str, actor: str, reason: str) -> dict[str, Any]:
        async with self.kernel.db.transaction() as uow:
            row = await self._row(uow, return_id)
            if row.status not in ("requested", "approved") or row.first_scan_at is not None:
                raise ReturnStateConflict(f"a {row.status} return cannot be rejected")
            await uow.execute(returns.update().where(returns.c.id == return_id).values(
                status="rejected", decided_at=self.kernel.clock.now(), decided_by=actor))
            if row.shipment_id:
                await uow.execute(shipments.update().where(
                    shipments.c.id == row.shipment_id).values(is_open=False))
            if row.customer_id:
                uow.emit(Event.new("fulfilment.return_rejected", {
                    "return_id": return_id, "order_id": row.order_id, "reason": reason[:200]},
                    subject_id=row.customer_id, source="console"))
        return await self.get(return_id)

    async def mark_inspected(self, return_id: str, actor: str) -> dict[str, Any]:
        """The goods are in the warehouse and fine: record receipt and trigger the refund."""
        async with self.kernel.db.transaction() as uow:
            row = await self._row(uow, return_id)
            if row.status in ("rejected", "requested"):
                raise ReturnStateConflict(f"a {row.status} return cannot be inspected")
            await self._receive(uow, row)
            await self._trigger(uow, return_id)
        return await self.get(return_id)

    async def refund_now(self, return_id: str, actor: str) -> dict[str, Any]:
        """Staff override: refund without waiting for the policy's trigger."""
        async with self.kernel.db.transaction() as uow:
            row = await self._row(uow, return_id)
            if row.status in ("rejected", "requested"):
                raise ReturnStateConflict(f"a {row.status} return cannot be refunded")
            await self._trigger(uow, return_id)
        return await self.get(return_id)

    # -- the return parcel -----------------------------------------------------------------
    async def on_return_scan(self, uow: UnitOfWork, ship: Any, cp: Checkpoint, *,
                             first_scan: bool) -> None:
        row = (await uow.execute(sa.select(returns).where(
            returns.c.id == ship.return_id))).first()
        if row is None or row.status == "rejected":
            return
        if first_scan:
            await uow.execute(returns.update().where(returns.c.id == row.id).values(
                first_scan_at=cp.at,
                status="in_transit" if row.status == "approved" else row.status))
            if row.refund_trigger == "first_scan":
                await self._trigger(uow, row.id)
        if cp.status == "delivered":
            await self._receive(uow, row)
            if row.refund_trigger == "receipt":
                await self._trigger(uow, row.id)

    async def _receive(self, uow: UnitOfWork, row: Any) -> None:
        if row.received_at is not None:
            return
        now = self.kernel.clock.now()
        await self.kernel.service(OrderService).record_return(
            uow, row.order_id, {ln["line_id"]: ln["quantity"] for ln in row.lines}, row.id)
        await uow.execute(returns.update().where(returns.c.id == row.id).values(
            received_at=now,
            status=sa.case((returns.c.status == "refunded", "refunded"), else_="received")))
        if row.customer_id:
            uow.emit(Event.new("fulfilment.return_received", {
                "return_id": row.id, "order_id": row.order_id,
                "lines": [{k: ln[k] for k in ("line_id", "quantity", "reason")}
                          for ln in row.lines]}, subject_id=row.customer_id,
                source="fulfilment"))
            await self.kernel.service(MessagingService).enqueue(
                uow, customer_id=row.customer_id, template="return_received",
                context={"order_id": row.order_id, "order_number": row.order_number,
                         "rma": row.rma,
                         "refund_at_first_scan": row.refund_due_at is not None},
                idempotency_key=f"return_received:{row.id}")

    async def _trigger(self, uow: UnitOfWork, return_id: str) -> None:
        await uow.execute(returns.update().where(
            returns.c.id == return_id, returns.c.refund_due_at.is_(None)).values(
            refund_due_at=self.kernel.clock.now()))
        uow.after_commit(self.process_refunds)

    # -- refunds ---------------------------------------------------------------------------
    async def process_refunds(self, limit: int = 100) -> str:
        """Refund every return whose trigger fired; idempotent, retried until it succeeds."""
        async with self.kernel.db.read() as conn:
            due = (await conn.execute(sa.select(returns).where(
                returns.c.refund_due_at.is_not(None), returns.c.refunded_at.is_(None))
                .order_by(returns.c.refund_due_at).limit(limit))).all()
        done = failed = 0
        rule = _shipping_rule(await self._policy()) if due else "full_return"
        for row in due:
            try:
                # The amount is the returned units' share of what was paid, computed by
                # commerce under the order's lock (never more than is left to refund).
                result = await self.kernel.service(OrderService).refund(
                    row.order_id, None, reason=f"return {row.rma}",
                    method=row.refund_method, idempotency_key=f"return:{row.id}",
                    return_id=row.id,
                    lines={ln["line_id"]: ln["quantity"] for ln in row.lines},
                    shipping_rule=rule)
            except Exception as exc:
                log.warning("refund of return %s failed: %r", row.id, exc)
                async with self.kernel.db.transaction() as uow:
                    await uow.execute(returns.update().where(returns.c.id == row.id).values(
                        refund_error=str(exc)[:500]))
                failed += 1
                continue
            await self._refunded(row, result)
            done += 1
        return f"refunded {done}, failed {failed}"

    async def _refunded(self, row: Any, result: dict[str, Any]) -> None:
        now = self.kernel.clock.now()
        async with self.kernel.db.transaction() as uow:
            changed = await uow.execute(returns.update().where(
                returns.c.id == row.id, returns.c.refunded_at.is_(None)).values(
                refunded_at=now, status="refunded", refund_error=None,
                amount_minor=int(result.get("amount_minor", row.amount_minor)),
                refund_id=str(result.get("refund_id") or result.get("id") or "")))
            if changed.rowcount and row.customer_id:
                uow.emit(Event.new("fulfilment.return_refunded", {
                    "return_id": row.id, "order_id": row.order_id,
                    "refund_id": result.get("refund_id") or result.get("id"),
                    "amount_minor": int(result.get("amount_minor", row.amount_minor)),
                    "currency": row.currency, "trigger": row.refund_trigger,
                    "seconds_to_refund": (now - row.refund_due_at).total_seconds()},
                    subject_id=row.customer_id, source="fulfilment"))

    # -- reading ---------------------------------------------------------------------------
    async def _row(self, uow: UnitOfWork, return_id: str) -> Any:
        row = (await uow.execute(sa.select(returns).where(returns.c.id == return_id))).first()
        if row is None:
            raise ReturnNotFound("no such return")
        return row

    def describe(self, row: Any, policy: Policy) -> dict[str, Any]:
        d = dict(row._mapping)
        sla = timedelta(hours=policy.refund_sla_hours)
        d["sla_hours"] = policy.refund_sla_hours
        d["sla"] = sla_state(row.refund_due_at, row.refunded_at, self.kernel.clock.now(), sla)
        d["seconds_to_refund"] = ((row.refunded_at - row.refund_due_at).total_seconds()
                                  if row.refunded_at and row.refund_due_at else None)
        return d

    async def get(self, return_id: str) -> dict[str, Any]:
        policy = await self._policy()
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(returns).where(
                returns.c.id == return_id))).first()
            if row is None:
                raise ReturnNotFound("no such return")
            tracking = None
            if row.shipment_id:
                tracking = (await conn.execute(sa.select(
                    shipments.c.token, shipments.c.tracking_number, shipments.c.status)
                    .where(shipments.c.id == row.shipment_id))).first()
        out = self.describe(row, policy)
        if tracking is not None:
            out["tracking_number"] = tracking.tracking_number
            out["parcel_status"] = tracking.status
            out["tracking_url"] = self.shipping.tracking_url(tracking.token)
        return out

    async def search(self, *, status: str | None = None, customer_ids: list[str] | None = None,
                     order_id: str | None = None, limit: int = 50, offset: int = 0
                     ) -> list[dict[str, Any]]:
        policy = await self._policy()
        q = sa.select(returns)
        if status == "open":
            q = q.where(returns.c.status.in_(OPEN))
        elif status:
            q = q.where(returns.c.status == status)
        if customer_ids is not None:
            q = q.where(returns.c.customer_id.in_(customer_ids))
        if order_id:
            q = q.where(returns.c.order_id == order_id)
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(q.order_by(returns.c.requested_at.desc())
                                       .limit(min(limit, 500)).offset(offset))).all()
        return [self.describe(r, policy) for r in rows]
