"""Partition leases: exclusive ownership, fair sharing, takeover of a dead worker's partitions."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from kunde.core.clock import utcnow
from kunde.kernel import Kernel
from kunde.store.leases import LeaseManager
from kunde.store.tables import partition_leases, workers


async def test_one_worker_takes_every_partition(kernel: Kernel) -> None:
    m = LeaseManager(kernel.db, 8, worker_id="w1")
    await m.start()
    assert m.owned() == frozenset(range(8))


async def test_two_workers_share_and_never_overlap(kernel: Kernel) -> None:
    a = LeaseManager(kernel.db, 8, worker_id="a")
    b = LeaseManager(kernel.db, 8, worker_id="b")
    await a.start()
    await b.start()
    for _ in range(4):  # a few rounds of renewals converge on a fair split
        await a.tick()
        await b.tick()
        assert not (a.owned() & b.owned()), "a partition has two owners"
    assert a.owned() | b.owned() == frozenset(range(8))
    assert len(a.owned()) == len(b.owned()) == 4


async def test_dead_workers_partitions_are_taken_over(kernel: Kernel) -> None:
    # Lifetimes generous enough that a slow tick on a busy machine still sees its lease.
    a = LeaseManager(kernel.db, 4, worker_id="a", ttl=3.0, margin=0.5)
    b = LeaseManager(kernel.db, 4, worker_id="b", ttl=3.0, margin=0.5)
    await a.start()
    await b.start()
    await a.tick()
    await b.tick()
    assert len(b.owned()) == 2
    # a dies without releasing anything (kill -9): its heartbeat and leases just age.
    await asyncio.sleep(3.2)
    await b.tick()
    assert b.owned() == frozenset(range(4))


async def test_concurrent_claims_give_each_partition_one_owner(kernel: Kernel) -> None:
    managers = [LeaseManager(kernel.db, 16, worker_id=f"w{i}") for i in range(4)]
    await asyncio.gather(*(m.start() for m in managers))
    for _ in range(3):
        await asyncio.gather(*(m.tick() for m in managers))
    owned = [m.owned() for m in managers]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not (owned[i] & owned[j])
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(partition_leases))).all()
    assert all(r.owner is not None for r in rows)
    assert {r.partition for r in rows} == set(range(16))


async def test_stop_releases_and_forgets_the_worker(kernel: Kernel) -> None:
    m = LeaseManager(kernel.db, 4, worker_id="leaving")
    await m.start()
    await m.stop()
    async with kernel.db.read() as conn:
        assert (await conn.execute(
            sa.select(sa.func.count()).select_from(workers)
            .where(workers.c.heartbeat_at > utcnow() - timedelta(minutes=1)))).scalar_one() == 0
        owners = (await conn.execute(sa.select(partition_leases.c.owner))).scalars().all()
    assert set(owners) == {None}
