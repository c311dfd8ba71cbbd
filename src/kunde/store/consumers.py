"""Named consumers of the event log with at-least-once delivery and exactly-once effects.

A consumer's handler runs inside a write transaction together with the update
of the consumer's stored position for each partition it read. The position
update is a compare-and-set: if another process advanced the same partition in
the meantime (a lease that moved while we worked), our transaction rolls back
with its effects, so a batch's effects and its position commit together or not
at all. Handlers must still be idempotent by event id, because delivery itself
is at-least-once (a crash after commit of effects in a foreign system, e.g. SMTP).

A handler that keeps failing on one event is retried with back-off; after
`MAX_ATTEMPTS` the event is parked in ``dead_letters`` and the consumer moves on
(readiness reports parked events; ``kunde consumers replay`` re-runs them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from kunde.core.clock import utcnow
from kunde.core.events import Event
from kunde.store.database import Database, UnitOfWork
from kunde.store.eventlog import EventLog
from kunde.store.sql import insert_ignore
from kunde.store.tables import consumer_offsets, dead_letters, events

log = logging.getLogger("kunde.consumers")

Handler = Callable[[UnitOfWork, Sequence[Event]], Awaitable[None]]
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Consumer:
    """A named reader of the log. ``types`` limits which events reach the handler."""

    name: str
    handle: Handler
    types: frozenset[str] | None = None
    batch_size: int = 500

    def wants(self, event: Event) -> bool:
        return self.types is None or event.type in self.types


class PositionMoved(Exception):
    """Another process advanced this consumer's partition: our batch must not commit."""


@dataclass
class ConsumerStats:
    processed: int = 0
    failures: int = 0
    parked: int = 0
    last_progress: float = 0.0
    attempts: dict[int, int] = field(default_factory=dict)


class ConsumerRunner:
    def __init__(
        self,
        db: Database,
        log_: EventLog,
        consumers: Sequence[Consumer],
        owned: Callable[[], frozenset[int]],
        *,
        idle_wait: float = 0.5,
        pause: Callable[[], float] | None = None,
    ) -> None:
        names = [c.name for c in consumers]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate consumer names: {names}")
        self.db = db
        self.log = log_
        self.consumers = list(consumers)
        self.owned = owned
        self.idle_wait = idle_wait
        # Seconds to wait before the next round, asked after each one: the server's
        # requests come first while it sheds load (kunde.runtime.yield_to_requests).
        self.pause = pause
        # Events read per round for all consumers together.
        self.window = max((c.batch_size for c in consumers), default=500)
        self.stats = {c.name: ConsumerStats() for c in consumers}

    async def ensure_offsets(self) -> None:
        rows = [
            {"consumer": c.name, "partition": p, "position": 0, "updated_at": utcnow()}
            for c in self.consumers
            for p in range(self.log.partitions)
        ]
        if rows:
            async with self.db.transaction() as uow:
                await uow.execute(insert_ignore(uow.dialect, consumer_offsets), rows)

    async def run_forever(self, stop: asyncio.Event) -> None:
        await self.ensure_offsets()
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:  # a database outage must not kill the loop
                log.exception("consumer loop failed; retrying")
                busy = 0
                await asyncio.sleep(1.0)
            if not busy:
                await self.db.committed.wait(self.idle_wait)
            elif self.pause is not None and (delay := self.pause()) > 0:
                await asyncio.sleep(delay)

    async def run_once(self) -> int:
        """One batch for every consumer over the owned partitions; returns events handled.

        The log is read and decrypted once for all consumers, from the lowest cursor of
        each partition; every consumer takes the part of that window after its own
        cursors. Consumers that want none of their part only move their positions, all
        of them in one transaction. A consumer with nothing in a full window reads on its
        own when all its cursors lie beyond it (others lag far behind); otherwise it
        waits for the window to move on, at most until the laggard has caught up.
        """
        owned = self.owned()
        if not owned:
            return 0
        cursors = await self._all_cursors(owned)
        if not cursors:
            return 0
        floor: dict[int, int] = {}
        for per in cursors.values():
            for p, pos in per.items():
                floor[p] = min(pos, floor.get(p, pos))
        async with self.db.read() as conn:
            window = await self.log.read(conn, after=min(floor.values()), cursors=floor,
                                         limit=self.window)
        if not window:
            return 0
        end = window[-1].position
        total = 0
        idle: list[tuple[Consumer, list[Event], dict[int, int]]] = []
        for consumer in self.consumers:
            mine_cursors = cursors.get(consumer.name)
            if not mine_cursors:
                continue
            mine = [e for e in window if e.position > mine_cursors.get(e.partition, end)]
            if not mine:
                if len(window) >= self.window and min(mine_cursors.values()) >= end:
                    total += await self._run_consumer(consumer, owned)
                continue
            mine = mine[:consumer.batch_size]
            if any(consumer.wants(e) for e in mine):
                total += await self._run_batch(consumer, mine, mine_cursors)
            else:
                idle.append((consumer, mine, mine_cursors))
        if idle:
            total += await self._advance_idle(idle)
        return total

    async def _all_cursors(self, owned: Iterable[int]) -> dict[str, dict[int, int]]:
        names = [c.name for c in self.consumers]
        out: dict[str, dict[int, int]] = {}
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(consumer_offsets.c.consumer, consumer_offsets.c.partition,
                          consumer_offsets.c.position).where(
                    consumer_offsets.c.consumer.in_(names),
                    consumer_offsets.c.partition.in_(list(owned)),
                )
            )
            for name, p, pos in rows:
                out.setdefault(str(name), {})[int(p)] = int(pos)
        return out

    async def _advance_idle(
        self, idle: Sequence[tuple[Consumer, list[Event], dict[int, int]]]
    ) -> int:
        try:
            async with self.db.transaction() as uow:
                for consumer, mine, cursors in idle:
                    await self._advance(uow, consumer.name, mine, cursors)
        except PositionMoved:
            return 0
        loop_time = asyncio.get_running_loop().time()
        for consumer, mine, _ in idle:
            stats = self.stats[consumer.name]
            stats.processed += len(mine)
            stats.last_progress = loop_time
        return sum(len(mine) for _, mine, _ in idle)

    async def drain(self, max_rounds: int = 1000) -> None:
        """Run until every consumer is caught up with the owned partitions (tests, CLI)."""
        await self.ensure_offsets()
        for _ in range(max_rounds):
            handled = await self.run_once()
            retrying = any(s.attempts for s in self.stats.values())
            if not handled and not retrying:
                return
        raise RuntimeError("consumers did not catch up")

    async def _cursors(self, name: str, owned: Iterable[int]) -> dict[int, int]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(consumer_offsets.c.partition, consumer_offsets.c.position).where(
                    consumer_offsets.c.consumer == name,
                    consumer_offsets.c.partition.in_(list(owned)),
                )
            )
            return {int(p): int(pos) for p, pos in rows}

    async def _run_consumer(self, consumer: Consumer, owned: frozenset[int]) -> int:
        cursors = await self._cursors(consumer.name, owned)
        if not cursors:
            return 0
        async with self.db.read() as conn:
            batch = await self.log.read(
                conn, after=min(cursors.values()), cursors=cursors, limit=consumer.batch_size,
            )
        if not batch:
            return 0
        return await self._run_batch(consumer, batch, cursors)

    async def _run_batch(
        self, consumer: Consumer, batch: Sequence[Event], cursors: dict[int, int]
    ) -> int:
        stats = self.stats[consumer.name]
        try:
            await self._commit(consumer, batch, cursors)
        except PositionMoved:
            return 0
        except Exception as exc:
            stats.failures += 1
            log.warning("consumer %s failed on a batch: %r; retrying one by one",
                        consumer.name, exc)
            return await self._one_by_one(consumer, batch, cursors)
        stats.processed += len(batch)
        stats.last_progress = asyncio.get_running_loop().time()
        return len(batch)

    async def _commit(
        self, consumer: Consumer, batch: Sequence[Event], cursors: dict[int, int]
    ) -> None:
        wanted = [e for e in batch if consumer.wants(e)]
        async with self.db.transaction() as uow:
            if wanted:
                await consumer.handle(uow, wanted)
            await self._advance(uow, consumer.name, batch, cursors)

    async def _advance(
        self, uow: UnitOfWork, name: str, batch: Sequence[Event], cursors: dict[int, int]
    ) -> None:
        last: dict[int, int] = {}
        for e in batch:
            last[e.partition] = e.position
        # One compare-and-set statement for every partition the batch touched.
        result = await uow.execute(
            consumer_offsets.update()
            .where(
                consumer_offsets.c.consumer == name,
                sa.or_(*(sa.and_(consumer_offsets.c.partition == p,
                                 consumer_offsets.c.position == cursors[p])
                         for p in sorted(last))),
            )
            .values(position=sa.case(
                {p: sa.literal(pos, sa.BigInteger) for p, pos in last.items()},
                value=consumer_offsets.c.partition,
            ), updated_at=utcnow())
        )
        if result.rowcount != len(last):
            raise PositionMoved(f"{name} partitions {sorted(last)}")
        uow.after_commit(lambda: cursors.update(last))

    async def _one_by_one(
        self, consumer: Consumer, batch: Sequence[Event], cursors: dict[int, int]
    ) -> int:
        stats = self.stats[consumer.name]
        done = 0
        for event in batch:
            try:
                await self._commit(consumer, [event], cursors)
                stats.attempts.pop(event.position, None)
                done += 1
                continue
            except PositionMoved:
                return done
            except Exception as exc:
                attempts = stats.attempts.get(event.position, 0) + 1
                stats.attempts[event.position] = attempts
                if attempts < MAX_ATTEMPTS:
                    log.warning("consumer %s: event %s failed (attempt %d): %r",
                                consumer.name, event.id, attempts, exc)
                    await asyncio.sleep(min(0.05 * 2**attempts, 2.0))
                    return done
                await self._park(consumer, event, cursors, repr(exc), attempts)
                stats.attempts.pop(event.position, None)
                stats.parked += 1
                done += 1
        return done

    async def _park(
        self, consumer: Consumer, event: Event, cursors: dict[int, int], error: str, attempts: int
    ) -> None:
        log.error("consumer %s parks event %s after %d attempts: %s",
                  consumer.name, event.id, attempts, error)
        async with self.db.transaction() as uow:
            await uow.execute(
                insert_ignore(uow.dialect, dead_letters),
                {"consumer": consumer.name, "position": event.position, "event_id": event.id,
                 "error": error[:4000], "attempts": attempts, "parked_at": utcnow()},
            )
            await self._advance(uow, consumer.name, [event], cursors)


async def consumer_lag(db: Database) -> dict[str, int]:
    """Events each consumer has not handled yet, over all partitions."""
    q = (
        sa.select(consumer_offsets.c.consumer, sa.func.count(events.c.position))
        .select_from(
            consumer_offsets.outerjoin(
                events,
                sa.and_(
                    events.c.partition == consumer_offsets.c.partition,
                    events.c.position > consumer_offsets.c.position,
                ),
            )
        )
        .group_by(consumer_offsets.c.consumer)
    )
    async with db.read() as conn:
        return {name: int(n) for name, n in await conn.execute(q)}


async def replay(db: Database, consumer: str, from_position: int) -> int:
    """Rewind a consumer so it handles every event after ``from_position`` again."""
    async with db.transaction() as uow:
        result = await uow.execute(
            consumer_offsets.update()
            .where(consumer_offsets.c.consumer == consumer)
            .values(position=sa.func.min(consumer_offsets.c.position, from_position)
                    if uow.dialect == "sqlite"
                    else sa.func.least(consumer_offsets.c.position, from_position),
                    updated_at=utcnow())
        )
        await uow.execute(
            dead_letters.delete().where(
                dead_letters.c.consumer == consumer, dead_letters.c.position > from_position
            )
        )
        return int(result.rowcount)
