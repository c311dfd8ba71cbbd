"""The profile projector: identity links and merges, traits, activity, orders, consent, segments.

One consumer, ``profiles.projector``, reads ingested Spec messages and commerce order
events. Its effects commit in the same transaction as its log position, so each event
counts once. Per batch it looks up every identifier once and calls the identity graph
only for links that are new or join two customers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.profiles import graph
from kunde.profiles.models import PURPOSES, TRAIT_IDENTIFIERS
from kunde.profiles.service import ProfileService
from kunde.profiles.service_consent import ConsentService
from kunde.profiles.service_segments import SegmentService
from kunde.profiles.tables import customer_activity, profile_orders
from kunde.store.consumers import Consumer
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore, upsert

if TYPE_CHECKING:
    from kunde.kernel import Kernel

INGEST_TYPES = frozenset({f"ingest.{t}" for t in
                          ("track", "identify", "page", "screen", "group", "alias")})
ORDER_TYPES = frozenset({"commerce.order_placed", "commerce.order_paid",
                         "commerce.order_cancelled", "commerce.refund_issued"})
GRAPH_TYPES = frozenset({"profiles.customers_merged", "profiles.customers_unmerged"})


class Projector:
    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.profiles = kernel.service(ProfileService)
        self.consent = kernel.service(ConsentService)
        self.segments = kernel.service(SegmentService)

    async def handle(self, uow: UnitOfWork, events: Sequence[Event]) -> None:
        touched: set[str] = set()
        activity: dict[str, dict[str, Any]] = {}
        live = [e for e in events if e.payload is not None and not e.erased]
        await self._identities(uow, [e for e in live if e.type in INGEST_TYPES], touched)
        for e in live:
            assert e.payload is not None
            if e.type in INGEST_TYPES and e.subject_id:
                self._activity(activity, e)
                if e.type == "ingest.identify":
                    await self._identify(uow, e)
            elif e.type in ORDER_TYPES:
                cid = await self._order(uow, e)
                if cid:
                    touched.add(cid)
            elif e.type in GRAPH_TYPES:
                touched.update(v for k, v in e.payload.items() if k.endswith("_id"))
        await self._store_activity(uow, activity)
        touched.update(activity)
        if touched:
            canon = await graph.canonical_map(uow, touched)
            await self.segments.refresh(uow, touched | set(canon.values()))

    # -- identity ------------------------------------------------------------------
    async def _identities(self, uow: UnitOfWork, events: list[Event], touched: set[str]) -> None:
        """Link every identifier the events carry to the event's customer."""
        vault, rules = self.k.vault, self.profiles.rules
        claims: list[tuple[Event, str, str]] = []
        for e in events:
            p = e.payload or {}
            for kind, value in (("user_id", p.get("user_id")),
                                ("anonymous_id", p.get("anonymous_id"))):
                if value:
                    claims.append((e, kind, str(value)))
            if e.type == "ingest.identify":
                t = p.get("traits") or {}
                for kind in (*TRAIT_IDENTIFIERS, *rules.custom_kinds):
                    value = t.get(kind)
                    if isinstance(value, str | int) and not isinstance(value, bool) and value:
                        claims.append((e, kind, str(value)))
        if not claims and not any(e.type == "ingest.alias" for e in events):
            return
        hashes = {vault.blind_index(k, v) for _, k, v in claims}
        found = await graph.owners(uow, sorted(hashes))
        canon = await graph.canonical_map(uow, {e.subject_id for e, _, _ in claims
                                                if e.subject_id})
        for e, kind, value in claims:
            h = vault.blind_index(kind, value)
            subject = e.subject_id or ""
            have = found.get(h)
            if have is not None and have[1] == canon.get(subject, subject):
                continue
            after = await self.profiles.graph.link(
                uow, subject, kind, value, source=e.source,
                reason=f"{e.type} {(e.payload or {}).get('message_id', '')}".strip(),
                event_id=e.id, now=e.received_at)
            touched.update({subject, after})
            found = await graph.owners(uow, sorted(hashes))
            canon = await graph.canonical_map(uow, set(canon) | {subject})
        for e in events:
            if e.type == "ingest.alias" and e.subject_id:
                touched.update(await self._alias(uow, e))

    async def _alias(self, uow: UnitOfWork, e: Event) -> set[str]:
        previous = str((e.payload or {}).get("previous_id") or "")
        vault = self.k.vault
        hashes = [vault.blind_index(k, previous) for k in ("user_id", "anonymous_id")]
        found = await graph.owners(uow, hashes)
        owner = next((found[h][1] for h in hashes if h in found), None)
        assert e.subject_id is not None
        if owner is None:
            after = await self.profiles.graph.link(
                uow, e.subject_id, "anonymous_id", previous, source=e.source,
                reason="alias", event_id=e.id, now=e.received_at)
            return {e.subject_id, after}
        survivor, _ = await self.profiles.graph.merge(
            uow, owner, e.subject_id, kind="alias", reason="alias of a previous id",
            actor="alias", event_id=e.id, now=e.received_at, force=True)
        return {owner, e.subject_id, survivor}

    # -- traits and consent -----------------------------------------------------------
    async def _identify(self, uow: UnitOfWork, e: Event) -> None:
        p = e.payload or {}
        assert e.subject_id is not None
        traits = dict(p.get("traits") or {})
        consent = traits.pop("consent", None)
        if traits:
            await self.profiles.set_traits(uow, e.subject_id, traits, source=e.source,
                                           observed_at=e.occurred_at)
        ctx = (p.get("context") or {}).get("consent")
        decisions: dict[str, Any] = {}
        version, method = "", "identify"
        if isinstance(ctx, dict):
            prefs = ctx.get("categoryPreferences") or ctx.get("purposes") or {}
            decisions.update(prefs if isinstance(prefs, dict) else {})
            version = str(ctx.get("text_version") or ctx.get("version") or "")[:64]
            method = str(ctx.get("method") or method)[:40]
        if isinstance(consent, dict):
            decisions.update(consent)
        for purpose, granted in decisions.items():
            if purpose in PURPOSES and isinstance(granted, bool):
                await self.consent.record(
                    e.subject_id, purpose, granted, method=method, channel=e.source,
                    text_version=version, actor="customer", at=e.occurred_at, cause_id=e.id,
                    uow=uow)

    # -- activity ---------------------------------------------------------------------
    @staticmethod
    def _activity(acc: dict[str, dict[str, Any]], e: Event) -> None:
        assert e.subject_id is not None
        a = acc.setdefault(e.subject_id, {"first": e.occurred_at, "last": e.occurred_at,
                                          "channels": set(), "count": 0, "events": {}})
        a["first"], a["last"] = min(a["first"], e.occurred_at), max(a["last"], e.occurred_at)
        a["channels"].add((e.payload or {}).get("channel") or e.source)
        a["count"] += 1
        name = (e.payload or {}).get("event")
        if e.type == "ingest.track" and isinstance(name, str):
            at = e.occurred_at.isoformat()
            if at > a["events"].get(name, ""):
                a["events"][name] = at

    async def _store_activity(self, uow: UnitOfWork, acc: dict[str, dict[str, Any]]) -> None:
        if not acc:
            return
        rows = {r.customer_id: r for r in await uow.execute(
            sa.select(customer_activity).where(customer_activity.c.customer_id.in_(list(acc))))}
        out = []
        for cid, a in acc.items():
            old = rows.get(cid)
            first: datetime = min(a["first"], old.first_seen_at) if old else a["first"]
            last: datetime = max(a["last"], old.last_seen_at) if old else a["last"]
            events = dict(old.event_last) if old else {}
            for name, at in a["events"].items():
                if at > events.get(name, ""):
                    events[name] = at
            out.append({"customer_id": cid, "first_seen_at": first, "last_seen_at": last,
                        "channels": sorted(set(old.channels if old else []) | a["channels"]),
                        "events_count": (old.events_count if old else 0) + a["count"],
                        "event_last": events})
        await uow.execute(upsert(uow.dialect, customer_activity, ["customer_id"],
                                 ["first_seen_at", "last_seen_at", "channels", "events_count",
                                  "event_last"]), out)

    # -- orders -----------------------------------------------------------------------
    async def _order(self, uow: UnitOfWork, e: Event) -> str | None:
        p = e.payload or {}
        order_id = p.get("order_id")
        if not order_id:
            return None
        t = profile_orders
        if e.type == "commerce.order_placed":
            cid = str(p.get("customer_id") or e.subject_id or "")
            if not cid:
                return None
            cats: dict[str, int] = {}
            for line in p.get("lines") or []:
                if line.get("category"):
                    cats[line["category"]] = cats.get(line["category"], 0) + int(
                        line.get("quantity") or 1)
            await uow.execute(insert_ignore(uow.dialect, t), {
                "order_id": order_id, "customer_id": cid, "number": p.get("number"),
                "channel": str(p.get("channel") or e.source)[:32], "placed_at": e.occurred_at,
                "currency": str(p.get("currency") or "EUR")[:3],
                "total_minor": int(p.get("total_minor") or 0), "paid": False,
                "cancelled": False, "refunds": {}, "categories": cats})
            return cid
        row = (await uow.execute(sa.select(t.c.customer_id, t.c.refunds)
                                 .where(t.c.order_id == order_id))).first()
        if row is None:
            return None
        this = t.update().where(t.c.customer_id == row.customer_id, t.c.order_id == order_id)
        if e.type == "commerce.order_paid":
            await uow.execute(this.values(paid=True))
        elif e.type == "commerce.order_cancelled":
            await uow.execute(this.values(cancelled=True))
        elif p.get("refund_id"):
            refunds = {**(row.refunds or {}), str(p["refund_id"]): int(p.get("amount_minor") or 0)}
            await uow.execute(this.values(refunds=refunds))
        return str(row.customer_id)


def consumers(kernel: Kernel) -> list[Consumer]:
    projector = Projector(kernel)
    return [Consumer(name="profiles.projector", handle=projector.handle,
                     types=INGEST_TYPES | ORDER_TYPES | GRAPH_TYPES)]
