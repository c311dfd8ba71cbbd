"""The loyalty demo (idempotent) and the privacy hooks (export, erasure)."""

from __future__ import annotations

import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.loyalty import demo, privacy
from kunde.loyalty.service_members import MemberViews
from kunde.loyalty.service_teams import TeamService
from kunde.loyalty.tables import members, transactions
from test_loyalty_ledger import check_invariants


async def test_demo_has_every_tier_a_season_and_a_team_quest_in_progress(kernel: Kernel
                                                                         ) -> None:
    await demo.load(kernel)
    await demo.load(kernel)  # a second run changes nothing
    async with kernel.db.read() as conn:
        tiers = dict((await conn.execute(sa.select(members.c.tier, sa.func.count())
                                         .group_by(members.c.tier))).all())
        n_txn = (await conn.execute(sa.select(sa.func.count()).select_from(transactions)
                                    )).scalar_one()
    assert tiers == {"bronze": 2, "silver": 2, "gold": 2, "platinum": 2}
    await demo.load(kernel)
    async with kernel.db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(transactions)
                                   )).scalar_one() == n_txn
    ids = [await demo.customer(kernel, email) for email, _ in demo.MEMBERS]
    ov = await kernel.service(MemberViews).overview(ids[0])
    assert ov["season"] is not None
    team = await kernel.service(TeamService).team_of(ids[0])
    assert team is not None and team["quests"][0]["progress"] == 6
    assert not team["quests"][0]["completed"]
    board = await kernel.service(TeamService).leaderboard("team_shopping")
    assert [b["name"] for b in board] == ["Night Owls", "Early Birds"]
    analytics = await kernel.service(MemberViews).analytics()
    assert analytics["redemptions"] == 1 and analytics["liability"]["available"] > 0

    exported = await privacy.export(kernel, [ids[5]])
    assert exported["redemptions"] and exported["transactions"]
    async with kernel.db.transaction() as uow:
        counts = await privacy.erase(kernel, uow, [ids[5]])
    assert counts["loyalty_members"] == 1 and counts["loyalty_transactions_pseudonymised"] >= 2
    after = await privacy.export(kernel, [ids[5]])
    assert all(not rows for rows in after.values())
    await check_invariants(kernel, ids[0])
