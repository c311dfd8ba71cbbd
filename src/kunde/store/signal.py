"""A broadcast wake-up for in-process waiters (consumers waiting for new events)."""

from __future__ import annotations

import asyncio
import contextlib


class Signal:
    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()

    def notify(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    async def wait(self, timeout: float) -> bool:
        """Wait for the next `notify` or the timeout; True when woken by a notify."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout)
            return waiter.is_set()
        finally:
            self._waiters.discard(waiter)
