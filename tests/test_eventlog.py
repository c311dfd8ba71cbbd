"""The event log: atomic with state, ordered, encrypted per subject, unreadable once shredded."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kunde.core.events import Event
from kunde.kernel import Kernel
from kunde.privacy.vault import SubjectErased
from kunde.store.tables import events, job_runs


async def test_events_commit_with_state_or_not_at_all(kernel: Kernel) -> None:
    with pytest.raises(RuntimeError):
        async with kernel.db.transaction() as uow:
            await uow.execute(job_runs.insert().values(name="state-change"))
            uow.emit(Event.new("test.happened", {"n": 1}))
            raise RuntimeError("crash between state change and commit")
    async with kernel.db.read() as conn:
        assert await kernel.log.head(conn) == 0
        assert (await conn.execute(sa.select(sa.func.count()).select_from(job_runs))).scalar() == 0

    async with kernel.db.transaction() as uow:
        await uow.execute(job_runs.insert().values(name="state-change"))
        uow.emit(Event.new("test.happened", {"n": 1}))
    async with kernel.db.read() as conn:
        assert await kernel.log.head(conn) == 1
        assert (await conn.execute(sa.select(sa.func.count()).select_from(job_runs))).scalar() == 1


async def test_positions_strictly_increase_and_read_returns_payloads(kernel: Kernel) -> None:
    for batch in range(3):
        async with kernel.db.transaction() as uow:
            for i in range(5):
                uow.emit(Event.new("test.n", {"batch": batch, "i": i}, subject_id=f"c{i}"))
    async with kernel.db.read() as conn:
        got = await kernel.log.read(conn, after=0, limit=100)
    assert [e.position for e in got] == sorted({e.position for e in got})
    assert len(got) == 15
    assert [(e.payload or {})["batch"] for e in got] == [0] * 5 + [1] * 5 + [2] * 5
    assert all(0 <= e.partition < kernel.settings.partitions for e in got)


async def test_subject_payloads_are_encrypted_at_rest(kernel: Kernel) -> None:
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("test.pii", {"email": "canary-4711@example.org"}, subject_id="cust-1"))
        uow.emit(Event.new("test.system", {"note": "plain-system-note"}))
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(events.c.payload, events.c.encrypted))).all()
    by_flag = {bool(r.encrypted): bytes(r.payload) for r in rows}
    assert b"canary-4711" not in by_flag[True]
    assert b"plain-system-note" in by_flag[False]


async def test_shredding_makes_payloads_unreadable_and_refuses_new_events(kernel: Kernel) -> None:
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("test.pii", {"name": "Ada"}, subject_id="cust-2"))
        uow.emit(Event.new("test.pii", {"name": "Bob"}, subject_id="cust-3"))
    async with kernel.db.transaction() as uow:
        assert await kernel.vault.shred(uow, "cust-2", "erasure request") is True
        # Replaying an erasure is harmless.
        assert await kernel.vault.shred(uow, "cust-2", "erasure request") is False
    async with kernel.db.read() as conn:
        got = {e.subject_id: e for e in await kernel.log.read(conn)}
    assert got["cust-2"].payload is None and got["cust-2"].erased
    assert got["cust-3"].payload == {"name": "Bob"}
    with pytest.raises(SubjectErased):
        async with kernel.db.transaction() as uow:
            uow.emit(Event.new("test.pii", {"name": "Ada again"}, subject_id="cust-2"))


async def test_read_filters_by_subject_and_type(kernel: Kernel) -> None:
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("a", {}, subject_id="s1"))
        uow.emit(Event.new("b", {}, subject_id="s1"))
        uow.emit(Event.new("a", {}, subject_id="s2"))
    async with kernel.db.read() as conn:
        assert [e.type for e in await kernel.log.read(conn, subject_id="s1")] == ["a", "b"]
        assert len(await kernel.log.read(conn, types=["a"])) == 2
