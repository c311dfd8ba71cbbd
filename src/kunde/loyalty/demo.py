"""Demo data (idempotent): the example programme with a season running now, members in
every tier, a team halfway through its team quest, a redemption."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import sqlalchemy as sa

from kunde.core.errors import KundeError
from kunde.core.ids import derived_id
from kunde.loyalty import ledger
from kunde.loyalty.models import Programme, Season
from kunde.loyalty.rules import quest_round
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_earn import EarnEngine
from kunde.loyalty.service_programme import ProgrammeService, parse_programme
from kunde.loyalty.service_rewards import RewardService
from kunde.loyalty.service_teams import TeamService
from kunde.loyalty.tables import quest_marks, team_members
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

EXAMPLE = Path(__file__).parent / "programme.example.yaml"
# (email, lifetime points earned): two members per tier.
MEMBERS = [("ada@loyalty.demo", 120), ("bea@loyalty.demo", 380),
           ("cem@loyalty.demo", 650), ("dan@loyalty.demo", 1400),
           ("eva@loyalty.demo", 2300), ("fay@loyalty.demo", 4100),
           ("gus@loyalty.demo", 6500), ("hal@loyalty.demo", 9000)]


def demo_programme(kernel: Kernel) -> Programme:
    prog = parse_programme(EXAMPLE.read_text(encoding="utf-8"))
    now = kernel.clock.now()
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    season = msgspec.structs.replace(prog.seasons[0], starts_at=start,
                                     ends_at=start + timedelta(days=120))
    seasons: list[Season] = [season]
    return msgspec.structs.replace(prog, seasons=seasons)


async def customer(kernel: Kernel, email: str) -> str:
    try:
        from kunde.profiles.service import ProfileService
    except ImportError:  # profiles not installed: a stable id per email
        return derived_id("demo", email)
    return await kernel.service(ProfileService).ensure_customer({"email": email}, "demo")


async def load(kernel: Kernel) -> None:
    programmes = kernel.service(ProgrammeService)
    _, version = await programmes.current()
    if version == 0:
        await programmes.apply(demo_programme(kernel), actor="demo")
    svc = kernel.service(LoyaltyService)
    engine = kernel.service(EarnEngine)
    now = kernel.clock.now()
    ids = []
    for email, points in MEMBERS:
        cid = await customer(kernel, email)
        ids.append(cid)
        async with kernel.db.transaction() as uow:
            await svc.ensure_member(uow, cid, now)
            await ledger.credit(
                uow, kind="award", source="s:issued", customer_id=cid, points=points,
                cause_id=f"demo:{email}", rule="demo", reason="purchases before the demo",
                now=now - timedelta(days=20), expires_at=now + timedelta(days=345))
            await engine.review_tier(uow, cid, now)
    await team(kernel, ids)
    with contextlib.suppress(KundeError):
        await kernel.service(RewardService).redeem(ids[5], "five_off", "demo-1")


async def team(kernel: Kernel, ids: list[str]) -> None:
    """The Night Owls (four members, six of ten team orders done this season) and the
    Early Birds (two members, two orders) on the leaderboard."""
    await one_team(kernel, "Night Owls", ids[0:4], 6)
    await one_team(kernel, "Early Birds", ids[4:6], 2)


async def one_team(kernel: Kernel, name: str, ids: list[str], orders: int) -> None:
    teams_svc = kernel.service(TeamService)
    if await teams_svc.team_of(ids[0]) is None:
        created = await teams_svc.create(ids[0], name)
        for cid in ids[1:]:
            with contextlib.suppress(KundeError):
                await teams_svc.join(cid, created["invite_code"])
    prog = await kernel.service(LoyaltyService).programme()
    quest = next(q for q in prog.quests if q.team)
    now = kernel.clock.now()
    async with kernel.db.transaction() as uow:
        team_id = (await uow.execute(sa.select(team_members.c.team_id).where(
            team_members.c.customer_id == ids[0]))).scalar_one()
        members = list((await uow.execute(sa.select(team_members.c.customer_id).where(
            team_members.c.team_id == team_id))).scalars().all())
        # Demo progress stands in for team orders placed before the demo started.
        rows = [{"customer_id": members[i % len(members)], "quest_id": quest.id,
                 "round": quest_round(quest, now), "step": 0, "mark": f"demo-order-{i}",
                 "team_id": team_id, "at": now} for i in range(orders)]
        await uow.execute(insert_ignore(uow.dialect, quest_marks), rows)
