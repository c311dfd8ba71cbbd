"""Proactive delay care: find shipments at risk, then act by the installation's policy.

Detection is set-based: the sweep is two indexed ``UPDATE`` statements over open
shipments (a broken promise → ``late``; silence past the expected next scan →
``at_risk``) that flag ``care_due``; scans flag it incrementally (exceptions, an
ETA after the promise). Acting is per shipment, in batches: a
``fulfilment.delay_detected`` event on the customer's timeline (with
``needs_case`` for service), a consent-aware apology (purpose ``service``, so
quiet hours apply), and optionally ``fulfilment.goodwill_granted`` for loyalty.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.fulfilment.config import FulfilmentConfig
from kunde.fulfilment.models import Policy, needs_case
from kunde.fulfilment.service import FulfilmentService
from kunde.fulfilment.tables import shipments
from kunde.kernel import Kernel
from kunde.messaging.service import MessagingService
from kunde.store.database import UnitOfWork

# Written exactly like the partial index ix_shipments_care_due's predicate, so SQLite and
# PostgreSQL read only the flagged rows instead of scanning every shipment.
CARE_DUE = sa.text("shipments.care_due")


class CareService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def flag(self) -> dict[str, int]:
        """Mark newly late and newly silent open shipments (set-based); counts per kind."""
        now = self.kernel.clock.now()
        s = shipments.c
        async with self.kernel.db.transaction() as uow:
            late = await uow.execute(shipments.update().where(
                s.is_open.is_(True), s.risk.in_(("ok", "at_risk")), s.promised_by < now,
                s.kind == "outbound",
            ).values(risk="late", risk_reason="promise_broken", risk_since=now,
                     care_due=True))
            silent = await uow.execute(shipments.update().where(
                s.is_open.is_(True), s.risk == "ok", s.expected_scan_by < now,
                s.kind == "outbound",
            ).values(risk="at_risk", risk_reason="no_scan", risk_since=now, care_due=True))
        return {"late": int(late.rowcount), "at_risk": int(silent.rowcount)}

    async def sweep(self, act_limit: int = 2000) -> str:
        """The periodic job: flag, then act on what is due (the rest next round)."""
        started = time.perf_counter()
        flagged = await self.flag()
        acted = await self.act_on_due(limit=act_limit)
        return (f"late {flagged['late']}, at_risk {flagged['at_risk']}, acted {acted} "
                f"in {time.perf_counter() - started:.2f}s")

    async def act_on_due(self, limit: int = 500, batch: int = 200) -> int:
        async with self.kernel.db.read() as conn:  # look before taking the writer
            if (await conn.execute(sa.select(shipments.c.id).where(
                    CARE_DUE).limit(1))).first() is None:
                return 0
        policy = await self.kernel.service(FulfilmentConfig).policy()
        done = 0
        while done < limit:
            async with self.kernel.db.transaction() as uow:
                rows = (await uow.execute(sa.select(shipments).where(
                    CARE_DUE).limit(min(batch, limit - done)))).all()
                # One bulk look-up (and creation) of the customers' keys for the batch.
                await self.kernel.vault.keys_for(
                    uow, {r.customer_id for r in rows if r.customer_id}, create=True)
                for row in rows:
                    await self._act(uow, row, policy)
                if rows:
                    await uow.execute(shipments.update().where(
                        shipments.c.id.in_([r.id for r in rows])).values(care_due=False))
            done += len(rows)
            if len(rows) < batch:
                break
        return done

    async def _act(self, uow: UnitOfWork, row: Any, policy: Policy) -> None:
        if not row.customer_id:
            return
        case = needs_case(row.risk, row.risk_reason or "", policy)
        promised = row.promised_date.isoformat() if row.promised_date else None
        eta = row.eta.isoformat() if row.eta else None
        uow.emit(Event.new("fulfilment.delay_detected", {
            "shipment_id": row.id, "order_id": row.order_id, "order_number": row.order_number,
            "reason": row.risk_reason, "risk": row.risk, "promised_date": promised,
            "eta": eta, "status": row.status, "needs_case": case,
        }, subject_id=row.customer_id, source="fulfilment"))
        if policy.notify_customer:
            url = self.kernel.service(FulfilmentService).tracking_url(row.token)
            await self.kernel.service(MessagingService).enqueue(
                uow, customer_id=row.customer_id, template="delay_apology",
                context={"order_id": row.order_id, "order_number": row.order_number,
                         "promised_date": promised, "eta": eta, "tracking_url": url,
                         "reason": row.risk_reason},
                purpose="service", idempotency_key=f"delay:{row.id}")
        if policy.goodwill_points > 0 and row.risk == "late":
            uow.emit(Event.new("fulfilment.goodwill_granted", {
                "customer_id": row.customer_id, "points": policy.goodwill_points,
                "reason": "late_delivery", "cause_id": row.id,
            }, subject_id=row.customer_id, source="fulfilment"))
