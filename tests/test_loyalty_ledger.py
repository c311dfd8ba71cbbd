"""The points ledger under random histories: balanced, exactly once, never negative, replayable.

A Hypothesis state machine drives awards (pending and immediate), goodwill,
refund clawbacks, redemptions, time passing (release and FIFO expiry), merges of
other customer records into the member (points and lots transferred) and
duplicate deliveries — sequential and concurrent — against the real database
(SQLite and, with KUNDE_TEST_POSTGRES_URL, PostgreSQL), checking the ledger's
invariants after every step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kunde.core.clock import FrozenClock
from kunde.core.ids import new_id
from kunde.kernel import Kernel, close_kernel, open_kernel
from kunde.loyalty import ledger
from kunde.loyalty.errors import InsufficientPoints
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.tables import accounts, entries, lots, transactions
from kunde.settings import Settings

T = TypeVar("T")
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Harness:
    """One event loop and one kernel shared by every example of a test."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FrozenClock(START)
        self.kernel: Kernel = self.run(open_kernel(settings, run_migrations=False,
                                                   clock=self.clock))

    def run(self, aw: Awaitable[T]) -> T:
        return self.loop.run_until_complete(aw)

    def close(self) -> None:
        self.run(close_kernel(self.kernel))
        self.loop.close()


@pytest.fixture
def harness(settings: Settings) -> Iterator[Harness]:
    h = Harness(settings)
    try:
        yield h
    finally:
        h.close()


async def snapshot(k: Kernel, customer_id: str) -> tuple[Any, ...]:
    async with k.db.read() as conn:
        bal = await ledger.balances(conn, customer_id)
        n = (await conn.execute(sa.select(sa.func.count()).select_from(transactions).where(
            transactions.c.customer_id == customer_id))).scalar()
        rem = (await conn.execute(sa.select(sa.func.sum(lots.c.remaining)).where(
            lots.c.customer_id == customer_id))).scalar()
    return bal["available"], bal["pending"], n, rem


class LedgerMachine(RuleBasedStateMachine):
    h: Harness

    def __init__(self) -> None:
        super().__init__()
        self.cid = new_id()
        self.svc = self.h.kernel.service(LoyaltyService)
        self.orders: list[str] = []
        self.done: list[Callable[[], Awaitable[Any]]] = []
        self.refunds = 0
        self.others: list[str] = []

    def _run(self, aw: Awaitable[T]) -> T:
        return self.h.run(aw)

    def _award(self, order: str, points: int, pending: bool) -> Callable[[], Awaitable[Any]]:
        k, cid, clock = self.h.kernel, self.cid, self.h.clock

        async def go() -> Any:
            now = clock.now()
            async with k.db.transaction() as uow:
                return await ledger.credit(
                    uow, kind="award", source="s:issued", customer_id=cid, points=points,
                    cause_id=f"{order}:paid", rule="purchase", reason=f"order {order}",
                    now=now, available_at=now + timedelta(days=14) if pending else None,
                    expires_at=now + timedelta(days=14 if pending else 0, weeks=20), ref=order)
        return go

    @rule(points=st.integers(1, 500), pending=st.booleans())
    def award(self, points: int, pending: bool) -> None:
        order = new_id()
        self.orders.append(order)
        op = self._award(order, points, pending)
        assert self._run(op()) is not None
        self.done.append(op)

    @rule(points=st.integers(1, 200))
    def goodwill(self, points: int) -> None:
        k, cid = self.h.kernel, self.cid
        cause = new_id()

        async def go() -> Any:
            async with k.db.transaction() as uow:
                return await self.svc.grant_goodwill(uow, cid, points, "late parcel", cause)
        assert self._run(go()) is not None
        self.done.append(go)

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), share=st.integers(1, 100))
    def refund(self, data: st.DataObject, share: int) -> None:
        order = data.draw(st.sampled_from(self.orders))
        k, cid, clock = self.h.kernel, self.cid, self.h.clock
        self.refunds += 1
        refund_id = f"refund-{self.refunds}-{new_id()}"

        async def go() -> Any:
            async with k.db.transaction() as uow:
                lot = (await uow.execute(sa.select(lots.c.id, lots.c.points).where(
                    lots.c.ref == order))).first()
                return await ledger.reverse_lot(
                    uow, customer_id=cid, lot_id=lot.id, points=lot.points * share // 100,
                    cause_id=refund_id, reason="refund", now=clock.now(), ref=order)
        self._run(go())
        self.done.append(go)

    @rule(points=st.integers(1, 800))
    def redeem(self, points: int) -> None:
        k, cid, clock = self.h.kernel, self.cid, self.h.clock
        cause = new_id()
        before = self._run(snapshot(k, cid))

        async def go() -> Any:
            async with k.db.transaction() as uow:
                return await ledger.debit(
                    uow, kind="redeem", sink="s:redeemed", customer_id=cid, points=points,
                    cause_id=cause, reason="reward", now=clock.now())
        if points > before[0]:
            with pytest.raises(InsufficientPoints):
                self._run(go())
            assert self._run(snapshot(k, cid)) == before  # nothing changed
        else:
            assert self._run(go()) is not None
            self.done.append(go)

    @rule(points=st.integers(1, 400), pending=st.booleans(), spend=st.integers(0, 100))
    def merge_in(self, points: int, pending: bool, spend: int) -> None:
        """Another customer record with its own history is merged into this member."""
        k, cid, clock = self.h.kernel, self.cid, self.h.clock
        other = new_id()
        order = new_id()

        async def history() -> None:
            now = clock.now()
            async with k.db.transaction() as uow:
                await ledger.credit(
                    uow, kind="award", source="s:issued", customer_id=other, points=points,
                    cause_id=f"{order}:paid", rule="purchase", reason=f"order {order}",
                    now=now, available_at=now + timedelta(days=14) if pending else None,
                    expires_at=now + timedelta(days=14 if pending else 0, weeks=20),
                    ref=order)
                await self.svc.grant_goodwill(uow, other, 100, "welcome", f"{other}:w")
                if spend:
                    await ledger.debit(uow, kind="redeem", sink="s:redeemed",
                                       customer_id=other, points=spend, cause_id=new_id(),
                                       reason="reward", now=now)
        self._run(history())
        self.others.append(other)
        self.orders.append(order)
        merge_event = new_id()

        async def go() -> Any:
            async with k.db.transaction() as uow:
                return await ledger.transfer_member(
                    uow, loser=other, survivor=cid, cause_id=merge_event,
                    reason="merged", now=clock.now())
        before = self._run(snapshot(k, cid))
        assert self._run(go()) is not None
        after = self._run(snapshot(k, cid))
        gone = self._run(snapshot(k, other))
        assert gone[0] == gone[1] == 0 and gone[3] is None
        assert after[0] + after[1] == before[0] + before[1] + points + 100 - spend
        self.done.append(go)

        # Later deliveries of the merged record's causes count for the survivor (live
        # ids): the ledger recognises the cause whichever customer it arrives for.
        async def award_again() -> Any:
            now = clock.now()
            async with k.db.transaction() as uow:
                return await ledger.credit(
                    uow, kind="award", source="s:issued", customer_id=cid, points=points,
                    cause_id=f"{order}:paid", rule="purchase", reason=f"order {order}",
                    now=now, ref=order)

        async def goodwill_again() -> Any:
            async with k.db.transaction() as uow:
                return await self.svc.grant_goodwill(uow, cid, 100, "welcome", f"{other}:w")
        for redirected in (award_again, goodwill_again):
            assert self._run(redirected()) is None
            self.done.append(redirected)
        assert self._run(snapshot(k, cid)) == after

    @rule(days=st.sampled_from([1, 7, 15, 60, 200]))
    def time_passes(self, days: int) -> None:
        self.h.clock.advance(timedelta(days=days))
        self._run(self.svc.run_due())

    @precondition(lambda self: self.done)
    @rule(data=st.data(), concurrent=st.booleans())
    def duplicate_delivery(self, data: st.DataObject, concurrent: bool) -> None:
        op = data.draw(st.sampled_from(self.done))
        k = self.h.kernel
        before = self._run(snapshot(k, self.cid))

        async def twice() -> list[Any]:
            if concurrent:
                return list(await asyncio.gather(op(), op()))
            return [await op(), await op()]
        assert self._run(twice()) == [None, None]
        assert self._run(snapshot(k, self.cid)) == before

    @invariant()
    def ledger_holds(self) -> None:
        for cid in (self.cid, *self.others):
            self._run(check_invariants(self.h.kernel, cid))


async def check_invariants(k: Kernel, cid: str) -> None:
    async with k.db.read() as conn:
        unbalanced = (await conn.execute(
            sa.select(entries.c.txn_id).group_by(entries.c.txn_id)
            .having(sa.func.sum(entries.c.amount) != 0))).all()
        assert unbalanced == []
        dupes = (await conn.execute(
            sa.select(transactions.c.kind, transactions.c.cause_id, transactions.c.rule)
            .group_by(transactions.c.kind, transactions.c.cause_id, transactions.c.rule)
            .having(sa.func.count() > 1))).all()
        assert dupes == []
        replay = dict((await conn.execute(
            sa.select(entries.c.account, sa.func.sum(entries.c.amount))
            .where(entries.c.account.like(f"m:{cid}:%")).group_by(entries.c.account))).all())
        kept = dict((await conn.execute(sa.select(accounts.c.account, accounts.c.balance)
                                        .where(accounts.c.customer_id == cid))).all())
        for acct, bal in kept.items():
            assert bal >= 0, f"{acct} went negative"
            assert bal == int(replay.get(acct, 0)), f"{acct}: {bal} != replay"
        by_bucket = dict((await conn.execute(
            sa.select(lots.c.bucket, sa.func.sum(lots.c.remaining))
            .where(lots.c.customer_id == cid).group_by(lots.c.bucket))).all())
        for bucket in ("available", "pending"):
            assert int(by_bucket.get(bucket) or 0) == kept.get(ledger.member_account(cid, bucket),
                                                                 0)


@pytest.mark.slow
def test_ledger_state_machine(harness: Harness, backend: str) -> None:
    LedgerMachine.h = harness
    machine = LedgerMachine.TestCase
    machine.settings = hsettings(
        max_examples=6 if backend == "postgres" else 10, stateful_step_count=20,
        deadline=None, suppress_health_check=list(HealthCheck))
    machine().runTest()


async def test_goodwill_is_granted_once_per_cause(kernel: Kernel) -> None:
    svc = kernel.service(LoyaltyService)
    cid = new_id()
    async with kernel.db.transaction() as uow:
        first = await svc.grant_goodwill(uow, cid, 50, "parcel late", "case-1")
    async with kernel.db.transaction() as uow:
        again = await svc.grant_goodwill(uow, cid, 50, "parcel late", "case-1")
    assert first is not None and again is None
    summary = await svc.member_summary(cid)
    assert summary["balance"] == 50 and summary["pending"] == 0 and summary["member"]
    history = await svc.history(cid)
    assert [(h["kind"], h["points"], h["reason"]) for h in history] == [
        ("goodwill", 50, "parcel late")]
