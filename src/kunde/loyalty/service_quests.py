"""Quests, seasons, streaks and badges: progress from events in real time.

Progress is a set of marks (one row per distinct thing that counts, inserted
with ON CONFLICT DO NOTHING), so a replayed event never counts twice. A quest is
complete when every step has enough marks in the current round; the completion
row is the idempotency key for its rewards. Rounds follow the cadence (day,
ISO week, month, season): a quest missed this round starts fresh in the next.
Team quests pool the marks of every member, with a per-member cap so one
member (or one member's duplicate accounts) cannot carry the team alone.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.core.ids import derived_id
from kunde.loyalty import ledger
from kunde.loyalty.models import Quest
from kunde.loyalty.rules import CompiledProgramme, EventView, quest_round
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.tables import (
    badges,
    quest_completions,
    quest_marks,
    season_xp,
    streaks,
    team_members,
)
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel


def previous_round(rnd: str) -> str | None:
    if rnd.startswith("d"):
        return (date.fromisoformat(rnd[1:]) - timedelta(days=1)).strftime("d%Y-%m-%d")
    if rnd.startswith("w"):
        y, w = rnd[1:].split("-")
        monday = date.fromisocalendar(int(y), int(w), 1) - timedelta(days=7)
        iy, iw, _ = monday.isocalendar()
        return f"w{iy}-{iw:02d}"
    if rnd.startswith("m"):
        year, month = (int(x) for x in rnd[1:].split("-"))
        return f"m{year - 1}-12" if month == 1 else f"m{year}-{month - 1:02d}"
    return None


class QuestEngine:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.svc = kernel.service(LoyaltyService)

    async def team_of(self, conn: Any, cid: str) -> str | None:
        row = (await conn.execute(sa.select(team_members.c.team_id).where(
            team_members.c.customer_id == cid))).first()
        return str(row[0]) if row else None

    async def progress(self, uow: UnitOfWork, cid: str, event: Event, view: EventView,
                       cp: CompiledProgramme, now: datetime) -> None:
        touched: dict[tuple[str, str], Quest] = {}
        team: str | bool | None = False  # looked up lazily
        for hit in cp.quest_hits(view):
            q = hit.quest
            if q.team:
                if team is False:
                    team = await self.team_of(uow, cid)
                if team is None:
                    continue
            rnd = quest_round(q, view.occurred_at)
            owner = str(team) if q.team else cid
            if await self.completed(uow, owner, q.id, rnd):
                continue
            if q.team and q.member_cap is not None:
                mine = (await uow.execute(sa.select(sa.func.count()).select_from(quest_marks)
                        .where(quest_marks.c.customer_id == cid,
                               quest_marks.c.quest_id == q.id, quest_marks.c.round == rnd,
                               quest_marks.c.step == hit.step_index))).scalar_one()
                if mine >= q.member_cap:
                    continue
            await uow.execute(insert_ignore(uow.dialect, quest_marks), {
                "customer_id": cid, "quest_id": q.id, "round": rnd, "step": hit.step_index,
                "mark": hit.mark or event.id, "team_id": owner if q.team else None, "at": now,
            })
            touched[(q.id, rnd)] = q
        for (_, rnd), q in touched.items():
            owner = str(team) if q.team else cid
            counts = await self.step_counts(uow, owner, q, rnd)
            if all(counts[i] >= s.count for i, s in enumerate(q.steps)):
                await self.complete(uow, owner, q, rnd, now)

    async def completed(self, conn: Any, owner: str, quest_id: str, rnd: str) -> bool:
        return (await conn.execute(sa.select(quest_completions.c.quest_id).where(
            quest_completions.c.customer_id == owner, quest_completions.c.quest_id == quest_id,
            quest_completions.c.round == rnd))).first() is not None

    async def step_counts(self, conn: Any, owner: str, q: Quest, rnd: str) -> list[int]:
        who = quest_marks.c.team_id if q.team else quest_marks.c.customer_id
        rows = dict((await conn.execute(
            sa.select(quest_marks.c.step, sa.func.count())
            .where(who == owner, quest_marks.c.quest_id == q.id, quest_marks.c.round == rnd)
            .group_by(quest_marks.c.step))).all())
        return [int(rows.get(i, 0)) for i in range(len(q.steps))]

    async def complete(self, uow: UnitOfWork, owner: str, q: Quest, rnd: str,
                       now: datetime) -> None:
        """Complete the round and reward (every member, for a team) — once per round."""
        won = await uow.execute(insert_ignore(uow.dialect, quest_completions), {
            "customer_id": owner, "quest_id": q.id, "round": rnd, "completed_at": now})
        if won.rowcount != 1:
            return
        if q.team:
            winners = list((await uow.execute(sa.select(team_members.c.customer_id).where(
                team_members.c.team_id == owner))).scalars().all())
        else:
            winners = [owner]
        for cid in winners:
            await self.reward(uow, cid, q, rnd, owner, now)

    async def reward(self, uow: UnitOfWork, cid: str, q: Quest, rnd: str, owner: str,
                     now: datetime) -> None:
        entry_id = None
        if q.reward_points > 0:
            await self.svc.ensure_member(uow, cid, now)
            posted = await ledger.credit(
                uow, kind="quest", source="s:issued", customer_id=cid,
                points=q.reward_points, cause_id=derived_id("quest", owner, q.id, rnd, cid),
                rule=q.id, reason=f"quest completed: {q.name}", now=now,
                expires_at=await self.svc.expiry_for(now))
            entry_id = posted.txn_id if posted else None
        if q.xp:
            # XP counts toward a season only while it runs: after its end the standings
            # are final, and the next season starts from zero.
            prog = await self.svc.programme()
            running = prog.active_season(now)
            season = running.id if running and q.season in (None, running.id) else None
            if season:
                await uow.execute(insert_ignore(uow.dialect, season_xp),
                                  {"customer_id": cid, "season_id": season, "xp": 0})
                await uow.execute(season_xp.update().where(
                    season_xp.c.customer_id == cid, season_xp.c.season_id == season,
                ).values(xp=season_xp.c.xp + q.xp))
        if q.badge:
            await uow.execute(insert_ignore(uow.dialect, badges),
                              {"customer_id": cid, "badge": q.badge, "awarded_at": now})
        streak = await self._streak(uow, cid, q, rnd)
        uow.emit(Event.new("loyalty.quest_completed", {
            "quest_id": q.id, "round": rnd, "team_id": owner if q.team else None,
            "points": q.reward_points, "xp": q.xp, "badge": q.badge, "entry_id": entry_id,
            "streak": streak,
        }, subject_id=cid, source="loyalty"))

    async def _streak(self, uow: UnitOfWork, cid: str, q: Quest, rnd: str) -> int:
        prev = previous_round(rnd)
        if prev is None:
            return 0
        await uow.execute(insert_ignore(uow.dialect, streaks), {
            "customer_id": cid, "quest_id": q.id, "length": 0, "last_round": ""})
        key = (streaks.c.customer_id == cid, streaks.c.quest_id == q.id)
        await uow.execute(streaks.update().where(*key, streaks.c.last_round == prev)
                          .values(length=streaks.c.length + 1, last_round=rnd))
        await uow.execute(streaks.update().where(*key, streaks.c.last_round != rnd)
                          .values(length=1, last_round=rnd))
        return int((await uow.execute(sa.select(streaks.c.length).where(*key))).scalar_one())
