"""Partition leases: how several worker processes share the event log.

Each worker heartbeats in ``workers`` and aims to own ``ceil(P / live)``
partitions. It claims a partition only when the partition's lease is free or
expired, renews its own leases well before they expire, and releases extras
when more workers are alive. A dead worker's leases expire after ``ttl`` and are
taken over. A worker treats a lease as its own only until ``expires_at -
margin``, so two workers never process the same partition at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from datetime import timedelta

import sqlalchemy as sa

from kunde.core.clock import utcnow
from kunde.core.ids import new_id
from kunde.store.database import Database
from kunde.store.sql import insert_ignore, upsert
from kunde.store.tables import partition_leases, workers

log = logging.getLogger("kunde.leases")


class LeaseManager:
    def __init__(
        self,
        db: Database,
        partitions: int,
        *,
        worker_id: str | None = None,
        ttl: float = 10.0,
        margin: float = 2.0,
    ) -> None:
        self.db = db
        self.partitions = partitions
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{new_id()[-6:]}"
        self.ttl = timedelta(seconds=ttl)
        self.margin = timedelta(seconds=margin)
        self._held: dict[int, object] = {}  # partition -> expires_at (datetime)

    def owned(self) -> frozenset[int]:
        now = utcnow()
        return frozenset(
            p for p, exp in self._held.items() if exp > now + self.margin  # type: ignore[operator]
        )

    async def start(self) -> None:
        now = utcnow()
        async with self.db.transaction() as uow:
            await uow.execute(
                insert_ignore(uow.dialect, partition_leases),
                [{"partition": p, "owner": None, "expires_at": None, "epoch": 0}
                 for p in range(self.partitions)],
            )
            await uow.execute(
                upsert(uow.dialect, workers, ["id"], ["heartbeat_at"]),
                {"id": self.worker_id, "host": socket.gethostname(), "pid": os.getpid(),
                 "started_at": now, "heartbeat_at": now},
            )
        await self.tick()

    async def tick(self) -> None:
        now = utcnow()
        expires = now + self.ttl
        async with self.db.transaction() as uow:
            await uow.execute(
                workers.update().where(workers.c.id == self.worker_id).values(heartbeat_at=now)
            )
            live = (await uow.execute(
                sa.select(sa.func.count()).select_from(workers)
                .where(workers.c.heartbeat_at > now - self.ttl)
            )).scalar_one()
            target = math.ceil(self.partitions / max(int(live), 1))
            # Renew what is still ours.
            rows = (await uow.execute(
                sa.select(partition_leases.c.partition).where(
                    partition_leases.c.owner == self.worker_id,
                    partition_leases.c.expires_at > now,
                ).order_by(partition_leases.c.partition)
            )).scalars().all()
            mine = list(rows)
            extras = mine[target:]
            keep = mine[:target]
            if keep:
                await uow.execute(
                    partition_leases.update()
                    .where(partition_leases.c.partition.in_(keep),
                           partition_leases.c.owner == self.worker_id)
                    .values(expires_at=expires)
                )
            if extras:
                await uow.execute(
                    partition_leases.update()
                    .where(partition_leases.c.partition.in_(extras),
                           partition_leases.c.owner == self.worker_id)
                    .values(owner=None, expires_at=None)
                )
            claimed: list[int] = []
            if len(keep) < target:
                # SKIP LOCKED: workers claiming at the same moment on PostgreSQL take
                # disjoint rows instead of queueing on the same lowest partitions and
                # losing the recheck (SQLite has one writer and ignores the clause).
                free = (await uow.execute(
                    sa.select(partition_leases.c.partition).where(
                        sa.or_(partition_leases.c.owner.is_(None),
                               partition_leases.c.expires_at <= now)
                    ).order_by(partition_leases.c.partition).limit(target - len(keep))
                    .with_for_update(skip_locked=True)
                )).scalars().all()
                for p in free:
                    result = await uow.execute(
                        partition_leases.update()
                        .where(
                            partition_leases.c.partition == p,
                            sa.or_(partition_leases.c.owner.is_(None),
                                   partition_leases.c.expires_at <= now),
                        )
                        .values(owner=self.worker_id, expires_at=expires,
                                epoch=partition_leases.c.epoch + 1)
                    )
                    if result.rowcount == 1:
                        claimed.append(p)
            await uow.execute(
                workers.delete().where(workers.c.heartbeat_at < now - self.ttl * 6)
            )
        self._held = {p: expires for p in [*keep, *claimed]}
        if claimed or extras:
            log.info("worker %s owns partitions %s", self.worker_id, sorted(self._held))

    async def run_forever(self, stop: asyncio.Event, every: float | None = None) -> None:
        interval = every or self.ttl.total_seconds() / 4
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("lease renewal failed")
                # Without renewals our leases lapse: stop treating them as ours.
                self._held = {}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    async def stop(self) -> None:
        self._held = {}
        async with self.db.transaction() as uow:
            await uow.execute(
                partition_leases.update()
                .where(partition_leases.c.owner == self.worker_id)
                .values(owner=None, expires_at=None)
            )
            await uow.execute(workers.delete().where(workers.c.id == self.worker_id))
