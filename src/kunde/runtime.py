"""Background work of a process: partition leases, event consumers and periodic jobs.

The server runs this inside its own event loop in embedded mode
(``KUNDE_RUN_CONSUMERS=true``, the default); ``kunde worker`` runs only this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from kunde.features import Feature
from kunde.kernel import Kernel
from kunde.ops.models import Admission, LoadState
from kunde.store.consumers import Consumer, ConsumerRunner
from kunde.store.jobs import JobScheduler, PeriodicJob
from kunde.store.leases import LeaseManager

log = logging.getLogger("kunde.runtime")


# How long in-process consumers wait between rounds while the server is under load.
PAUSE_WHEN = {LoadState.NORMAL: 0.0, LoadState.WARN: 0.1, LoadState.THROTTLE: 1.0}


def yield_to_requests(admission: Admission) -> Callable[[], float]:
    """The pause between consumer rounds, from the process's load state.

    Consumers are background work: in a spike they fall behind (the log keeps every
    event) instead of taking the event loop and SQLite's writer from checkouts. A
    ``kunde worker`` serves no requests, so its state stays normal and it never waits."""

    def pause() -> float:
        return PAUSE_WHEN[admission.state(time.perf_counter())]

    return pause


def consumers_of(kernel: Kernel, features: Sequence[Feature]) -> list[Consumer]:
    return [c for f in features if f.consumers for c in f.consumers(kernel)]


def jobs_of(kernel: Kernel, features: Sequence[Feature]) -> list[PeriodicJob]:
    return [j for f in features if f.jobs for j in f.jobs(kernel)]


class Background:
    def __init__(self, kernel: Kernel, features: Sequence[Feature]) -> None:
        self.kernel = kernel
        self.leases = LeaseManager(kernel.db, kernel.settings.partitions)
        self.runner = ConsumerRunner(
            kernel.db, kernel.log, consumers_of(kernel, features), self.leases.owned,
            pause=yield_to_requests(kernel.metrics.admission),
        )
        self.jobs = JobScheduler(kernel.db, jobs_of(kernel, features), self.leases.worker_id)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        kernel.metrics.runner = self.runner

    async def start(self) -> None:
        await self.leases.start()
        await self.runner.ensure_offsets()
        self._tasks = [
            asyncio.create_task(self.leases.run_forever(self._stop), name="leases"),
            asyncio.create_task(self.runner.run_forever(self._stop), name="consumers"),
            asyncio.create_task(self.jobs.run_forever(self._stop), name="jobs"),
        ]
        log.info("background work started as %s", self.leases.worker_id)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.leases.stop()

    async def wait(self) -> None:
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()
