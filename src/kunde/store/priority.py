"""Who gets SQLite's single writer next: the most important waiting transaction.

SQLite has one writer connection; under load, transactions queue for it. In arrival
order a checkout waits behind every admitted ingestion batch and every consumer round
ahead of it. :class:`PriorityGate` hands the writer to the waiter with the highest
priority instead (first come, first served within a priority), so critical requests
overtake background work. The priority of the running task comes from
:data:`write_priority`, which the HTTP front door sets to the request's load class;
consumers and jobs run with the default, background.

Nothing is starved for good: a background waiter is served whenever no higher one
waits, and under a sustained flood of critical writes, admission control bounds how
many of those are in flight.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

BACKGROUND, INTERACTIVE, CRITICAL = 0, 1, 2

# The load class of the work running in this task (kunde.ops.models.Criticality values).
write_priority: ContextVar[int] = ContextVar("write_priority", default=BACKGROUND)


class PriorityGate:
    """A lock whose waiters are served by priority, then in arrival order."""

    def __init__(self) -> None:
        self._held = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def acquire(self, priority: int) -> None:
        if not self._held:
            self._held = True
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._order), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # handed the gate just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, granted = heapq.heappop(self._waiters)
            if not granted.done():
                granted.set_result(None)  # the gate stays held, by the next holder
                return
        self._held = False

    @asynccontextmanager
    async def hold(self, priority: int | None = None) -> AsyncIterator[None]:
        await self.acquire(write_priority.get() if priority is None else priority)
        try:
            yield
        finally:
            self.release()
