"""Database health, so requests do not each wait to discover an outage.

Nothing runs while all is well. When a request ends in a 503 or readiness cannot
reach the database, `DatabaseHealth.suspect` starts a probe in the serving event
loop: ``SELECT 1`` with a short timeout, every `interval` seconds. After two
failures the database counts as down: the admission middleware refuses writes at
once and ``/health/ready`` answers at once. When a probe succeeds again, the
connection pools are renewed, the database counts as up, and the probe stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kunde.store.database import Database

log = logging.getLogger("kunde.ops.degradation")


class DatabaseHealth:
    def __init__(self, *, interval: float = 1.0, timeout: float = 1.0,
                 failures_to_down: int = 2) -> None:
        self.up = True
        self.failures = 0
        self.failures_to_down = failures_to_down
        self.since = time.time()
        self.last_error = ""
        self.interval = interval
        self.timeout = timeout
        self._db: Database | None = None
        self._task: asyncio.Task[None] | None = None

    def attach(self, db: Database) -> None:
        self._db = db

    def suspect(self) -> None:
        """Start probing (in the running loop) unless a probe already runs."""
        if self._db is None or (self._task is not None and not self._task.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self.run(self._db), name="database-probe")

    async def probe(self, db: Database) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                await db.ping()
        except Exception as exc:  # any failure to answer counts
            # One slow answer under load is not an outage: it takes consecutive failures.
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            if self.failures >= self.failures_to_down:
                self._mark(False, self.last_error)
            return False
        self.failures = 0
        if not self.up:
            # Connections in the pools may point at the old server process: start afresh.
            with contextlib.suppress(Exception):
                await db.writer.dispose()
                if db.reader is not db.writer:
                    await db.reader.dispose()
        self._mark(True, "")
        return True

    def _mark(self, up: bool, error: str) -> None:
        if up != self.up:
            self.since = time.time()
            if up:
                log.warning("database reachable again")
            else:
                log.error("database unreachable: %s", error)
        self.up = up
        self.last_error = error

    async def run(self, db: Database) -> None:
        while True:
            ok = await self.probe(db)
            if ok:
                return
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None or task.done():
            return
        if task.get_loop() is not asyncio.get_running_loop():
            task.get_loop().call_soon_threadsafe(task.cancel)  # tests serve from another loop
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
