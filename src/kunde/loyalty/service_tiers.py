"""Tiers: qualification over a rolling window, immediate upgrade, downgrade at review.

A member qualifies for the highest tier whose thresholds (points earned, spend
net of refunds, paid orders in the window) are met by any one measure. Upgrades
happen as soon as an award qualifies (`EarnEngine.review_tier`). Downgrades wait
for the member's review date plus a grace period, and go to the tier the member
then qualifies for; a member who still qualifies keeps the tier for another period.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.loyalty.models import Programme
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_merge import merged_history
from kunde.loyalty.tables import members, purchases, transactions
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.kernel import Kernel

EARNING_KINDS = ("award", "quest")


async def qualifying_metrics(conn: Any, cid: str, since: datetime) -> dict[str, int]:
    """Points earned, spend net of refunds and paid orders since ``since``; a member's
    earning history includes that of records merged into them (until an unmerge)."""
    earned_by = sa.and_(transactions.c.customer_id == cid,
                        transactions.c.kind.in_(EARNING_KINDS),
                        transactions.c.created_at >= since)
    pts = int((await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(
        transactions.c.points), 0)).where(earned_by))).scalar_one())
    for merged_id, undone_at in await merged_history(conn, cid):
        cond = [transactions.c.customer_id == merged_id, transactions.c.kind.in_(EARNING_KINDS),
                transactions.c.created_at >= since]
        if undone_at is not None:
            cond.append(transactions.c.created_at < undone_at)
        pts += int((await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(
            transactions.c.points), 0)).where(*cond))).scalar_one())
    spend, orders = (await conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(purchases.c.paid_minor
                                               - purchases.c.refunded_minor), 0),
                  sa.func.count())
        .where(purchases.c.customer_id == cid, purchases.c.paid_at >= since))).one()
    return {"points": int(pts), "spend_minor": int(spend), "orders": int(orders)}


def qualified_tier(prog: Programme, m: dict[str, int]) -> str:
    best = prog.tiers[0].id
    for t in prog.tiers[1:]:
        if ((t.min_points and m["points"] >= t.min_points)
                or (t.min_spend_minor and m["spend_minor"] >= t.min_spend_minor)
                or (t.min_orders and m["orders"] >= t.min_orders)):
            best = t.id
    return best


def tier_progress(prog: Programme, tier_id: str | None, m: dict[str, int]) -> dict[str, Any]:
    """What the member has toward the next tier, by each measure."""
    rank = prog.tier_rank(tier_id)
    nxt = prog.tiers[rank + 1] if 0 <= rank < len(prog.tiers) - 1 else None
    if nxt is None:
        return {"next_tier": None, "metrics": m}
    need = {k: v for k, v in {"points": nxt.min_points, "spend_minor": nxt.min_spend_minor,
                              "orders": nxt.min_orders}.items() if v}
    return {"next_tier": nxt.id, "next_tier_name": nxt.name, "metrics": m,
            "needed": {k: max(0, v - m[k]) for k, v in need.items()},
            "percent": max((min(100, m[k] * 100 // v) for k, v in need.items()), default=100)}


class TierReviews:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.svc = kernel.service(LoyaltyService)

    async def run_due(self, limit: int = 500) -> int:
        """Review members whose period (plus grace) ended; returns how many changed tier."""
        prog = await self.svc.programme()
        if len(prog.tiers) < 2:
            return 0
        now = self.kernel.clock.now()
        grace = timedelta(days=prog.tier_policy.grace_days)
        async with self.kernel.db.read() as conn:
            due = (await conn.execute(sa.select(members.c.customer_id).where(
                members.c.tier_review_at <= now - grace).limit(limit))).scalars().all()
        changed = 0
        for cid in due:
            async with self.kernel.db.transaction() as uow:
                changed += await self._review(uow, prog, cid, now, grace)
        return changed

    async def _review(self, uow: UnitOfWork, prog: Programme, cid: str, now: datetime,
                      grace: timedelta) -> int:
        row = (await uow.execute(sa.select(members).where(
            members.c.customer_id == cid, members.c.tier_review_at <= now - grace))).first()
        if row is None:
            return 0
        since = now - timedelta(days=prog.tier_policy.window_days)
        target = qualified_tier(prog, await qualifying_metrics(uow, cid, since))
        next_review = now + timedelta(days=prog.tier_policy.review_days)
        if prog.tier_rank(target) >= prog.tier_rank(row.tier):
            await uow.execute(members.update().where(members.c.customer_id == cid)
                              .values(tier_review_at=next_review))
            return 0
        await uow.execute(members.update().where(members.c.customer_id == cid).values(
            tier=target, tier_since=now, tier_review_at=next_review))
        uow.emit(Event.new("loyalty.tier_changed", {
            "from": row.tier, "to": target, "direction": "down"},
            subject_id=cid, source="loyalty"))
        return 1
