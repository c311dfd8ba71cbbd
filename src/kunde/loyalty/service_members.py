"""Read models for members and staff: overview, quests, simulation, analytics."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.clock import as_utc
from kunde.loyalty import reads
from kunde.loyalty.ledger import SYSTEM_ACCOUNTS, txn_id
from kunde.loyalty.models import Programme
from kunde.loyalty.rules import CompiledProgramme, EventView, quest_round, window_key
from kunde.loyalty.service import LoyaltyService, benefits
from kunde.loyalty.service_merge import live_id
from kunde.loyalty.service_quests import QuestEngine
from kunde.loyalty.service_referrals import ReferralGuard
from kunde.loyalty.service_rewards import RewardService
from kunde.loyalty.service_seasons import SeasonEnd, level_of
from kunde.loyalty.service_tiers import tier_progress
from kunde.loyalty.tables import (
    accounts,
    causes,
    entries,
    members,
    quest_completions,
    redemptions,
    rule_usage,
    streaks,
    team_members,
    teams,
    transactions,
)

if TYPE_CHECKING:
    from kunde.kernel import Kernel


class MemberViews:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.svc = kernel.service(LoyaltyService)
        self.engine = QuestEngine(kernel)

    async def overview(self, cid: str) -> dict[str, Any]:
        """Balance, pending, tier with benefits and progress, season level, badges."""
        prog = await self.svc.programme()
        now = self.kernel.clock.now()
        since = now.replace(microsecond=0) - timedelta(days=prog.tier_policy.window_days)
        season = prog.active_season(now)
        # One snapshot on the quick readers: this is a hot read (ADR 0013).
        async with self.kernel.db.quick.session() as q:
            rows = await reads.summary_rows(q, cid)
            metrics = await reads.qualifying_metrics(q, cid, since)
            xp = 0
            if season:
                got = await q.fetch_one(reads.SEASON_XP, cid=cid, season=season.id)
                xp = int(got["xp"]) if got else 0
            badge_rows = await q.fetch(reads.BADGES, cid=cid)
            results = await q.fetch(reads.SEASON_RESULTS, cid=cid)
            survivor_row = await q.fetch_one(reads.SURVIVOR, cid=cid)
        out = self.svc.summary_of(prog, cid, rows)
        out["badges"] = [r["badge"] for r in badge_rows]
        review = rows[0]["tier_review_at"] if rows else None
        finished = SeasonEnd.results_of(prog, results)
        survivor = survivor_row["survivor_id"] if survivor_row else cid
        out["tier_progress"] = tier_progress(prog, out["tier"], metrics)
        out["tier_review_at"] = review
        out["season"] = ({"id": season.id, "name": season.name, "xp": xp,
                          "level": level_of(season.levels, xp), "levels": season.levels,
                          "ends_at": season.ends_at} if season else None)
        # Final standings of finished seasons (newest first): XP, level, rank, points won.
        out["finished_seasons"] = finished
        # A record merged into another customer: its membership lives there now.
        out["merged_into"] = survivor if survivor != cid else None
        return out

    async def quests(self, cid: str) -> list[dict[str, Any]]:
        prog = await self.svc.programme()
        now = self.kernel.clock.now()
        rewards = self.kernel.service(RewardService)
        async with self.kernel.db.read() as conn:
            history = await rewards.history(conn, cid)
            team = await self.engine.team_of(conn, cid)
            out = []
            for q in rewards.taste.rank_quests(history, list(prog.quests)):
                if (q.valid_until and now >= q.valid_until) or (
                        q.valid_from and now < q.valid_from):
                    continue
                rnd = quest_round(q, now)
                owner = team if q.team else cid
                counts = (await self.engine.step_counts(conn, owner, q, rnd)
                          if owner else [0] * len(q.steps))
                done = owner is not None and await self.engine.completed(conn, owner, q.id,
                                                                           rnd)
                streak = (await conn.execute(sa.select(streaks.c.length).where(
                    streaks.c.customer_id == cid, streaks.c.quest_id == q.id))).scalar()
                out.append({
                    "id": q.id, "name": q.name, "cadence": q.cadence, "round": rnd,
                    "team": q.team, "reward_points": q.reward_points, "xp": q.xp,
                    "badge": q.badge, "completed": done, "streak": int(streak or 0),
                    "steps": [{"label": s.label or s.event, "done": min(c, s.count),
                               "target": s.count} for s, c in zip(q.steps, counts, strict=True)],
                })
        return out

    async def simulate(self, event_type: str, payload: dict[str, Any], *,
                       channel: str | None, at: datetime | None, tier: str | None,
                       customer_id: str | None) -> dict[str, Any]:
        """What this event would earn, and why — changes nothing."""
        prog = await self.svc.programme()
        cp = CompiledProgramme(prog)
        when = as_utc(at) if at else self.kernel.clock.now()
        if customer_id and tier is None:
            async with self.kernel.db.read() as conn:
                tier = (await conn.execute(sa.select(members.c.tier).where(
                    members.c.customer_id == customer_id))).scalar()
        view = EventView(event_type, payload, channel, when)
        earns = []
        for e in cp.earn(view, tier):
            capped = e.points
            refused = None
            referral = cp.referrals.get(e.rule_id)
            if referral is not None and customer_id:
                refused = await self._referral_refusal(customer_id, referral, payload)
            elif referral is not None:
                e.reasons.append("referral: give customer_id to check the referrer against "
                                 "the referred identity")
            if refused:
                capped = 0
                e.reasons.append(f"no points: {refused}")
            elif e.cap is not None and customer_id:
                capped = await self._cap_left(customer_id, e.rule_id, e.cap, e.points, when)
            earns.append({"rule": e.rule_id, "points": capped, "uncapped": e.points,
                          "pending": e.pending, "xp": e.xp, "reasons": e.reasons,
                          **({"refused": refused} if refused else {})})
        not_matching = [r.id for r in prog.earn_rules if r.event == event_type
                        and r.id not in {e["rule"] for e in earns}]
        return {"event": event_type, "tier": tier, "total": sum(e["points"] for e in earns),
                "earns": earns, "rules_not_matching": not_matching,
                "quest_steps": [{"quest": h.quest.id, "step": h.step_index, "mark": h.mark}
                                for h in cp.quest_hits(view)]}

    async def _referral_refusal(self, cid: str, rule: Any, payload: dict[str, Any]
                                ) -> str | None:
        """Why a referral by this member would earn nothing (self-referral, already
        counted), or None."""
        cid = await self._live(cid)
        verdict = await ReferralGuard(self.kernel).check(cid, rule, payload)
        if verdict.refusal or verdict.cause_id is None:
            return verdict.refusal or "the referral cannot be checked"
        async with self.kernel.db.read() as conn:
            # By the cause alone (whichever record was credited): one row, one shard.
            done = (await conn.execute(sa.select(causes.c.customer_id).where(
                causes.c.txn_id == txn_id("award", verdict.cause_id, rule.id)))).first()
        return "this person was already referred" if done else None

    async def _live(self, cid: str) -> str:
        async with self.kernel.db.read() as conn:
            return await live_id(conn, cid)

    async def _cap_left(self, cid: str, rule_id: str, cap: Any, points: int, at: datetime
                        ) -> int:
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(rule_usage).where(
                rule_usage.c.customer_id == cid, rule_usage.c.rule_id == rule_id,
                rule_usage.c.window == window_key(cap.per, at)))).first()
        used_p, used_t = (int(row.points), int(row.times)) if row else (0, 0)
        if cap.max_times is not None and used_t >= cap.max_times:
            return 0
        if cap.max_points is not None:
            return max(0, min(points, int(cap.max_points) - used_p))
        return points

    async def analytics(self) -> dict[str, Any]:
        """Points liability, redemption rate, quest completions, team activity."""
        prog = await self.svc.programme()
        async with self.kernel.db.read() as conn:
            system = dict((await conn.execute(
                sa.select(entries.c.account, sa.func.sum(entries.c.amount))
                .where(entries.c.account.in_(SYSTEM_ACCOUNTS))
                .group_by(entries.c.account))).all())
            liab = dict((await conn.execute(
                sa.select(accounts.c.bucket, sa.func.sum(accounts.c.balance))
                .group_by(accounts.c.bucket))).all())
            tiers: dict[str, int] = dict((await conn.execute(
                sa.select(members.c.tier, sa.func.count()).group_by(members.c.tier))).all())
            quests: dict[str, int] = dict((await conn.execute(
                sa.select(quest_completions.c.quest_id, sa.func.count())
                .group_by(quest_completions.c.quest_id))).all())
            n_redeem = (await conn.execute(sa.select(sa.func.count())
                                           .select_from(redemptions))).scalar_one()
            n_teams = (await conn.execute(sa.select(sa.func.count())
                                          .select_from(teams))).scalar_one()
            n_team_members = (await conn.execute(sa.select(sa.func.count())
                                                 .select_from(team_members))).scalar_one()
            by_month = (await conn.execute(
                sa.select(transactions.c.kind, transactions.c.created_at, transactions.c.points)
                .where(transactions.c.kind.in_(("award", "quest", "welcome", "goodwill",
                                                "redeem", "expire")))
                .order_by(transactions.c.created_at.desc()).limit(20000))).all()
        issued = -sum(int(system.get(a, 0)) for a in ("s:issued", "s:goodwill"))
        redeemed = int(system.get("s:redeemed", 0))
        months: dict[str, dict[str, int]] = {}
        for kind, at, pts in by_month:
            m = months.setdefault(at.strftime("%Y-%m"), {"earned": 0, "redeemed": 0,
                                                         "expired": 0})
            key = {"redeem": "redeemed", "expire": "expired"}.get(kind, "earned")
            m[key] += abs(int(pts))
        return {
            "points_name": prog.points_name,
            "liability": {"available": int(liab.get("available") or 0),
                          "pending": int(liab.get("pending") or 0)},
            "system_accounts": {a: int(system.get(a, 0)) for a in SYSTEM_ACCOUNTS},
            "issued": issued, "redeemed": redeemed,
            "redemption_rate": round(redeemed / issued, 4) if issued else 0.0,
            "redemptions": int(n_redeem), "members_by_tier": {k: int(v) for k, v in
                                                              tiers.items()},
            "quest_completions": {q.id: int(quests.get(q.id, 0)) for q in prog.quests},
            "teams": int(n_teams), "team_members": int(n_team_members),
            "by_month": dict(sorted(months.items())),
            "benefits_by_tier": {t.id: benefits(t) for t in prog.tiers},
        }


def programme_summary(prog: Programme) -> dict[str, int]:
    return {"earn_rules": len(prog.earn_rules), "tiers": len(prog.tiers),
            "quests": len(prog.quests), "seasons": len(prog.seasons),
            "rewards": len(prog.rewards)}
