"""Shipments and track & trace: create, accept carrier webhooks, read.

Acceptance (`accept`) is the hot path: verify the Standard Webhooks signature,
parse with the carrier's adapter, and store the normalised updates in
``tracking_inbox`` in one small transaction (the unique (carrier, message id)
rejects replays). Applying them to shipments (`apply_pending`, in
`kunde.fulfilment.tracking_updates`) runs in the background in batches, so a
burst of scans never slows the carriers' requests.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import date, datetime
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
from kunde.fulfilment.models import NEXT_STEP, expected_scan_by
from kunde.fulfilment.tables import checkpoints, shipments, tracking_inbox, unknown_tracking
from kunde.fulfilment.tracking_updates import TrackingUpdateApplier, update_to_json
from kunde.kernel import Kernel
from kunde.messaging import signing
from kunde.messaging.service import MessagingService
from kunde.store.database import UnitOfWork
from kunde.store.quick import Query

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


class FulfilmentService(TrackingUpdateApplier):
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
