"""Periodic jobs (sweeps, retention, training) run once at a time across all processes.

A job is claimed by a conditional UPDATE on ``job_runs``: only one process at a
time wins, and only once its interval has passed since the last start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from kunde.core.clock import utcnow
from kunde.store.database import Database
from kunde.store.sql import insert_ignore
from kunde.store.tables import job_runs

log = logging.getLogger("kunde.jobs")


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    every: timedelta
    run: Callable[[], Awaitable[str | None]]
    timeout: timedelta = timedelta(minutes=10)


class JobScheduler:
    def __init__(self, db: Database, jobs: Sequence[PeriodicJob], owner: str) -> None:
        self.db = db
        self.jobs = list(jobs)
        self.owner = owner

    async def _claim(self, job: PeriodicJob) -> bool:
        now = utcnow()
        async with self.db.transaction() as uow:
            await uow.execute(insert_ignore(uow.dialect, job_runs), {"name": job.name})
            result = await uow.execute(
                job_runs.update()
                .where(
                    job_runs.c.name == job.name,
                    sa.or_(job_runs.c.locked_until.is_(None), job_runs.c.locked_until < now),
                    sa.or_(job_runs.c.last_started_at.is_(None),
                           job_runs.c.last_started_at <= now - job.every),
                )
                .values(owner=self.owner, locked_until=now + job.timeout, last_started_at=now)
            )
            return bool(result.rowcount == 1)

    async def run_due(self) -> list[str]:
        ran = []
        for job in self.jobs:
            if not await self._claim(job):
                continue
            try:
                result = await asyncio.wait_for(job.run(), job.timeout.total_seconds())
            except Exception as exc:
                log.exception("job %s failed", job.name)
                result = f"failed: {exc!r}"
            async with self.db.transaction() as uow:
                await uow.execute(
                    job_runs.update().where(job_runs.c.name == job.name).values(
                        locked_until=None, last_finished_at=utcnow(),
                        last_result=(result or "ok")[:2000],
                    )
                )
            ran.append(job.name)
        return ran

    async def run_forever(self, stop: asyncio.Event, every: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.run_due()
            except Exception:
                log.exception("job scheduler failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
