"""SQLite's single writer goes to the most important waiting transaction first."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.store.priority import BACKGROUND, CRITICAL, INTERACTIVE, PriorityGate, write_priority
from kunde.store.tables import job_runs


async def test_waiters_are_served_by_priority_then_in_arrival_order() -> None:
    gate = PriorityGate()
    served: list[str] = []
    await gate.acquire(BACKGROUND)

    async def wait(name: str, priority: int) -> None:
        async with gate.hold(priority):
            served.append(name)
            await asyncio.sleep(0)

    tasks = []
    for name, priority in [("bg1", BACKGROUND), ("ui1", INTERACTIVE), ("bg2", BACKGROUND),
                           ("crit", CRITICAL), ("ui2", INTERACTIVE)]:
        tasks.append(asyncio.create_task(wait(name, priority)))
        await asyncio.sleep(0)
    gate.release()
    await asyncio.gather(*tasks)
    assert served == ["crit", "ui1", "ui2", "bg1", "bg2"]
    assert not gate._held


async def test_a_cancelled_waiter_neither_holds_nor_blocks_the_gate() -> None:
    gate = PriorityGate()
    await gate.acquire(BACKGROUND)
    cancelled = asyncio.create_task(gate.acquire(CRITICAL))
    later = asyncio.create_task(gate.acquire(BACKGROUND))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    gate.release()
    await asyncio.wait_for(later, 1)  # the cancelled critical waiter was skipped
    gate.release()
    assert not gate._held


async def test_a_waiter_cancelled_as_it_is_granted_passes_the_gate_on() -> None:
    gate = PriorityGate()
    await gate.acquire(BACKGROUND)
    first = asyncio.create_task(gate.acquire(CRITICAL))
    second = asyncio.create_task(gate.acquire(BACKGROUND))
    await asyncio.sleep(0)
    gate.release()       # grants `first`...
    first.cancel()       # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    gate.release()
    assert not gate._held


async def test_a_checkout_overtakes_queued_background_writes(kernel: Kernel) -> None:
    if kernel.db.gate is None:
        pytest.skip("PostgreSQL has a pool of writers and row locks; no single writer")
    order: list[str] = []

    async def write(name: str, priority: int) -> None:
        write_priority.set(priority)
        async with kernel.db.transaction() as uow:
            await uow.execute(sa.insert(job_runs).values(name=name))
            order.append(name)

    async with kernel.db.transaction():  # the writer is busy
        tasks = [asyncio.create_task(write(f"consumer-{i}", BACKGROUND)) for i in range(3)]
        await asyncio.sleep(0.01)
        tasks.append(asyncio.create_task(write("checkout", CRITICAL)))
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert order[0] == "checkout"
    assert sorted(order[1:]) == ["consumer-0", "consumer-1", "consumer-2"]
