"""Applying accepted tracking updates to shipments, and numbers no shipment has yet.

`TrackingUpdateApplier.apply_pending` takes webhooks from ``tracking_inbox`` in
short batches (shipments read ahead for the whole batch) and `apply` writes one
update: a checkpoint (deduplicated by fingerprint), the shipment's status, ETA
and risk, and the customer's events. An update for a tracking number no shipment
has is kept in ``unknown_tracking`` and applied when that shipment is created
(`_adopt_unknown`). `FulfilmentService` holds these methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from kunde.commerce.service_orders import OrderService
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.fulfilment import carriers
from kunde.fulfilment.models import (
    CLOSED,
    NOT_A_SCAN,
    Checkpoint,
    TrackingUpdate,
    expected_scan_by,
    incremental_risk,
)
from kunde.fulfilment.tables import checkpoints, shipments, tracking_inbox, unknown_tracking
from kunde.kernel import Kernel
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore


def update_to_json(u: TrackingUpdate) -> dict[str, Any]:
    c = u.checkpoint
    return {"tracking_number": u.tracking_number, "at": c.at.isoformat(), "status": c.status,
            "message": c.message, "location": c.location, "code": c.carrier_code,
            "eta": u.eta.isoformat() if u.eta else None}


def update_from_json(d: Mapping[str, Any]) -> TrackingUpdate:
    return carriers.kunde({"updates": [d]})[0]


_UNKNOWN: Any = object()  # not prefetched: look it up
_MARK_PROCESSED = tracking_inbox.update().where(tracking_inbox.c.seq == sa.bindparam("s")) \
    .values(outcome=sa.bindparam("o"))


class _Batch:
    """Rows read ahead for one `apply_pending` batch: shipments and unknown numbers by
    tracking number, kept up to date with what the batch's updates write."""

    def __init__(self, found: dict[str, Any]) -> None:
        self.found = found

    def shipment(self, carrier: str, number: str) -> Any:
        entry = self.found.get(number)
        if entry is None:
            return _UNKNOWN
        for ship in entry["ships"]:
            if carrier == "kunde" or ship.carrier == carrier:
                return ship
        return None

    def updated(self, number: str, ship: Any, values: dict[str, Any]) -> None:
        """``ship`` was updated with ``values`` (plain values, no SQL expressions)."""
        entry = self.found.get(number)
        if entry is None:
            return
        before = ship._asdict() if hasattr(ship, "_asdict") else vars(ship)
        fresh = SimpleNamespace(**{**before, **values})
        entry["ships"] = [fresh if s is ship else s for s in entry["ships"]]

    def unknown(self, carrier: str, number: str) -> Any:
        entry = self.found.get(number)
        if entry is None:
            return _UNKNOWN
        return entry["unknown"].get(carrier)

    def recorded(self, carrier: str, number: str, updates: list[Any]) -> None:
        entry = self.found.get(number)
        if entry is not None:
            entry["unknown"][carrier] = updates


class TrackingUpdateApplier:
    """Applies tracking updates; mixed into `FulfilmentService`, which provides ``kernel``."""

    kernel: Kernel

    async def apply_pending(self, limit: int = 100, max_updates: int = 200) -> str:
        """Apply accepted updates to shipments, oldest first; a summary for the job log.

        One short transaction of at most ``limit`` webhooks and about ``max_updates``
        updates, so acceptance (which needs the same writer on SQLite) never waits long.
        """
        applied = unknown = 0
        async with self.kernel.db.read() as conn:  # look before taking the writer
            if (await conn.execute(sa.select(tracking_inbox.c.seq).where(
                    tracking_inbox.c.processed_at.is_(None)).limit(1))).first() is None:
                return "nothing to apply"
        async with self.kernel.db.transaction() as uow:
            rows = (await uow.execute(
                sa.select(tracking_inbox.c.seq, tracking_inbox.c.carrier,
                          tracking_inbox.c.updates)
                .where(tracking_inbox.c.processed_at.is_(None))
                .order_by(tracking_inbox.c.seq).limit(limit))).all()
            if not rows:
                return "nothing to apply"
            taken, count = [], 0
            for row in rows:
                if count >= max_updates:
                    break
                taken.append((row, [update_from_json(raw) for raw in row.updates]))
                count += len(row.updates)
            # The shipments (and unknown numbers) of the whole batch in two queries, not
            # two per update; a shipment changed by one update is read again by the next.
            batch = _Batch(await self._prefetch(uow, [u for _, us in taken for u in us]))
            done = []
            for row, updates in taken:
                outcomes = []
                for update in updates:
                    outcome = await self.apply(uow, row.carrier, update, batch=batch)
                    outcomes.append(outcome)
                    applied += outcome != "unknown"
                    unknown += outcome == "unknown"
                done.append({"s": row.seq, "o": ",".join(sorted(set(outcomes)))[:200]})
            await uow.execute(_MARK_PROCESSED.values(processed_at=self.kernel.clock.now()),
                              done)
        return f"applied {applied}, unknown {unknown}"

    async def _prefetch(self, uow: UnitOfWork, updates: list[TrackingUpdate]
                        ) -> dict[str, Any]:
        numbers = sorted({u.tracking_number for u in updates})
        found: dict[str, Any] = {n: {"ships": [], "unknown": {}} for n in numbers}
        for chunk in (numbers[i:i + 500] for i in range(0, len(numbers), 500)):
            for ship in (await uow.execute(sa.select(shipments).where(
                    shipments.c.tracking_number.in_(chunk)))).all():
                found[ship.tracking_number]["ships"].append(ship)
            for u in (await uow.execute(sa.select(
                    unknown_tracking.c.carrier, unknown_tracking.c.tracking_number,
                    unknown_tracking.c.updates).where(
                    unknown_tracking.c.tracking_number.in_(chunk)))).all():
                found[u.tracking_number]["unknown"][u.carrier] = u.updates
        return found

    async def apply(self, uow: UnitOfWork, carrier: str, update: TrackingUpdate, *,
                    batch: _Batch | None = None) -> str:
        ship = batch.shipment(carrier, update.tracking_number) if batch else _UNKNOWN
        if ship is _UNKNOWN:
            q = sa.select(shipments).where(
                shipments.c.tracking_number == update.tracking_number)
            if carrier != "kunde":
                q = q.where(shipments.c.carrier == carrier)
            ship = (await uow.execute(q)).first()
        if ship is None:
            await self._record_unknown(uow, carrier, update, batch=batch)
            return "unknown"
        cp = update.checkpoint
        now = self.kernel.clock.now()
        inserted = await uow.execute(insert_ignore(uow.dialect, checkpoints), {
            "id": new_id(), "order_id": ship.order_id, "shipment_id": ship.id, "at": cp.at,
            "status": cp.status,
            "message": cp.message, "location": cp.location, "carrier_code": cp.carrier_code,
            "fingerprint": cp.fingerprint(), "received_at": now})
        if not inserted.rowcount:
            return "duplicate"
        newest = cp.at >= ship.status_at or ship.status == "pending"
        values: dict[str, Any] = {"updated_at": now}
        if update.eta:
            values["eta"] = update.eta
        is_scan = cp.status not in NOT_A_SCAN
        if is_scan:
            values["last_scan_at"] = max(cp.at, ship.last_scan_at or cp.at)
            if ship.first_scan_at is None:
                values["first_scan_at"] = cp.at
        if newest:
            values.update(status=cp.status, status_at=cp.at,
                          is_open=cp.status not in CLOSED,
                          expected_scan_by=expected_scan_by(cp.status, cp.at))
            if cp.status == "delivered":
                values["delivered_at"] = cp.at
        reason = incremental_risk(cp.status, update.eta or ship.eta, ship.promised_date) \
            if newest and ship.kind == "outbound" else None
        if reason and ship.risk == "ok":
            values.update(risk="at_risk", risk_reason=reason, risk_since=now, care_due=True)
        if newest and cp.status == "delivered" and ship.risk != "ok":
            values.update(care_due=False)
        await uow.execute(shipments.update().where(shipments.c.id == ship.id).values(**values))
        if batch:  # the next update of this parcel in the batch sees what this one wrote
            batch.updated(update.tracking_number, ship, values)
        await self._emit_scan(uow, ship, cp, newest)
        if ship.kind == "return":
            from kunde.fulfilment.service_returns import ReturnService  # imports this one

            await self.kernel.service(ReturnService).on_return_scan(
                uow, ship, cp, first_scan=is_scan and ship.first_scan_at is None)
        return "applied"

    async def _emit_scan(self, uow: UnitOfWork, ship: Any, cp: Checkpoint, newest: bool
                         ) -> None:
        if not ship.customer_id:
            return
        uow.emit(Event.new("fulfilment.tracking_updated", {
            "shipment_id": ship.id, "order_id": ship.order_id, "kind": ship.kind,
            "status": cp.status, "checkpoint": {
                "at": cp.at.isoformat(), "status": cp.status, "message": cp.message,
                "location": cp.location, "code": cp.carrier_code}},
            subject_id=ship.customer_id, source="carrier", occurred_at=cp.at))
        if newest and cp.status == "delivered" and ship.status != "delivered":
            uow.emit(Event.new("fulfilment.shipment_delivered", {
                "shipment_id": ship.id, "order_id": ship.order_id, "kind": ship.kind},
                subject_id=ship.customer_id, source="carrier", occurred_at=cp.at))
            if ship.kind == "outbound":
                await self.kernel.service(OrderService).record_delivery(
                    uow, ship.order_id, ship.id)

    async def _record_unknown(self, uow: UnitOfWork, carrier: str, u: TrackingUpdate, *,
                              batch: _Batch | None = None) -> None:
        now = self.kernel.clock.now()
        key = (unknown_tracking.c.carrier == carrier,
               unknown_tracking.c.tracking_number == u.tracking_number)
        known = batch.unknown(carrier, u.tracking_number) if batch else _UNKNOWN
        if known is _UNKNOWN:
            row = (await uow.execute(sa.select(unknown_tracking.c.updates).where(*key))).first()
            known = None if row is None else row.updates
        if known is None:
            updates = [update_to_json(u)]
            await uow.execute(unknown_tracking.insert().values(
                carrier=carrier, tracking_number=u.tracking_number, first_seen=now,
                last_seen=now, seen_count=1, last_status=u.checkpoint.status,
                updates=updates))
        else:
            updates = [*known, update_to_json(u)][-50:]
            await uow.execute(unknown_tracking.update().where(*key).values(
                last_seen=now, seen_count=unknown_tracking.c.seen_count + 1,
                last_status=u.checkpoint.status, updates=updates))
        if batch:
            batch.recorded(carrier, u.tracking_number, updates)

    async def _adopt_unknown(self, uow: UnitOfWork, carrier: str, tracking_number: str) -> int:
        """Apply updates that arrived before the shipment was known."""
        rows = (await uow.execute(sa.select(unknown_tracking).where(
            unknown_tracking.c.tracking_number == tracking_number,
            unknown_tracking.c.resolved_at.is_(None)))).all()
        n = 0
        for row in rows:
            if row.carrier not in (carrier, "kunde"):
                continue
            for raw in row.updates:
                n += await self.apply(uow, row.carrier, update_from_json(raw)) == "applied"
            await uow.execute(unknown_tracking.update().where(
                unknown_tracking.c.carrier == row.carrier,
                unknown_tracking.c.tracking_number == tracking_number).values(
                resolved_at=self.kernel.clock.now()))
        return n
