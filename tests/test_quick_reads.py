"""Quick reads return exactly what the Core path returns, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.profiles.tables import customer_activity, customers
from kunde.store.quick import Query

ACTIVITY = Query(sa.select(customer_activity).where(
    customer_activity.c.customer_id == sa.bindparam("cid", type_=sa.String())))
BY_CHANNEL = Query(sa.select(customers.c.id, customers.c.created_at)
                   .where(customers.c.channel == sa.bindparam("channel", type_=sa.String()))
                   .order_by(customers.c.id))


async def _seed(kernel: Kernel, cid: str, channel: str = "web") -> None:
    at = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC)
    async with kernel.db.transaction() as uow:
        await uow.execute(customers.insert(), {"id": cid, "canonical_id": cid,
                                               "channel": channel, "created_at": at})
        await uow.execute(customer_activity.insert(), {
            "customer_id": cid, "first_seen_at": at, "last_seen_at": at,
            "channels": ["web", "store"], "events_count": 3,
            "event_last": {"Order Completed": "2026-11-20T09:30:15Z"}})


async def test_rows_match_the_core_path(kernel: Kernel) -> None:
    await _seed(kernel, "c-1")
    async with kernel.db.read() as conn:
        core = dict((await conn.execute(ACTIVITY.statement, {"cid": "c-1"})).one()._mapping)
    async with kernel.db.quick.session() as q:
        quick = await q.fetch_one(ACTIVITY, cid="c-1")
        missing = await q.fetch_one(ACTIVITY, cid="nobody")
    assert quick == core
    assert quick["channels"] == ["web", "store"]
    assert quick["first_seen_at"] == datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC)
    assert missing is None


async def test_concurrent_sessions_each_see_committed_rows(kernel: Kernel) -> None:
    await _seed(kernel, "c-1", "app")

    async def reader(pause: float) -> list[str]:
        async with kernel.db.quick.session() as q:
            await asyncio.sleep(pause)  # another session runs meanwhile
            return [r["id"] for r in await q.fetch(BY_CHANNEL, channel="app")]

    first, second = await asyncio.gather(reader(0.02), reader(0.0))
    assert first == second == ["c-1"]
    await _seed(kernel, "c-2", "app")
    async with kernel.db.quick.session() as q:
        assert [r["id"] for r in await q.fetch(BY_CHANNEL, channel="app")] == ["c-1", "c-2"]


async def test_single_statement_fetch(kernel: Kernel) -> None:
    await _seed(kernel, "c-9", "store")
    rows = await kernel.db.quick.fetch(BY_CHANNEL, channel="store")
    assert [r["id"] for r in rows] == ["c-9"]
    assert await kernel.db.quick.fetch(BY_CHANNEL, channel="none") == []
