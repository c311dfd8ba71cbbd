"""Rewards and teams: atomic redemption under concurrency, clear refusals, team quests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.loyalty.errors import InsufficientPoints, OutOfStock
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_programme import ProgrammeService
from kunde.loyalty.service_rewards import AffinityTaste, MemberTaste, RewardService
from kunde.loyalty.service_teams import TeamService
from loyalty_helpers import loyalty_client
from test_loyalty_engine import drain, emit, order, setup_programme, summary


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[httpx.AsyncClient]:
    async for c in loyalty_client(kernel):
        yield c


async def funded(kernel: Kernel, points: int) -> str:
    cid = new_id()
    async with kernel.db.transaction() as uow:
        await kernel.service(LoyaltyService).grant_goodwill(uow, cid, points, "test", new_id())
    return cid


async def limit_stock(kernel: Kernel, reward_id: str, stock: int) -> None:
    svc = kernel.service(ProgrammeService)
    prog, _ = await svc.current()
    rewards = [r if r.id != reward_id else type(r)(**{**_fields(r), "stock": stock})
               for r in prog.rewards]
    await svc.apply(type(prog)(**{**_fields(prog), "rewards": rewards}), actor="test")


def _fields(s: Any) -> dict[str, Any]:
    return {f: getattr(s, f) for f in s.__struct_fields__}


async def test_concurrent_redeemers_never_oversell_or_overspend(kernel: Kernel) -> None:
    await setup_programme(kernel)
    await limit_stock(kernel, "five_off", 3)
    rewards = kernel.service(RewardService)
    buyers = [await funded(kernel, 1000) for _ in range(6)]
    results = await asyncio.gather(*(rewards.redeem(c, "five_off", None) for c in buyers),
                                   return_exceptions=True)
    won = [r for r in results if isinstance(r, dict)]
    assert len(won) == 3 and all(r["code"] for r in won)
    assert sum(isinstance(r, OutOfStock) for r in results) == 3
    balances = sorted([(await summary(kernel, c))["balance"] for c in buyers])
    assert balances == [500, 500, 500, 1000, 1000, 1000]

    twice = await funded(kernel, 1000)  # the same Idempotency-Key twice at once: one charge
    a, b = await asyncio.gather(rewards.redeem(twice, "trees", "same-key"),
                                rewards.redeem(twice, "trees", "same-key"))
    assert a["id"] == b["id"] and (await summary(kernel, twice))["balance"] == 700

    spender = await funded(kernel, 1000)  # enough for three trees (300 each), not four
    results = await asyncio.gather(*(rewards.redeem(spender, "trees", None) for _ in range(4)),
                                   return_exceptions=True)
    assert sum(isinstance(r, dict) for r in results) == 3
    assert sum(isinstance(r, InsufficientPoints) for r in results) == 1
    assert (await summary(kernel, spender))["balance"] == 100


async def test_redemption_refusals_are_clear_and_change_nothing(
        kernel: Kernel, client: httpx.AsyncClient) -> None:
    await setup_programme(kernel)
    await limit_stock(kernel, "tote", 0)
    cid = await funded(kernel, 600)
    h = {"Authorization": "Bearer " + kernel.access.issue_customer_token(cid)}
    url = f"/v1/loyalty/members/{cid}/redemptions"
    cases = [("atelier", 403, "loyalty.not_eligible"), ("ten_percent", 403,
                                                        "loyalty.not_eligible"),
             ("tote", 409, "loyalty.out_of_stock"), ("nope", 404, "loyalty.unknown_reward")]
    for reward, status, code in cases:
        r = await client.post(url, json={"reward_id": reward}, headers=h)
        assert (r.status_code, r.json()["code"]) == (status, code), r.text
    r = await client.post(url, json={"reward_id": "five_off"}, headers=h)
    assert r.status_code == 201
    r = await client.post(url, json={"reward_id": "five_off"}, headers=h)
    assert (r.status_code, r.json()["code"]) == (409, "loyalty.insufficient_points")
    assert (await summary(kernel, cid))["balance"] == 100

    # Idempotency-Key: the same redemption twice is one redemption.
    rich = await funded(kernel, 1000)
    h2 = {"Authorization": "Bearer " + kernel.access.issue_customer_token(rich),
          "Idempotency-Key": "k-1"}
    url2 = f"/v1/loyalty/members/{rich}/redemptions"
    a = await client.post(url2, json={"reward_id": "five_off"}, headers=h2)
    b = await client.post(url2, json={"reward_id": "five_off"}, headers=h2)
    assert a.json()["id"] == b.json()["id"] and a.json()["code"] == b.json()["code"]
    assert (await summary(kernel, rich))["balance"] == 500

    # A customer reaches only their own account.
    r = await client.get(f"/v1/loyalty/members/{rich}", headers=h)
    assert r.status_code == 403


async def test_member_api_shows_balance_history_quests_and_ranked_rewards(
        kernel: Kernel, client: httpx.AsyncClient) -> None:
    await setup_programme(kernel)
    cid = await funded(kernel, 250)
    await order(kernel, cid, 5_000, ["bags"])
    await drain(kernel)
    h = {"Authorization": "Bearer " + kernel.access.issue_customer_token(cid)}
    ov = (await client.get(f"/v1/loyalty/members/{cid}", headers=h)).json()
    assert (ov["balance"], ov["pending"], ov["tier"]) == (250, 50, "bronze")
    assert ov["tier_progress"]["next_tier"] == "silver"
    hist = (await client.get(f"/v1/loyalty/members/{cid}/history", headers=h)).json()
    assert {x["kind"] for x in hist} == {"goodwill", "award"} and all(x["reason"] for x in hist)
    quests = (await client.get(f"/v1/loyalty/members/{cid}/quests", headers=h)).json()
    three = next(q for q in quests if q["id"] == "three_categories")
    assert three["steps"][0] == {"label": "categories tried", "done": 1, "target": 3}
    rewards = (await client.get(f"/v1/loyalty/members/{cid}/rewards", headers=h)).json()
    assert rewards[0]["id"] == "tote"  # bought bags before: the tote comes first
    ship = next(r for r in rewards if r["id"] == "ship_free")
    assert ship["affordable"] and ship["ineligible_because"] is None


async def test_team_quest_pools_progress_caps_members_and_rewards_everyone(
        kernel: Kernel, client: httpx.AsyncClient) -> None:
    await setup_programme(kernel)
    teams = kernel.service(TeamService)
    owner, mates = new_id(), [new_id() for _ in range(5)]
    team = await teams.create(owner, "Night Owls")
    for m in mates[:4]:
        await teams.join(m, team["invite_code"].lower())
    h = {"Authorization": "Bearer " + kernel.access.issue_customer_token(mates[4])}
    r = await client.post(f"/v1/loyalty/members/{mates[4]}/team/join",
                          json={"invite_code": team["invite_code"]}, headers=h)
    assert (r.status_code, r.json()["code"]) == (409, "loyalty.team_full")

    for _ in range(6):  # one member alone: capped at 4 contributions
        await order(kernel, owner, 1_000, ["shoes"])
    await drain(kernel)
    mine = await teams.team_of(owner)
    assert mine is not None
    assert mine["quests"][0]["progress"] == 4 and not mine["quests"][0]["completed"]
    for m in mates[:3]:
        await order(kernel, m, 1_000, ["shoes"])
        await order(kernel, m, 1_000, ["shoes"])
    await drain(kernel)
    mine = await teams.team_of(owner)
    assert mine is not None and mine["quests"][0]["completed"]
    for m in [owner, *mates[:4]]:
        ov = await summary(kernel, m)
        assert ov["balance"] >= 300, m  # every member, even one who did nothing
    board = (await client.get("/v1/loyalty/leaderboards/team_shopping", headers=h)).json()
    assert board[0]["name"] == "Night Owls" and board[0]["progress"] == 10


async def test_unknown_event_in_quest_is_refused(kernel: Kernel,
                                                 client: httpx.AsyncClient) -> None:
    _, key = await kernel.access.create_api_key("t", ["loyalty:*"])
    r = await client.put("/v1/loyalty/programme", headers={"Authorization": f"Bearer {key}"},
                         json={"quests": [{"id": "q", "name": "Q",
                                           "steps": [{"event": "made.up"}]}]})
    assert r.status_code == 422 and "unknown event 'made.up'" in r.text
    cid = new_id()
    await emit(kernel, cid, "ingest.track", {"event": "x"})
    await drain(kernel)


def test_affinity_taste_satisfies_the_personalisation_port() -> None:
    assert isinstance(AffinityTaste(), MemberTaste)
