"""The member's hot reads (balance, overview) on the quick readers (ADR 0013).

Same answers as the Core queries in `service_tiers.qualifying_metrics` and the season
and merge helpers, in one snapshot, compiled once per dialect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kunde.loyalty.service_tiers import EARNING_KINDS
from kunde.loyalty.tables import (
    accounts,
    badges,
    members,
    merges,
    purchases,
    season_results,
    season_xp,
    transactions,
)
from kunde.store.quick import Query, QuickSession

_cid = sa.bindparam("cid", type_=sa.String())
_earning = sa.or_(*(transactions.c.kind == k for k in EARNING_KINDS))
_at = transactions.c.created_at
_since = sa.bindparam("since", type_=_at.type)

SUMMARY = Query(
    sa.select(members.c.tier, members.c.tier_review_at, accounts.c.bucket, accounts.c.balance)
    .select_from(members.outerjoin(accounts, accounts.c.customer_id == members.c.customer_id))
    .where(members.c.customer_id == _cid))

EARNED_SINCE = Query(
    sa.select(sa.func.coalesce(sa.func.sum(transactions.c.points), 0).label("points"))
    .where(transactions.c.customer_id == _cid, _earning,
           _at >= _since))

EARNED_BETWEEN = Query(
    sa.select(sa.func.coalesce(sa.func.sum(transactions.c.points), 0).label("points"))
    .where(transactions.c.customer_id == _cid, _earning,
           _at >= _since, _at < sa.bindparam("until", type_=_at.type)))

MERGED_IN = Query(
    sa.select(merges.c.merged_id, merges.c.undone_at).where(merges.c.survivor_id == _cid))

SURVIVOR = Query(
    sa.select(merges.c.survivor_id)
    .where(merges.c.merged_id == _cid, merges.c.undone_at.is_(None)))

SPEND_SINCE = Query(
    sa.select(sa.func.coalesce(sa.func.sum(purchases.c.paid_minor - purchases.c.refunded_minor),
                               0).label("spend"),
              sa.func.count().label("orders"))
    .where(purchases.c.customer_id == _cid,
           purchases.c.paid_at >= sa.bindparam("since", type_=purchases.c.paid_at.type)))

SEASON_XP = Query(
    sa.select(season_xp.c.xp).where(
        season_xp.c.customer_id == _cid,
        season_xp.c.season_id == sa.bindparam("season", type_=sa.String())))

BADGES = Query(
    sa.select(badges.c.badge).where(badges.c.customer_id == _cid).order_by(badges.c.awarded_at))

SEASON_RESULTS = Query(
    sa.select(season_results).where(season_results.c.customer_id == _cid)
    .order_by(season_results.c.finished_at.desc()))


async def summary_rows(q: QuickSession, cid: str) -> list[dict[str, Any]]:
    return await q.fetch(SUMMARY, cid=cid)


async def qualifying_metrics(q: QuickSession, cid: str, since: datetime) -> dict[str, int]:
    """As `service_tiers.qualifying_metrics`, merged records' earnings included."""
    points = int((await q.fetch(EARNED_SINCE, cid=cid, since=since))[0]["points"])
    for merged in await q.fetch(MERGED_IN, cid=cid):
        if merged["undone_at"] is None:
            got = await q.fetch(EARNED_SINCE, cid=merged["merged_id"], since=since)
        else:
            got = await q.fetch(EARNED_BETWEEN, cid=merged["merged_id"], since=since,
                                until=merged["undone_at"])
        points += int(got[0]["points"])
    spend = (await q.fetch(SPEND_SINCE, cid=cid, since=since))[0]
    return {"points": points, "spend_minor": int(spend["spend"]),
            "orders": int(spend["orders"])}
