"""The event log: an append-only table that is also the outbox.

Appends happen inside the command's transaction (see `Database.transaction`).
On PostgreSQL a transaction-scoped advisory lock is taken just before the
insert, so positions become visible in the order they were assigned and a
consumer reading ``position > cursor`` can never skip a late-committing event
(docs/adr/0003-event-log-ordering.md). SQLite has a single writer, which gives
the same guarantee for free.

Payloads of events about a subject are sealed under the subject's data key:
shredding the key makes them unreadable wherever they were copied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from sqlalchemy.ext.asyncio import AsyncConnection

from kunde.core import jsonutil
from kunde.core.events import Event, partition_of
from kunde.privacy.vault import SubjectErased, Vault
from kunde.store.database import Database, UnitOfWork
from kunde.store.tables import events

APPEND_LOCK_KEY = 0x4B554E4445  # "KUNDE"

# Appends bypass SQLAlchemy's per-row parameter processing (a third of the cost of a
# 100-event batch): rows are built in the driver's own form. The column list is the
# `events` table's; `test_eventlog` reads rows back through SQLAlchemy to keep them in step.
_INSERT_SQLITE = (
    "INSERT INTO events (id, type, subject_id, partition, source, occurred_at, received_at,"
    " payload, encrypted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PG = (
    "INSERT INTO events (id, type, subject_id, partition, source, occurred_at, received_at,"
    " payload, encrypted) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)


def _sqlite_time(value: datetime) -> str:
    """The text form SQLAlchemy's SQLite DateTime stores (naive UTC, microseconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class EventLog:
    def __init__(self, db: Database, vault: Vault, partitions: int) -> None:
        self.db = db
        self.vault = vault
        self.partitions = partitions
        db.log = self

    async def append(self, uow: UnitOfWork) -> None:
        """Append the unit of work's events; called by `Database.transaction` before commit."""
        batch = uow.events
        subjects = {e.subject_id for e in batch if e.subject_id}
        keys = await self.vault.keys_for(uow, subjects, create=True) if subjects else {}
        rows: list[tuple[Any, ...]] = []
        sqlite = uow.dialect == "sqlite"
        for e in batch:
            e.partition = partition_of(e.subject_id, self.partitions)
            data = jsonutil.dumps(e.payload or {})
            encrypted = False
            if e.subject_id:
                key = keys.get(e.subject_id)
                if key is None:
                    raise SubjectErased(
                        "events about an erased customer are not stored",
                        subject_id=e.subject_id,
                    )
                data = Vault.seal(key, data, e.id.encode())
                encrypted = True
            occurred: datetime | str = e.occurred_at
            received: datetime | str = e.received_at
            if sqlite:
                occurred, received = _sqlite_time(e.occurred_at), _sqlite_time(e.received_at)
            rows.append((e.id, e.type, e.subject_id, e.partition, e.source, occurred, received,
                         data, encrypted))
        if sqlite:
            await uow.conn.exec_driver_sql(_INSERT_SQLITE, rows)
        else:
            await uow.execute(sa.select(sa.func.pg_advisory_xact_lock(APPEND_LOCK_KEY)))
            await uow.conn.exec_driver_sql(_INSERT_PG, rows)

    # -- reading ---------------------------------------------------------------
    async def read(
        self,
        conn: AsyncConnection,
        *,
        after: int = 0,
        partitions: Sequence[int] | None = None,
        cursors: Mapping[int, int] | None = None,
        subject_id: str | None = None,
        types: Sequence[str] | None = None,
        limit: int = 500,
    ) -> list[Event]:
        """Events after a position, oldest first, with payloads opened where keys exist.

        ``cursors`` maps partitions to the position already handled in each: only newer
        events of those partitions are read, so a partition far behind the others is
        never crowded out of the window by events they already handled.
        """
        q = sa.select(events).where(events.c.position > after)
        if cursors is not None:
            q = q.where(sa.or_(*(
                sa.and_(events.c.partition == p, events.c.position > pos)
                for p, pos in sorted(cursors.items())
            )))
        if partitions is not None:
            q = q.where(events.c.partition.in_(list(partitions)))
        if subject_id is not None:
            q = q.where(events.c.subject_id == subject_id)
        if types:
            q = q.where(events.c.type.in_(list(types)))
        rows = (await conn.execute(q.order_by(events.c.position).limit(limit))).all()
        return await self.decode(conn, rows)

    async def decode(self, conn: AsyncConnection, rows: Sequence[Any]) -> list[Event]:
        subjects = {r.subject_id for r in rows if r.encrypted and r.subject_id}
        uow = UnitOfWork(conn, self.db.dialect)
        keys = await self.vault.keys_for(uow, subjects, create=False) if subjects else {}
        out: list[Event] = []
        for r in rows:
            payload: dict[str, Any] | None
            erased = False
            if r.encrypted:
                key = keys.get(r.subject_id)
                try:
                    payload = (
                        jsonutil.loads(Vault.open_(key, r.payload, r.id.encode()))
                        if key else None
                    )
                except InvalidTag:
                    payload = None
                erased = payload is None
            else:
                payload = jsonutil.loads(r.payload)
            out.append(Event(
                id=r.id, type=r.type, subject_id=r.subject_id, source=r.source,
                occurred_at=r.occurred_at, received_at=r.received_at, payload=payload,
                position=r.position, partition=r.partition, erased=erased,
            ))
        return out

    async def head(self, conn: AsyncConnection) -> int:
        value = (await conn.execute(sa.select(sa.func.max(events.c.position)))).scalar()
        return int(value or 0)
