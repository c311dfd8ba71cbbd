"""Consumers: at-least-once delivery, exactly-once effects, parking, replay."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from kunde.core.events import Event
from kunde.kernel import Kernel
from kunde.store import consumers as consumers_mod
from kunde.store.consumers import Consumer, ConsumerRunner, consumer_lag, replay
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore
from kunde.store.tables import dead_letters, job_runs

# job_runs is a convenient existing table for recording effects: one row per event id.


async def record_effect(uow: UnitOfWork, events: Sequence[Event]) -> None:
    if not events:
        return
    await uow.execute(insert_ignore(uow.dialect, job_runs),
                      [{"name": e.id, "last_result": e.type} for e in events])


async def effects(kernel: Kernel) -> int:
    async with kernel.db.read() as conn:
        return int((await conn.execute(
            sa.select(sa.func.count()).select_from(job_runs))).scalar_one())


async def emit(kernel: Kernel, n: int, subject: str = "c1") -> None:
    async with kernel.db.transaction() as uow:
        for i in range(n):
            uow.emit(Event.new("test.n", {"i": i}, subject_id=f"{subject}-{i % 7}"))


def runner(kernel: Kernel, *consumers: Consumer) -> ConsumerRunner:
    every = frozenset(range(kernel.settings.partitions))
    return ConsumerRunner(kernel.db, kernel.log, consumers, lambda: every)


async def test_each_event_handled_once_and_lag_reaches_zero(kernel: Kernel) -> None:
    await emit(kernel, 50)
    r = runner(kernel, Consumer("effects", record_effect))
    await r.ensure_offsets()
    assert (await consumer_lag(kernel.db))["effects"] == 50
    await r.drain()
    assert await effects(kernel) == 50
    assert (await consumer_lag(kernel.db))["effects"] == 0


async def test_crash_mid_batch_reprocesses_without_double_effects(kernel: Kernel) -> None:
    await emit(kernel, 20)
    calls = {"n": 0}

    async def crash_once(uow: UnitOfWork, events: Sequence[Event]) -> None:
        await record_effect(uow, events[: len(events) // 2])  # half the batch written...
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("process died mid-batch")  # ...then the crash

        await record_effect(uow, events)

    r = runner(kernel, Consumer("crashy", crash_once))
    await r.drain()
    assert await effects(kernel) == 20  # every event's effect exactly once
    assert r.stats["crashy"].failures == 1


async def test_a_stale_owner_cannot_commit_over_a_newer_one(kernel: Kernel) -> None:
    """Two runners on the same partitions (a lease that moved): effects stay exactly once."""
    await emit(kernel, 30)
    a = runner(kernel, Consumer("shared", record_effect))
    b = runner(kernel, Consumer("shared", record_effect))
    await a.ensure_offsets()
    import asyncio

    await asyncio.gather(a.drain(), b.drain())
    assert await effects(kernel) == 30


async def test_type_filter_still_advances_position(kernel: Kernel) -> None:
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("wanted", {}, subject_id="x"))
        uow.emit(Event.new("ignored", {}, subject_id="x"))
    r = runner(kernel, Consumer("picky", record_effect, types=frozenset({"wanted"})))
    await r.drain()
    assert await effects(kernel) == 1
    assert (await consumer_lag(kernel.db))["picky"] == 0


async def test_poison_event_is_parked_and_the_rest_flows(
        kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumers_mod, "MAX_ATTEMPTS", 2)
    await emit(kernel, 5)

    async def poison(uow: UnitOfWork, events: Sequence[Event]) -> None:
        if any((e.payload or {}).get("i") == 2 for e in events):
            raise ValueError("cannot handle i=2")
        await record_effect(uow, events)

    r = runner(kernel, Consumer("poisoned", poison))
    await r.drain()
    assert await effects(kernel) == 4
    async with kernel.db.read() as conn:
        parked = (await conn.execute(sa.select(dead_letters))).all()
    assert len(parked) == 1 and "i=2" in parked[0].error


async def test_replay_from_position_re_handles_idempotently(kernel: Kernel) -> None:
    await emit(kernel, 10)
    seen: list[str] = []

    async def count(uow: UnitOfWork, events: Sequence[Event]) -> None:
        seen.extend(e.id for e in events)
        await record_effect(uow, events)

    r = runner(kernel, Consumer("counter", count))
    await r.drain()
    assert len(seen) == 10
    await replay(kernel.db, "counter", 0)
    r2 = runner(kernel, Consumer("counter", count))
    await r2.drain()
    assert len(seen) == 20  # delivered again...
    assert await effects(kernel) == 10  # ...without a second effect



async def test_a_partition_far_behind_the_others_is_not_starved(kernel: Kernel) -> None:
    """Events already handled in other partitions must not fill the read window forever."""
    from kunde.core.events import partition_of

    parts = kernel.settings.partitions
    busy = "busy-customer"
    quiet = next(f"quiet-{i}" for i in range(100)
                 if partition_of(f"quiet-{i}", parts) != partition_of(busy, parts))
    async with kernel.db.transaction() as uow:
        for i in range(20):
            uow.emit(Event.new("test.n", {"i": i}, subject_id=busy))
    consumer = Consumer("windowed", record_effect, batch_size=5)
    await runner(kernel, consumer).drain()
    assert await effects(kernel) == 20
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("test.n", {"i": 20}, subject_id=quiet))
    await runner(kernel, consumer).drain()
    assert await effects(kernel) == 21


async def test_consumers_wait_between_rounds_while_the_server_sheds(kernel: Kernel) -> None:
    import asyncio
    import time

    from kunde.ops.models import Admission, Criticality
    from kunde.runtime import PAUSE_WHEN, yield_to_requests

    admission = Admission()
    pause = yield_to_requests(admission)
    assert pause() == 0.0
    admission.by_class[Criticality.INTERACTIVE] = 0
    admission._last_shed[Criticality.INTERACTIVE] = time.perf_counter()  # just shed one
    assert pause() == PAUSE_WHEN[admission.state(time.perf_counter())] > 0

    await emit(kernel, 30)
    every = frozenset(range(kernel.settings.partitions))
    rounds: list[float] = []

    async def one_round(uow: UnitOfWork, events: Sequence[Event]) -> None:
        rounds.append(time.perf_counter())
        await record_effect(uow, events)

    small = Consumer("paced", one_round, batch_size=10)
    r = ConsumerRunner(kernel.db, kernel.log, [small], lambda: every, pause=lambda: 0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(r.run_forever(stop))
    while await effects(kernel) < 30:
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    # Every event handled; the rounds were spaced by the pause, not run back to back.
    assert len(rounds) >= 2
    assert min(b - a for a, b in itertools.pairwise(rounds)) >= 0.19
