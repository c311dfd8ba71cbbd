"""A member follows their customer through identity-graph merges (and stays on unmerge)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.kernel import Kernel
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_members import MemberViews
from kunde.loyalty.service_teams import TeamService
from kunde.loyalty.tables import accounts, entries, lots, team_members, teams, transactions
from kunde.profiles.service import ProfileService
from kunde.store.tables import events as event_log
from test_loyalty_engine import drain, emit, order, setup_programme, summary
from test_loyalty_ledger import check_invariants


async def two_customers(kernel: Kernel) -> tuple[str, str]:
    """Two customer records; the first (older) one survives a merge."""
    profiles = kernel.service(ProfileService)
    a = await profiles.ensure_customer({"email": "ann@example.com"}, "web")
    b = await profiles.ensure_customer({"email": "ann.work@example.com"}, "app")
    assert a < b
    return a, b


async def staff_merge(kernel: Kernel, a: str, b: str) -> str:
    async with kernel.db.transaction() as uow:
        survivor, refusal = await kernel.service(ProfileService).graph.merge(
            uow, a, b, kind="staff", reason="same person", actor="staff:test", event_id=None,
            now=kernel.clock.now(), force=True)
    assert refusal is None
    return survivor


async def merge_event(kernel: Kernel, survivor: str) -> Event:
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(event_log).where(
            event_log.c.type == "profiles.customers_merged",
            event_log.c.subject_id == survivor))).all()
        decoded = await kernel.log.decode(conn, rows)
    return decoded[-1]


async def kinds(kernel: Kernel, cid: str) -> list[tuple[str, int]]:
    return [(h["kind"], h["points"]) for h in
            await kernel.service(LoyaltyService).history(cid, 100)]


async def test_merge_moves_points_lots_tier_and_progress_once(kernel: Kernel) -> None:
    await setup_programme(kernel)
    a, b = await two_customers(kernel)
    await drain(kernel)  # welcome rewards: 50 each
    await order(kernel, b, 50_000, ["shoes", "bags"])  # 500 pending: b reaches silver
    await order(kernel, a, 10_000, ["hats"])           # 100 pending for a
    await emit(kernel, b, "interaction.recorded", {"kind": "product_reviewed", "sku": "S1"})
    await drain(kernel)
    async with kernel.db.transaction() as uow:
        await kernel.service(LoyaltyService).grant_goodwill(uow, b, 600, "sorry", "case-9")
    before_a, before_b = await summary(kernel, a), await summary(kernel, b)
    assert (before_b["tier"], before_a["tier"]) == ("silver", "bronze")
    assert before_b["balance"] > 600 and before_b["pending"] == 500
    survivor = await staff_merge(kernel, a, b)
    assert survivor == a
    await drain(kernel)

    sa_, sb = await summary(kernel, a), await summary(kernel, b)
    # Both balances, less the second welcome reward (one per person), plus the quest the
    # combined progress completes (below).
    moved = before_b["balance"] - 50
    assert sa_["balance"] == before_a["balance"] + moved + 150
    assert sa_["pending"] == before_a["pending"] + before_b["pending"] == 600
    assert (sb["balance"], sb["pending"], sb["member"]) == (0, 0, False)
    assert (await kernel.service(MemberViews).overview(b))["merged_into"] == a
    assert sa_["tier"] == "silver"  # the higher tier of the two
    assert ("merge_in", moved) in await kinds(kernel, a)
    assert ("merge_out", -moved) in await kinds(kernel, b)
    assert ("reverse", -50) in await kinds(kernel, b)
    # Quest progress follows: the categories bought on both records count together,
    # completing "three categories this month" at once.
    quests = {q["id"]: q for q in await kernel.service(MemberViews).quests(a)}
    assert quests["three_categories"]["steps"][0]["done"] == 3
    assert quests["three_categories"]["completed"] is True
    assert ("quest", 150) in await kinds(kernel, a)
    # Tier progress counts the merged record's earning history.
    ov = await kernel.service(MemberViews).overview(a)
    assert ov["tier_progress"]["metrics"]["points"] >= 500 + 100
    assert ov["tier_progress"]["metrics"]["orders"] == 2
    await check_invariants(kernel, a)
    await check_invariants(kernel, b)

    # A redelivered merge event moves nothing twice.
    ev = await merge_event(kernel, a)
    from kunde.loyalty.service_earn import EarnEngine
    async with kernel.db.transaction() as uow:
        await kernel.service(EarnEngine).handle(uow, ev)
    assert await summary(kernel, a) == sa_
    async with kernel.db.read() as conn:
        n = (await conn.execute(sa.select(sa.func.count()).select_from(transactions).where(
            transactions.c.kind == "merge_in"))).scalar()
        transfer = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(
            entries.c.amount), 0)).where(entries.c.account == "s:transfer"))).scalar()
    assert n == 1 and transfer == 0

    # Lots kept their dates: b's pending points are released on b's schedule, to a.
    kernel.clock.advance(timedelta(days=15))
    await kernel.service(LoyaltyService).run_due()
    released = await summary(kernel, a)
    assert (released["balance"], released["pending"]) == (sa_["balance"] + 600, 0)
    await check_invariants(kernel, a)

    # Late events of the merged record count for the survivor (silver: 20 x 1.25, plus
    # today's review quest).
    await emit(kernel, b, "interaction.recorded", {"kind": "product_reviewed", "sku": "S2"})
    await drain(kernel)
    assert (await summary(kernel, a))["balance"] == released["balance"] + 25 + 10
    assert (await summary(kernel, b))["member"] is False

async def test_refund_after_merge_claws_back_from_the_survivor(kernel: Kernel) -> None:
    await setup_programme(kernel)
    a, b = await two_customers(kernel)
    oid = await order(kernel, b, 20_000, ["shoes"])
    await drain(kernel)
    await staff_merge(kernel, a, b)
    await drain(kernel)
    assert (await summary(kernel, a))["pending"] == 200
    await emit(kernel, b, "commerce.refund_issued", {
        "order_id": oid, "refund_id": "r-1", "amount_minor": 10_000, "currency": "EUR"})
    await drain(kernel)
    assert (await summary(kernel, a))["pending"] == 100
    await check_invariants(kernel, a)
    await check_invariants(kernel, b)


async def test_redelivered_event_of_a_merged_record_awards_nothing_again(
        kernel: Kernel) -> None:
    """Award and partial refund for b, merge b into a, redeliver b's payment and refund:
    the survivor gets no second award and no second clawback (the exactly-once key is
    the cause, not the customer it arrives for)."""
    from kunde.loyalty.service_earn import EarnEngine

    await setup_programme(kernel)
    a, b = await two_customers(kernel)
    oid = await order(kernel, b, 20_000, ["shoes"])
    await emit(kernel, b, "commerce.refund_issued", {
        "order_id": oid, "refund_id": "r-1", "amount_minor": 5_000, "currency": "EUR"})
    await drain(kernel)
    awarded = [h for h in await kernel.service(LoyaltyService).history(b)
               if h["kind"] == "award"]
    assert awarded and (await summary(kernel, b))["pending"] == 150
    await staff_merge(kernel, a, b)
    await drain(kernel)
    merged = await summary(kernel, a)
    assert merged["pending"] == 150
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(event_log).where(
            event_log.c.type.in_(("commerce.order_paid", "commerce.refund_issued")),
            event_log.c.subject_id == b).order_by(event_log.c.position))).all()
        again = await kernel.log.decode(conn, rows)
    assert [e.type for e in again] == ["commerce.order_paid", "commerce.refund_issued"]
    for ev in [*again[::-1], *again]:  # the refund first: a marker without a lot
        async with kernel.db.transaction() as uow:
            await kernel.service(EarnEngine).handle(uow, ev)
    await drain(kernel)
    assert await summary(kernel, a) == merged
    assert {k for k, _ in await kinds(kernel, a)}.isdisjoint({"award", "refund", "reverse"})
    async with kernel.db.read() as conn:
        n = dict((await conn.execute(sa.select(transactions.c.kind, sa.func.count())
                                     .where(transactions.c.ref == oid)
                                     .group_by(transactions.c.kind))).all())
    assert (n["award"], n["refund"], n["reverse"]) == (len(awarded), 1, 1)
    await check_invariants(kernel, a)
    await check_invariants(kernel, b)


async def test_team_membership_follows_the_merge(kernel: Kernel) -> None:
    await setup_programme(kernel)
    a, b = await two_customers(kernel)
    teams_svc = kernel.service(TeamService)
    team = await teams_svc.create(b, "Night Owls")
    await order(kernel, b, 5_000, ["shoes"])  # a team mark for b
    await drain(kernel)
    await staff_merge(kernel, a, b)
    await drain(kernel)
    mine = await teams_svc.team_of(a)
    assert mine is not None and mine["id"] == team["id"]
    assert mine["members"] == [a] and mine["owner_id"] == a and mine["size"] == 1
    assert mine["quests"][0]["contributions"] == {a: 1}
    assert await teams_svc.team_of(b) is None


async def test_merge_when_both_are_in_one_team_frees_a_seat(kernel: Kernel) -> None:
    await setup_programme(kernel)
    a, b = await two_customers(kernel)
    teams_svc = kernel.service(TeamService)
    team = await teams_svc.create(a, "Early Birds")
    await teams_svc.join(b, team["invite_code"])
    for cid in (a, a, a, b, b, b):  # each record within the per-member cap of 4
        await order(kernel, cid, 1_000, ["socks"])
    await drain(kernel)
    assert (await teams_svc.team_of(a) or {})["quests"][0]["progress"] == 6
    await staff_merge(kernel, a, b)
    await drain(kernel)
    # One person, one member: their combined contribution is cut to the cap.
    mine = await teams_svc.team_of(a) or {}
    assert mine["quests"][0]["contributions"] == {a: 4} and mine["quests"][0]["progress"] == 4
    async with kernel.db.read() as conn:
        size = (await conn.execute(sa.select(teams.c.size).where(
            teams.c.id == team["id"]))).scalar()
        seats = (await conn.execute(sa.select(team_members.c.customer_id).where(
            team_members.c.team_id == team["id"]))).scalars().all()
    assert size == 1 and list(seats) == [a]


async def test_unmerge_leaves_points_with_the_survivor(kernel: Kernel) -> None:
    await setup_programme(kernel)
    a, b = await two_customers(kernel)
    await drain(kernel)
    await order(kernel, b, 30_000, ["shoes"])
    await drain(kernel)
    await staff_merge(kernel, a, b)
    await drain(kernel)
    merged = await summary(kernel, a)
    async with kernel.db.transaction() as uow:
        survivor, restored = await kernel.service(ProfileService).graph.unmerge(
            uow, b, actor="staff:test", reason="two people", now=kernel.clock.now())
    assert (survivor, restored) == (a, b)
    await drain(kernel)
    after = await summary(kernel, a)
    assert (after["balance"], after["pending"]) == (merged["balance"], merged["pending"])
    assert ("unmerge", 0) in await kinds(kernel, a)
    # The restored customer starts afresh and earns for themselves again.
    await emit(kernel, b, "interaction.recorded", {"kind": "product_reviewed", "sku": "S3"})
    await drain(kernel)
    sb = await summary(kernel, b)
    assert (sb["balance"], sb["member"]) == (20 + 10, True)  # review + today's review quest
    assert (await summary(kernel, a))["balance"] == merged["balance"]
    await check_invariants(kernel, a)
    await check_invariants(kernel, b)


async def test_transfer_is_one_balanced_pair_of_transactions(kernel: Kernel) -> None:
    await setup_programme(kernel)
    a, b = await two_customers(kernel)
    await drain(kernel)
    async with kernel.db.transaction() as uow:
        await kernel.service(LoyaltyService).grant_goodwill(uow, b, 70, "sorry", "case-1")
    await staff_merge(kernel, a, b)
    await drain(kernel)
    async with kernel.db.read() as conn:
        rows: list[Any] = list((await conn.execute(sa.select(
            transactions.c.kind, transactions.c.customer_id, transactions.c.points).where(
            transactions.c.kind.in_(("merge_in", "merge_out"))))).all())
        left = (await conn.execute(sa.select(sa.func.count()).select_from(lots).where(
            lots.c.customer_id == b))).scalar()
        bal = dict((await conn.execute(sa.select(accounts.c.account, accounts.c.balance).where(
            accounts.c.customer_id == b))).all())
    # b's welcome reward was reversed (a already had one): only the goodwill moves.
    assert sorted(rows) == [("merge_in", a, 70), ("merge_out", b, -70)]
    assert left == 0 and set(bal.values()) == {0}


async def test_erasure_after_merge_leaves_no_link_to_either_record(kernel: Kernel) -> None:
    from kunde.loyalty import privacy
    from kunde.loyalty.tables import merges

    await setup_programme(kernel)
    a, b = await two_customers(kernel)
    await order(kernel, b, 20_000, ["shoes"])
    await drain(kernel)
    await staff_merge(kernel, a, b)
    await drain(kernel)
    exported = await privacy.export(kernel, [a, b])
    assert [(m["merged_id"], m["survivor_id"]) for m in exported["merges"]] == [(b, a)]
    async with kernel.db.transaction() as uow:
        await privacy.erase(kernel, uow, [a, b])
    async with kernel.db.read() as conn:
        cols = (transactions.c.customer_id, transactions.c.cause_id, transactions.c.rule,
                transactions.c.ref)
        linked = (await conn.execute(sa.select(transactions.c.kind).where(
            sa.or_(*(c.in_([a, b]) for c in cols))))).all()
        left = (await conn.execute(sa.select(merges))).all()
    assert linked == [] and left == []
    await check_invariants(kernel, a)



async def test_console_member_view_of_a_merged_record_links_the_survivor(
        kernel: Kernel, admin_headers: dict[str, str]) -> None:
    from loyalty_helpers import loyalty_client

    await setup_programme(kernel)
    a, b = await two_customers(kernel)
    await drain(kernel)
    await staff_merge(kernel, a, b)
    await drain(kernel)
    async for client in loyalty_client(kernel):
        r = await client.get(f"/console/loyalty/members/{b}", headers=admin_headers)
        assert r.status_code == 200, r.text
        assert f'href="/console/loyalty/members/{a}"' in r.text and "was merged" in r.text
        r = await client.get(f"/console/loyalty/members/{a}", headers=admin_headers)
        assert r.status_code == 200 and "was merged" not in r.text


async def test_merging_a_record_loyalty_never_saw_writes_no_entries(kernel: Kernel) -> None:
    a, b = await two_customers(kernel)  # no programme yet: no welcome, no membership
    await staff_merge(kernel, a, b)
    await drain(kernel)
    async with kernel.db.read() as conn:
        n = (await conn.execute(sa.select(sa.func.count()).select_from(transactions))).scalar()
    assert n == 0
    await setup_programme(kernel)
    await emit(kernel, b, "interaction.recorded", {"kind": "product_reviewed", "sku": "S1"})
    await drain(kernel)  # a late event of the merged record counts for the survivor
    assert (await summary(kernel, a))["balance"] == 20 + 10
    assert (await summary(kernel, b))["member"] is False
