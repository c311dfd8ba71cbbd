"""Shipments and track & trace: create, accept carrier webhooks, apply updates, read.

Acceptance (`accept`) is the hot path: verify the Standard Webhooks signature,
parse with the carrier's adapter, and store the normalised updates in
``tracking_inbox`` in one small transaction (the unique (carrier, message id)
rejects replays). Applying them to shipments (`apply_pending`) runs in the
background in batches, so a burst of scans never slows the carriers' requests.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from kunde.commerce.service_orders import OrderService
from kunde.core import jsonutil
from kunde.core.errors import InvalidInput
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.fulfilment import carriers, promises
from kunde.fulfilment.config import FulfilmentConfig
from kunde.fulfilment.errors import (
    BadTrackingPayload,
    BadWebhook,
    ShipmentNotFound,
    TrackingNumberTaken,
    WebhookReplayed,
)
from kunde.fulfilment.inbox import InboxWriter
from kunde.fulfilment.models import (
    CLOSED,
    NEXT_STEP,
    NOT_A_SCAN,
    Checkpoint,
    TrackingUpdate,
    expected_scan_by,
    incremental_risk,
)
from kunde.fulfilment.tables import checkpoints, shipments, tracking_inbox, unknown_tracking
from kunde.kernel import Kernel
from kunde.messaging import signing
from kunde.messaging.service import MessagingService
from kunde.store.database import UnitOfWork
from kunde.store.quick import Query
from kunde.store.sql import insert_ignore

TRACK_SHIPMENT = Query(sa.select(
    shipments.c.id, shipments.c.order_number, shipments.c.carrier, shipments.c.kind,
    shipments.c.status, shipments.c.status_at, shipments.c.eta, shipments.c.promised_date,
    shipments.c.delivered_at, shipments.c.risk).where(shipments.c.token == sa.bindparam("token")))
TRACK_CHECKPOINTS = Query(sa.select(
    checkpoints.c.at, checkpoints.c.status, checkpoints.c.message, checkpoints.c.location)
    .where(checkpoints.c.shipment_id == sa.bindparam("shipment_id"))
    .order_by(checkpoints.c.at.desc())
    .limit(sa.literal_column("100")).offset(sa.literal_column("0")))  # no bound limit
log = logging.getLogger("kunde.fulfilment")


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


class FulfilmentService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.config = kernel.service(FulfilmentConfig)
        self.inbox = InboxWriter(kernel.db)

    def tracking_url(self, token: str) -> str:
        return f"{self.kernel.settings.effective_public_url}/track/{token}"

    # -- creating ------------------------------------------------------------------------
    async def create_shipment(self, *, order_id: str, carrier: str, service: str,
                              tracking_number: str, lines: dict[str, int],
                              country: str = "DK") -> dict[str, Any]:
        """Ship lines of an order; tells commerce and the customer. Idempotent by tracking no."""
        order = await self.kernel.service(OrderService).get_order(order_id)
        promised = order.get("promised_date")
        promised_date = date.fromisoformat(promised) if promised else promises.promise(
            order.get("shipping_method") or "standard", country,
            datetime.fromisoformat(order["placed_at"]))
        async with self.kernel.db.transaction() as uow:
            existing = (await uow.execute(sa.select(shipments).where(
                shipments.c.tracking_number == tracking_number,
                shipments.c.carrier == carrier))).first()
            if existing is not None:
                if existing.order_id != order_id:
                    raise TrackingNumberTaken("this tracking number belongs to another order")
                return self._summary(existing)
            shipment_id = new_id()
            await self.kernel.service(OrderService).record_fulfilment(
                uow, order_id, lines, shipment_id)
            row = await self.insert_shipment(
                uow, shipment_id=shipment_id, order_id=order_id, order_number=order["number"],
                customer_id=order.get("customer_id"), kind="outbound", carrier=carrier,
                service=service, tracking_number=tracking_number, lines=lines,
                country=country, promised_date=promised_date)
            if row["customer_id"]:
                await self.kernel.service(MessagingService).enqueue(
                    uow, customer_id=row["customer_id"], template="shipped",
                    context={"order_id": order_id, "order_number": order["number"],
                             "carrier": carrier, "promised_date": promised_date.isoformat(),
                             "tracking_url": self.tracking_url(row["token"])},
                    idempotency_key=f"shipped:{shipment_id}")
            await self._adopt_unknown(uow, carrier, tracking_number)
        return row

    async def insert_shipment(self, uow: UnitOfWork, *, shipment_id: str, order_id: str,
                              order_number: str, customer_id: str | None, kind: str,
                              carrier: str, service: str, tracking_number: str,
                              lines: dict[str, int], country: str,
                              promised_date: date | None, return_id: str | None = None
                              ) -> dict[str, Any]:
        now = self.kernel.clock.now()
        row = {
            "id": shipment_id, "order_id": order_id, "order_number": order_number,
            "customer_id": customer_id, "kind": kind, "return_id": return_id,
            "carrier": carrier, "service": service, "tracking_number": tracking_number,
            "token": secrets.token_urlsafe(18), "lines": lines, "country": country.upper(),
            "status": "pending", "status_at": now, "eta": None,
            "promised_date": promised_date,
            "promised_by": promises.promise_deadline(promised_date, country)
            if promised_date else None,
            "expected_scan_by": expected_scan_by("pending", now), "is_open": True,
            "risk": "ok", "care_due": False, "created_at": now, "updated_at": now,
        }
        await uow.execute(shipments.insert(), row)
        if customer_id:
            uow.emit(Event.new("fulfilment.shipment_created", {
                "shipment_id": shipment_id, "order_id": order_id, "kind": kind,
                "carrier": carrier, "service": service, "tracking_number": tracking_number,
                "lines": lines, "return_id": return_id,
                "promised_date": promised_date.isoformat() if promised_date else None,
            }, subject_id=customer_id, source="fulfilment"))
        return row

    # -- accepting carrier webhooks ----------------------------------------------------------
    async def accept(self, carrier: str, headers: Mapping[str, str], body: bytes) -> int:
        """Verify, parse and durably store one webhook; returns the number of updates."""
        secrets_ = await self.config.carrier_secrets(carrier)
        if not secrets_:
            raise BadWebhook(f"no webhook secret is configured for {carrier}",
                             reason="not_configured")
        try:
            msg_id, _ = signing.verify(secrets_, headers, body, now=time.time())
        except signing.SignatureError as exc:
            raise BadWebhook(exc.detail, reason=exc.reason) from exc
        try:
            updates = carriers.parse(carrier, jsonutil.loads(body))
        except (carriers.PayloadError, ValueError) as exc:
            raise BadTrackingPayload(f"the {carrier} payload is not valid: {exc}") from exc
        accepted = await self.inbox.submit({
            "carrier": carrier, "msg_id": msg_id, "received_at": self.kernel.clock.now(),
            "updates": [update_to_json(u) for u in updates]})
        if not accepted:
            raise WebhookReplayed("this webhook-id was already accepted", msg_id=msg_id)
        return len(updates)

    # -- applying ---------------------------------------------------------------------------
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
            from kunde.fulfilment.service_returns import ReturnService  # uses this module

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

    # -- reading ----------------------------------------------------------------------------
    @staticmethod
    def _summary(row: Any) -> dict[str, Any]:
        d = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
        for k in ("eta", "promised_date"):
            if isinstance(d.get(k), date):
                d[k] = d[k].isoformat()
        return d

    async def tracking_view(self, token: str) -> dict[str, Any] | None:
        """What the public tracking page shows: no names, no addresses."""
        if not token or len(token) > 40:
            return None
        # A public, hot page: two indexed lookups on the bare driver (`QuickReads`), not
        # through the async ORM layers, in one snapshot.
        async with self.kernel.db.quick.session() as q:
            ship = await q.fetch_one(TRACK_SHIPMENT, token=token)
            if ship is None:
                return None
            cps = await q.fetch(TRACK_CHECKPOINTS, shipment_id=ship["id"])
        return {"order_number": ship["order_number"], "carrier": ship["carrier"],
                "kind": ship["kind"], "status": ship["status"], "status_at": ship["status_at"],
                "eta": ship["eta"] or ship["promised_date"],
                "promised_date": ship["promised_date"], "delivered_at": ship["delivered_at"],
                "late": ship["risk"] != "ok", "next_step": NEXT_STEP.get(ship["status"], ""),
                "checkpoints": cps}

    async def get_shipment(self, shipment_id: str) -> dict[str, Any]:
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(shipments).where(
                shipments.c.id == shipment_id))).first()
            if row is None:
                raise ShipmentNotFound("no such shipment")
            cps = (await conn.execute(sa.select(checkpoints).where(
                checkpoints.c.shipment_id == shipment_id).order_by(checkpoints.c.at))).all()
        out = self._summary(row)
        out["tracking_url"] = self.tracking_url(row.token)
        out["checkpoints"] = [dict(c._mapping) for c in cps]
        return out

    async def search(self, *, status: str | None = None, risk: str | None = None,
                     kind: str | None = None, order_id: str | None = None,
                     customer_ids: Sequence[str] | None = None, limit: int = 50,
                     offset: int = 0) -> list[dict[str, Any]]:
        q = sa.select(shipments)
        if status:
            q = q.where(shipments.c.status == status)
        if risk:
            if risk not in ("ok", "at_risk", "late"):
                raise InvalidInput("risk is ok, at_risk or late", code="fulfilment.bad_filter")
            q = q.where(shipments.c.risk == risk)
        if kind:
            q = q.where(shipments.c.kind == kind)
        if order_id:
            q = q.where(shipments.c.order_id == order_id)
        if customer_ids is not None:
            q = q.where(shipments.c.customer_id.in_(list(customer_ids)))
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(q.order_by(shipments.c.created_at.desc())
                                       .limit(min(limit, 500)).offset(offset))).all()
        return [self._summary(r) for r in rows]

    async def unknown(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(sa.select(unknown_tracking).where(
                unknown_tracking.c.resolved_at.is_(None))
                .order_by(unknown_tracking.c.last_seen.desc()).limit(limit))).all()
        return [dict(r._mapping) for r in rows]

    async def purge_inbox(self, keep_days: int = 2) -> int:
        """Forget applied webhooks after the replay window (and a margin) has passed."""
        from datetime import timedelta

        cutoff = self.kernel.clock.now() - timedelta(days=keep_days)
        async with self.kernel.db.transaction() as uow:
            result = await uow.execute(tracking_inbox.delete().where(
                tracking_inbox.c.processed_at.is_not(None),
                tracking_inbox.c.received_at < cutoff))
        return int(result.rowcount)
