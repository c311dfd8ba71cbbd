"""Teams: create or join with an invite code, size limits, pooled quests, leaderboard.

Joining takes a seat with ``UPDATE … SET size = size + 1 WHERE size < :max``
(never more members than the limit, even under concurrent joins); a customer is
in at most one team (primary key). Anti-self-dealing: a second account of the
same verified identity (same canonical customer) cannot join the same team, and
team quests cap what each member contributes (`Quest.member_cap`).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.ids import new_id
from kunde.loyalty.errors import TeamError
from kunde.loyalty.rules import quest_round
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_welcome import canonical
from kunde.loyalty.tables import quest_completions, quest_marks, team_members, teams
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_invite_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


class TeamService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.svc = kernel.service(LoyaltyService)

    async def create(self, customer_id: str, name: str) -> dict[str, Any]:
        prog = await self.svc.programme()
        if not prog.teams.enabled:
            raise TeamError("teams are not part of this programme", code="loyalty.teams_off")
        name = name.strip()[:80]
        if not name:
            raise TeamError("a team needs a name", code="loyalty.team_name", status=422)
        now = self.kernel.clock.now()
        team_id = new_id()
        async with self.kernel.db.transaction() as uow:
            await self.svc.ensure_member(uow, customer_id, now)
            await uow.execute(teams.insert().values(
                id=team_id, name=name, invite_code=new_invite_code(), owner_id=customer_id,
                size=1, created_at=now))
            joined = await uow.execute(insert_ignore(uow.dialect, team_members), {
                "customer_id": customer_id, "team_id": team_id, "joined_at": now})
            if joined.rowcount != 1:
                raise TeamError("you are already in a team; leave it first",
                                code="loyalty.already_in_team")
        return await self.team_of(customer_id) or {}

    async def join(self, customer_id: str, invite_code: str) -> dict[str, Any]:
        prog = await self.svc.programme()
        code = invite_code.strip().upper()
        async with self.kernel.db.read() as conn:
            team = (await conn.execute(sa.select(teams).where(
                teams.c.invite_code == code))).first()
            mates = list((await conn.execute(sa.select(team_members.c.customer_id).where(
                team_members.c.team_id == team.id))).scalars().all()) if team else []
        if team is None:
            raise TeamError("no team with this invite code", code="loyalty.unknown_team",
                            status=404)
        me = await canonical(self.kernel, customer_id)
        for mate in mates:
            if mate != customer_id and await canonical(self.kernel, mate) == me:
                raise TeamError("another account of yours is already in this team",
                                code="loyalty.self_dealing", status=403)
        now = self.kernel.clock.now()
        async with self.kernel.db.transaction() as uow:
            await self.svc.ensure_member(uow, customer_id, now)
            joined = await uow.execute(insert_ignore(uow.dialect, team_members), {
                "customer_id": customer_id, "team_id": team.id, "joined_at": now})
            if joined.rowcount != 1:
                raise TeamError("you are already in a team; leave it first",
                                code="loyalty.already_in_team")
            seat = await uow.execute(teams.update().where(
                teams.c.id == team.id, teams.c.size < prog.teams.max_size,
            ).values(size=teams.c.size + 1))
            if seat.rowcount != 1:
                raise TeamError(f"the team is full ({prog.teams.max_size} members)",
                                code="loyalty.team_full")
        return await self.team_of(customer_id) or {}

    async def leave(self, customer_id: str) -> None:
        async with self.kernel.db.transaction() as uow:
            row = (await uow.execute(sa.select(team_members.c.team_id).where(
                team_members.c.customer_id == customer_id))).first()
            if row is None:
                return
            await uow.execute(team_members.delete().where(
                team_members.c.customer_id == customer_id))
            await uow.execute(teams.update().where(teams.c.id == row.team_id)
                              .values(size=teams.c.size - 1))

    async def team_of(self, customer_id: str) -> dict[str, Any] | None:
        """The member's team with members, pooled quest progress and each member's share."""
        prog = await self.svc.programme()
        now = self.kernel.clock.now()
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(
                sa.select(teams).join(team_members, team_members.c.team_id == teams.c.id)
                .where(team_members.c.customer_id == customer_id))).first()
            if row is None:
                return None
            mates = list((await conn.execute(sa.select(team_members.c.customer_id).where(
                team_members.c.team_id == row.id).order_by(team_members.c.joined_at)
            )).scalars().all())
            quests = []
            for q in (q for q in prog.quests if q.team):
                rnd = quest_round(q, now)
                shares: dict[str, int] = dict((await conn.execute(
                    sa.select(quest_marks.c.customer_id, sa.func.count())
                    .where(quest_marks.c.team_id == row.id, quest_marks.c.quest_id == q.id,
                           quest_marks.c.round == rnd)
                    .group_by(quest_marks.c.customer_id))).all())
                finished = (await conn.execute(sa.select(quest_completions.c.completed_at).where(
                    quest_completions.c.customer_id == row.id,
                    quest_completions.c.quest_id == q.id,
                    quest_completions.c.round == rnd))).first()
                quests.append({"quest_id": q.id, "name": q.name, "round": rnd,
                               "target": sum(s.count for s in q.steps),
                               "progress": sum(int(v) for v in shares.values()),
                               "contributions": {k: int(v) for k, v in shares.items()},
                               "completed": finished is not None})
        return {"id": row.id, "name": row.name, "invite_code": row.invite_code,
                "owner_id": row.owner_id, "size": int(row.size), "members": mates,
                "max_size": prog.teams.max_size, "quests": quests}

    async def leaderboard(self, quest_id: str, limit: int = 10) -> list[dict[str, Any]]:
        prog = await self.svc.programme()
        q = next((x for x in prog.quests if x.id == quest_id and x.team), None)
        if q is None:
            raise TeamError("no team quest with this id", code="loyalty.unknown_quest",
                            status=404)
        rnd = quest_round(q, self.kernel.clock.now())
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(
                sa.select(teams.c.id, teams.c.name, sa.func.count().label("marks"))
                .join(quest_marks, quest_marks.c.team_id == teams.c.id)
                .where(quest_marks.c.quest_id == q.id, quest_marks.c.round == rnd)
                .group_by(teams.c.id, teams.c.name)
                .order_by(sa.desc("marks"), teams.c.name).limit(limit))).all()
        return [{"rank": i + 1, "team_id": r.id, "name": r.name, "progress": int(r.marks)}
                for i, r in enumerate(rows)]
