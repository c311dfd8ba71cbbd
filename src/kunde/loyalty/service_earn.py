"""The earning engine: what an event is worth to a member, applied exactly once.

Called by the loyalty consumer inside the transaction that also advances its
position. Each award's ledger id is derived from (event id, rule id); a cap is
consumed with an atomic conditional UPDATE and given back if the award turns
out to be a duplicate, so neither points nor caps are ever counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.loyalty import ledger
from kunde.loyalty.models import Cap, Programme
from kunde.loyalty.rules import CompiledProgramme, Earn, EventView, window_key
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_merge import MERGE_EVENTS, MemberMerges, live_id, live_ids
from kunde.loyalty.service_quests import QuestEngine
from kunde.loyalty.service_referrals import ReferralGuard
from kunde.loyalty.service_welcome import WelcomeReward
from kunde.loyalty.tables import (
    lots,
    member_segments,
    members,
    purchases,
    rule_usage,
    season_xp,
)
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel



def view_of(event: Event) -> EventView:
    payload = event.payload or {}
    channel = payload.get("channel") or event.source
    return EventView(event.type, payload, channel, event.occurred_at)


class MergedMeanwhile(RuntimeError):
    """The event's customer was merged concurrently; the consumer retries the event."""


# Handled whatever the programme says (welcome, orders, refunds, goodwill).
ALWAYS_HANDLED = frozenset({
    "fulfilment.goodwill_granted", "commerce.order_placed", "commerce.order_paid",
    "commerce.refund_issued", "profiles.customer_created", "consent.changed",
    "ingest.identify"})


class EarnEngine:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.svc = kernel.service(LoyaltyService)
        self.quests = QuestEngine(kernel)
        self.merges = MemberMerges(kernel)
        self.referrals = ReferralGuard(kernel)
        self.welcomes = WelcomeReward(kernel)
        self._compiled: tuple[Programme, CompiledProgramme] | None = None

    async def compiled(self) -> CompiledProgramme:
        prog = await self.svc.programme()
        if self._compiled is None or self._compiled[0] is not prog:
            self._compiled = (prog, CompiledProgramme(prog))
        return self._compiled[1]

    async def handle_batch(self, uow: UnitOfWork, events: Sequence[Event]) -> None:
        """`handle` each event, with the batch's merge lookups done in one query."""
        live = await live_ids(uow, {e.subject_id for e in events if e.subject_id})
        credited: set[str] = set()
        for event in events:
            await self.handle(uow, event, live=live, credited=credited)
        if uow.dialect == "postgresql" and credited:
            # A merge of a credited record committed while we wrote to it (another
            # worker, another partition): what we credited would stay behind. Roll back;
            # the retry credits the survivor. (SQLite runs one writer at a time.)
            moved = [c for c, survivor in (await live_ids(uow, credited)).items()
                     if survivor != c]
            if moved:
                raise MergedMeanwhile(f"customers {moved} were merged while their events "
                                      "were handled")

    async def handle(self, uow: UnitOfWork, event: Event, *,
                     live: dict[str, str] | None = None,
                     credited: set[str] | None = None) -> None:
        cid = event.subject_id
        if not cid or event.erased or event.payload is None:
            return
        if event.type == "interaction.recorded" and str(
                event.payload.get("kind", "")).startswith("order_"):
            return  # purchases count only from commerce events (no double counting)
        cp = await self.compiled()
        now = self.kernel.clock.now()
        if event.type in MERGE_EVENTS:
            await self._merge(uow, event, now)
            if live is not None:
                live.clear()  # ids looked up before this merge may have moved
            return
        if event.type in ("segments.entered", "segments.left"):
            await self._segment(uow, cid, event)  # per record: a merged one is left anyway
            return
        if event.type not in cp.event_types and event.type not in ALWAYS_HANDLED:
            return  # most of the log: nothing to earn, no lookup
        subject = cid
        # A merged record's late events count for its survivor.
        if live is not None and cid in live:
            cid = live[cid]
        else:
            cid = await live_id(uow, cid)
            if live is not None:
                live[subject] = cid
        await self._earn(uow, event, cid, cp, now)
        if cid == subject:
            if credited is not None:
                credited.add(cid)  # checked once for the batch by handle_batch
            elif uow.dialect == "postgresql" and await live_id(uow, cid) != cid:
                raise MergedMeanwhile(f"customer {cid} was merged while its event was handled")

    async def _earn(self, uow: UnitOfWork, event: Event, cid: str, cp: CompiledProgramme,
                    now: datetime) -> None:
        assert event.payload is not None
        if event.type == "fulfilment.goodwill_granted":
            p = event.payload
            target = await live_id(uow, str(p.get("customer_id") or cid))
            await self.svc.grant_goodwill(uow, target, int(p.get("points", 0)),
                                          str(p.get("reason", "goodwill")),
                                          str(p.get("cause_id") or event.id))
            return
        if event.type == "commerce.order_placed":
            await self._record_order(uow, cid, event.payload)
        elif event.type == "commerce.order_paid":
            await self._record_payment(uow, cid, event.payload, now)
        elif event.type == "commerce.refund_issued":
            await self.clawback(uow, cid, event.payload, now)
        elif event.type in ("profiles.customer_created", "consent.changed", "ingest.identify"):
            await self.welcomes.grant(uow, cid, event, now)
        if event.type not in cp.event_types:
            return
        tier = await self.svc.ensure_member(uow, cid, now)
        view = view_of(event)
        if event.type == "commerce.order_placed" or event.type == "commerce.order_paid":
            view = await self._with_order(uow, view)
        earned = 0
        for earn in cp.earn(view, tier):
            cause = event.id
            referral = cp.referrals.get(earn.rule_id)
            if referral is not None:
                verdict = await self.referrals.check(cid, referral, view.payload)
                if verdict.refusal or verdict.cause_id is None:
                    await ledger.post(
                        uow, kind="refused", customer_id=cid, cause_id=event.id,
                        rule=earn.rule_id, reason=f"no points: {verdict.refusal}", legs=[],
                        now=now, points=0)
                    continue
                cause = verdict.cause_id
            earned += await self.award(uow, cid, event, earn, now, cause_id=cause)
        await self.quests.progress(uow, cid, event, view, cp, now)
        if earned or event.type == "commerce.order_paid":  # only then can a tier be reached
            await self.review_tier(uow, cid, now)

    async def _merge(self, uow: UnitOfWork, event: Event, now: datetime) -> None:
        if event.type == "profiles.customers_unmerged":
            await self.merges.unmerge(uow, event)
            return
        survivor = await self.merges.merge(uow, event)
        if survivor is not None:  # combined history may reach a higher tier
            await self.review_tier(uow, survivor, now)

    # -- awarding ----------------------------------------------------------------
    async def award(self, uow: UnitOfWork, cid: str, event: Event, earn: Earn,
                    now: datetime, cause_id: str | None = None) -> int:
        """Award one rule's points, once per (cause, rule); the cause is the event unless
        the rule says otherwise (a referral: the referred person)."""
        cause_id = cause_id or event.id
        points = earn.points
        if earn.cap is not None and points > 0:
            points = await self._consume_cap(uow, cid, earn.rule_id, earn.cap, points,
                                             event.occurred_at)
        if points <= 0:
            return 0
        prog = await self.svc.programme()
        available_at = now + timedelta(days=prog.return_window_days) if earn.pending else now
        reason = "; ".join(earn.reasons)
        posted = await ledger.credit(
            uow, kind="award", source="s:issued", customer_id=cid, points=points,
            cause_id=cause_id, rule=earn.rule_id, reason=reason, now=now,
            available_at=available_at, expires_at=await self.svc.expiry_for(available_at),
            # Only purchase awards are tied to the order (and clawed back on its refunds).
            ref=(str((event.payload or {}).get("order_id") or "") or None)
            if event.type == "commerce.order_paid" else None,
        )
        if posted is None:
            if earn.cap is not None:
                await self._return_cap(uow, cid, earn.rule_id, earn.cap, points,
                                       event.occurred_at)
            return 0
        self.svc.emit_awarded(uow, cid, posted.txn_id, points, earn.rule_id, reason, cause_id,
                              pending=earn.pending)
        if earn.xp:
            await self.add_xp(uow, cid, earn.xp, now)
        return points

    async def add_xp(self, uow: UnitOfWork, cid: str, xp: int, now: datetime) -> None:
        season = (await self.svc.programme()).active_season(now)
        if season is None or xp <= 0:
            return
        await uow.execute(insert_ignore(uow.dialect, season_xp),
                          {"customer_id": cid, "season_id": season.id, "xp": 0})
        await uow.execute(season_xp.update().where(
            season_xp.c.customer_id == cid, season_xp.c.season_id == season.id,
        ).values(xp=season_xp.c.xp + xp))

    async def _consume_cap(self, uow: UnitOfWork, cid: str, rule_id: str, cap: Cap,
                           points: int, at: datetime) -> int:
        key = {"customer_id": cid, "rule_id": rule_id, "window": window_key(cap.per, at)}
        await uow.execute(insert_ignore(uow.dialect, rule_usage), {**key, "points": 0,
                                                                  "times": 0})
        where = [rule_usage.c.customer_id == cid, rule_usage.c.rule_id == rule_id,
                 rule_usage.c.window == key["window"]]
        if cap.max_times is not None:
            where.append(rule_usage.c.times < cap.max_times)
        if cap.max_points is not None:
            where.append(rule_usage.c.points < cap.max_points)
        row = (await uow.execute(rule_usage.update().where(*where).values(
            points=rule_usage.c.points + points, times=rule_usage.c.times + 1,
        ).returning(rule_usage.c.points))).first()
        if row is None:
            return 0
        if cap.max_points is not None and row.points > cap.max_points:
            over = int(row.points) - cap.max_points
            await uow.execute(rule_usage.update().where(*where[:3]).values(
                points=cap.max_points))
            return points - over
        return points

    async def _return_cap(self, uow: UnitOfWork, cid: str, rule_id: str, cap: Cap,
                          points: int, at: datetime) -> None:
        await uow.execute(rule_usage.update().where(
            rule_usage.c.customer_id == cid, rule_usage.c.rule_id == rule_id,
            rule_usage.c.window == window_key(cap.per, at),
        ).values(points=rule_usage.c.points - points, times=rule_usage.c.times - 1))

    async def _segment(self, uow: UnitOfWork, cid: str, event: Event) -> None:
        p = event.payload or {}
        keys = {str(p[k])[:100] for k in ("segment_id", "name") if p.get(k)}
        for key in keys:
            if event.type == "segments.entered":
                await uow.execute(insert_ignore(uow.dialect, member_segments),
                                  {"customer_id": cid, "segment": key})
            else:
                await uow.execute(member_segments.delete().where(
                    member_segments.c.customer_id == cid, member_segments.c.segment == key))

    # -- purchases ---------------------------------------------------------------
    async def _record_order(self, uow: UnitOfWork, cid: str, p: dict[str, Any]) -> None:
        cats = sorted({str(line.get("category")) for line in p.get("lines") or []
                       if line.get("category")})
        await uow.execute(insert_ignore(uow.dialect, purchases), {
            "order_id": str(p.get("order_id")), "customer_id": cid,
            "currency": p.get("currency"), "placed_minor": int(p.get("total_minor") or 0),
            "paid_minor": 0, "refunded_minor": 0, "categories": cats,
        })

    async def _record_payment(self, uow: UnitOfWork, cid: str, p: dict[str, Any],
                              now: datetime) -> None:
        oid = str(p.get("order_id"))
        await uow.execute(insert_ignore(uow.dialect, purchases), {
            "order_id": oid, "customer_id": cid, "currency": p.get("currency"),
            "placed_minor": 0, "paid_minor": 0, "refunded_minor": 0, "categories": [],
        })
        await uow.execute(purchases.update().where(
            purchases.c.order_id == oid, purchases.c.paid_at.is_(None),
        ).values(paid_minor=int(p.get("amount_minor") or 0), paid_at=now))

    async def _with_order(self, uow: UnitOfWork, view: EventView) -> EventView:
        """Give order_paid rules the order's categories (they come with order_placed)."""
        oid = view.payload.get("order_id")
        row = (await uow.execute(sa.select(purchases.c.categories).where(
            purchases.c.order_id == str(oid)))).first()
        cats = list(row.categories or []) if row else []
        return EventView(view.type, {**view.payload, "categories": cats}, view.channel,
                         view.occurred_at)

    async def clawback(self, uow: UnitOfWork, cid: str, p: dict[str, Any],
                       now: datetime) -> None:
        """Reverse the share of an order's awards that was refunded (cumulative, exact)."""
        oid, refund_id = str(p.get("order_id")), str(p.get("refund_id"))
        marker = await ledger.post(uow, kind="refund", customer_id=cid, cause_id=refund_id,
                                   reason=f"refund {refund_id} of order {oid}", legs=[],
                                   now=now, ref=oid, points=0)
        if marker is None:
            return
        await uow.execute(purchases.update().where(purchases.c.order_id == oid).values(
            refunded_minor=purchases.c.refunded_minor + int(p.get("amount_minor") or 0)))
        order = (await uow.execute(sa.select(purchases).where(
            purchases.c.order_id == oid))).first()
        paid = int(order.paid_minor) if order and order.paid_minor else 0
        if order is None or paid <= 0:
            return
        refunded = min(int(order.refunded_minor), paid)
        # The order's award lots, whoever holds them now (a merge moves lots to the survivor).
        award_lots = (await uow.execute(sa.select(lots).where(
            lots.c.ref == oid, lots.c.customer_id.in_({cid, order.customer_id}),
        ).order_by(lots.c.id))).all()
        for lot in award_lots:
            target = int(lot.points) * refunded // paid
            delta = target - int(lot.reversed)
            posted = await ledger.reverse_lot(
                uow, customer_id=lot.customer_id, lot_id=lot.id, points=delta,
                cause_id=refund_id,
                reason=f"refund of order {oid}: {refunded}/{paid} returned", now=now, ref=oid)
            if posted is not None and posted.points:
                uow.emit(Event.new("loyalty.points_reversed", {
                    "entry_id": posted.txn_id, "points": posted.points, "order_id": oid,
                    "refund_id": refund_id, "lot_id": lot.id,
                }, subject_id=lot.customer_id, source="loyalty"))

    # -- tiers -------------------------------------------------------------------
    async def qualifying(self, uow: Any, cid: str, now: datetime) -> dict[str, int]:
        from kunde.loyalty.service_tiers import qualifying_metrics

        prog = await self.svc.programme()
        return await qualifying_metrics(uow, cid, now - timedelta(
            days=prog.tier_policy.window_days))

    async def review_tier(self, uow: UnitOfWork, cid: str, now: datetime) -> None:
        """Upgrade at once when the member qualifies for a higher tier."""
        from kunde.loyalty.service_tiers import qualified_tier

        prog = await self.svc.programme()
        if len(prog.tiers) < 2:
            return
        row = (await uow.execute(sa.select(members.c.tier).where(
            members.c.customer_id == cid))).first()
        if row is None:
            return
        target = qualified_tier(prog, await self.qualifying(uow, cid, now))
        if prog.tier_rank(target) <= prog.tier_rank(row.tier):
            return
        done = await uow.execute(members.update().where(
            members.c.customer_id == cid, members.c.tier == row.tier).values(
            tier=target, tier_since=now,
            tier_review_at=now + timedelta(days=prog.tier_policy.review_days)))
        if done.rowcount:
            uow.emit(Event.new("loyalty.tier_changed", {
                "from": row.tier, "to": target, "direction": "up",
            }, subject_id=cid, source="loyalty"))
