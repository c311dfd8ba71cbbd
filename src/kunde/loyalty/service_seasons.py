"""Season end: final standings and level-track rewards, exactly once.

Experience (XP) is kept per season (``loyalty_season_xp``), separate from spendable
points; XP only accrues while a season runs, so the next season starts every member
at zero. When a season has ended, the periodic job ``loyalty.season_end`` writes each
participant's final standing (XP, level, rank by XP) to ``loyalty_season_results``
and grants the season's ``level_rewards`` for every level reached: points through
the ledger with ids derived from (season, member, level), a badge, and a
``loyalty.season_finished`` event. The result row and the derived ledger ids make
the job idempotent: a rerun, a crash halfway or two workers at once grant nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.errors import NotFound
from kunde.core.events import Event
from kunde.core.ids import derived_id
from kunde.loyalty import ledger
from kunde.loyalty.models import Programme, Season
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.tables import badges, season_results, season_xp
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel


def level_of(levels: list[int], xp: int) -> int:
    return sum(1 for t in levels if xp >= t)


def ranks(rows: list[tuple[str, int]]) -> dict[str, int]:
    """Competition ranking by XP (ties share a rank: 1, 2, 2, 4)."""
    out: dict[str, int] = {}
    ordered = sorted(rows, key=lambda r: (-r[1], r[0]))
    for i, (cid, xp) in enumerate(ordered):
        out[cid] = out[ordered[i - 1][0]] if i and ordered[i - 1][1] == xp else i + 1
    return out


class SeasonEnd:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.svc = kernel.service(LoyaltyService)

    async def run_due(self, chunk: int = 200) -> int:
        """Finish every ended season not finished yet; returns standings written."""
        prog = await self.svc.programme()
        now = self.kernel.clock.now()
        done = 0
        for season in prog.seasons:
            if season.ends_at <= now:
                done += await self.finish(season, now, chunk)
        return done

    async def finish(self, season: Season, now: datetime, chunk: int = 200) -> int:
        async with self.kernel.db.read() as conn:
            rows = [(str(r.customer_id), int(r.xp)) for r in await conn.execute(
                sa.select(season_xp.c.customer_id, season_xp.c.xp)
                .where(season_xp.c.season_id == season.id, season_xp.c.xp > 0))]
            finished = set((await conn.execute(sa.select(season_results.c.customer_id).where(
                season_results.c.season_id == season.id))).scalars().all())
        rank = ranks(rows)
        todo = [(cid, xp) for cid, xp in sorted(rows) if cid not in finished]
        written = 0
        for i in range(0, len(todo), chunk):
            async with self.kernel.db.transaction() as uow:
                for cid, xp in todo[i:i + chunk]:
                    written += await self._finish_member(uow, season, cid, xp, rank[cid],
                                                         len(rows), now)
        return written

    async def _finish_member(self, uow: UnitOfWork, season: Season, cid: str, xp: int,
                             rank: int, of: int, now: datetime) -> int:
        level = level_of(season.levels, xp)
        rewards = [lr for lr in season.level_rewards if lr.level <= level]
        points = sum(lr.points for lr in rewards)
        won = await uow.execute(insert_ignore(uow.dialect, season_results), {
            "customer_id": cid, "season_id": season.id, "xp": xp, "level": level,
            "rank": rank, "points": points, "finished_at": now})
        if won.rowcount != 1:
            return 0
        entries = []
        if points:
            await self.svc.ensure_member(uow, cid, now)
        for lr in rewards:
            if lr.points > 0:
                posted = await ledger.credit(
                    uow, kind="season", source="s:issued", customer_id=cid, points=lr.points,
                    cause_id=derived_id("season", season.id, cid), rule=f"level-{lr.level}",
                    reason=f"{season.name}: level {lr.level} reached", now=now,
                    expires_at=await self.svc.expiry_for(now))
                if posted is not None:
                    entries.append(posted.txn_id)
            if lr.badge:
                await uow.execute(insert_ignore(uow.dialect, badges),
                                  {"customer_id": cid, "badge": lr.badge, "awarded_at": now})
        uow.emit(Event.new("loyalty.season_finished", {
            "season_id": season.id, "xp": xp, "level": level, "rank": rank,
            "participants": of, "points": points, "entry_ids": entries,
            "badges": [lr.badge for lr in rewards if lr.badge],
        }, subject_id=cid, source="loyalty"))
        return 1

    async def results(self, conn: Any, cid: str) -> list[dict[str, Any]]:
        """The member's final standings, newest season first."""
        prog = await self.svc.programme()
        rows = (await conn.execute(sa.select(season_results).where(
            season_results.c.customer_id == cid)
            .order_by(season_results.c.finished_at.desc()))).all()
        return self.results_of(prog, [dict(r._mapping) for r in rows])

    @staticmethod
    def results_of(prog: Programme, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            s = prog.season(r["season_id"])
            out.append({"id": r["season_id"], "name": s.name if s else r["season_id"],
                        "xp": int(r["xp"]), "level": int(r["level"]), "rank": int(r["rank"]),
                        "points": int(r["points"]), "finished_at": r["finished_at"],
                        "ended_at": s.ends_at if s else None})
        return out

    async def standings(self, season_id: str, limit: int = 50) -> dict[str, Any]:
        """A season's final standings by rank (empty until the season-end job ran)."""
        season = (await self.svc.programme()).season(season_id)
        if season is None:
            raise NotFound("no season with this id", code="loyalty.unknown_season")
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(sa.select(season_results).where(
                season_results.c.season_id == season_id)
                .order_by(season_results.c.rank, season_results.c.customer_id)
                .limit(limit))).all()
        return {"id": season.id, "name": season.name, "ends_at": season.ends_at,
                "finished": bool(rows),
                "standings": [{"rank": int(r.rank), "customer_id": r.customer_id,
                               "xp": int(r.xp), "level": int(r.level),
                               "points": int(r.points)} for r in rows]}
