"""Season end: level-track rewards once, XP resets for the next season, final standings shown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from kunde.core.clock import FrozenClock
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_members import MemberViews
from kunde.loyalty.service_programme import ProgrammeService, parse_programme
from kunde.loyalty.service_seasons import SeasonEnd, ranks
from kunde.loyalty.tables import transactions
from loyalty_helpers import loyalty_client
from test_loyalty_engine import NOW, drain, emit, summary
from test_loyalty_ledger import check_invariants

PROGRAMME = """
points_name: Stars
expiry: {days: null}
earn_rules:
  - {id: visit, event: ingest.track, where: {event: Store Visited}, points: 1, xp: 10}
quests:
  - id: regular
    name: Three visits this season
    cadence: season
    season: spring
    steps: [{event: ingest.track, where: {event: Store Visited}, count: 3}]
    xp: 5
seasons:
  - id: spring
    name: Spring Season
    starts_at: 2026-11-01T00:00:00Z
    ends_at: 2026-11-25T00:00:00Z
    levels: [10, 30, 60]
    level_rewards:
      - {level: 1, points: 5}
      - {level: 2, points: 20, badge: spring_regular}
      - {level: 3, points: 100, badge: spring_legend}
  - id: summer
    name: Summer Season
    starts_at: 2026-11-25T00:00:00Z
    ends_at: 2027-03-01T00:00:00Z
    levels: [10, 30, 60]
"""


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[Any]:
    async for c in loyalty_client(kernel):
        yield c


async def visits(kernel: Kernel, cid: str, n: int) -> None:
    for _ in range(n):
        await emit(kernel, cid, "ingest.track", {"event": "Store Visited", "channel": "store"},
                   source="store")
    await drain(kernel)


def test_ranks_share_ties() -> None:
    assert ranks([("a", 5), ("b", 9), ("c", 5), ("d", 1)]) == {"b": 1, "a": 2, "c": 2, "d": 4}


async def test_season_end_grants_level_rewards_once_and_resets_xp(
        kernel: Kernel, client: Any, admin_headers: dict[str, str]) -> None:
    kernel.clock = FrozenClock(NOW)
    await kernel.service(ProgrammeService).apply(parse_programme(PROGRAMME), actor="test")
    ann, bob, cy = new_id(), new_id(), new_id()
    await visits(kernel, ann, 3)  # 30 XP + 5 for the quest: level 2
    await visits(kernel, bob, 1)  # 10 XP: level 1
    views = kernel.service(MemberViews)
    ov = await views.overview(ann)
    assert (ov["season"]["id"], ov["season"]["xp"], ov["season"]["level"]) == ("spring", 35, 2)
    assert ov["finished_seasons"] == []
    seasons = kernel.service(SeasonEnd)
    assert await seasons.run_due() == 0  # nothing has ended yet
    before = {c: (await summary(kernel, c))["balance"] for c in (ann, bob, cy)}

    # The season ends; a visit afterwards counts toward the next season only.
    kernel.clock.advance(timedelta(days=6))
    await visits(kernel, ann, 1)
    ov = await views.overview(ann)
    assert (ov["season"]["id"], ov["season"]["xp"], ov["season"]["level"]) == ("summer", 10, 1)

    # The job runs twice at once, then again: the rewards are granted exactly once.
    done = await asyncio.gather(seasons.run_due(), seasons.run_due())
    assert sum(done) == 2
    assert await seasons.run_due() == 0
    after = {c: (await summary(kernel, c))["balance"] for c in (ann, bob, cy)}
    assert after[ann] == before[ann] + 1 + 5 + 20  # the summer visit + levels 1 and 2
    assert after[bob] == before[bob] + 5
    assert after[cy] == before[cy] == 0
    async with kernel.db.read() as conn:
        granted = (await conn.execute(sa.select(transactions.c.customer_id, transactions.c.rule)
                                      .where(transactions.c.kind == "season"))).all()
    assert sorted(granted) == sorted([(ann, "level-1"), (ann, "level-2"), (bob, "level-1")])
    for c in (ann, bob):
        await check_invariants(kernel, c)

    # The member API and the portal show the final standing.
    h = {"Authorization": "Bearer " + kernel.access.issue_customer_token(ann)}
    r = await client.get(f"/v1/loyalty/members/{ann}", headers=h)
    assert r.status_code == 200, r.text
    final = r.json()["finished_seasons"]
    assert [(s["id"], s["xp"], s["level"], s["rank"], s["points"]) for s in final] == [
        ("spring", 35, 2, 1, 25)]
    assert "spring_regular" in r.json()["badges"]
    r = await client.get("/v1/loyalty/seasons/spring/standings", headers=admin_headers)
    assert r.status_code == 200, r.text
    assert [(s["rank"], s["customer_id"], s["level"]) for s in r.json()["standings"]] == [
        (1, ann, 2), (2, bob, 1)]
    r = await client.get("/v1/loyalty/seasons/autumn/standings", headers=admin_headers)
    assert r.status_code == 404 and r.json()["code"] == "loyalty.unknown_season"
    r = await client.get(f"/portal/enter?token={kernel.access.issue_customer_token(ann)}",
                         follow_redirects=True)
    assert r.status_code == 200, r.text
    r = await client.get("/portal/loyalty")
    assert r.status_code == 200, r.text
    assert "Spring Season is over: you finished at level 2 with 35 XP, rank 1" in r.text
    reasons = sorted(h["reason"] for h in await kernel.service(LoyaltyService).history(ann)
                     if h["kind"] == "season")
    assert reasons == ["Spring Season: level 1 reached", "Spring Season: level 2 reached"]
