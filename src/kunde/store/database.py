"""Engines and the unit of work.

`Database.transaction()` is the only way to write: it yields a `UnitOfWork`
whose events are appended to the event log in the same transaction as the
state change, just before commit. Callbacks registered with
`UnitOfWork.after_commit` run only once the commit succeeded.

SQLite runs with two engines: a single writer connection (``BEGIN IMMEDIATE``,
so a transaction never has to upgrade a read lock and deadlock) and a pool of
readers that WAL lets run beside it. Transactions waiting for that writer are served
by the load class of the work they belong to, critical first (`kunde.store.priority`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from kunde.core.events import Event
from kunde.store.priority import PriorityGate
from kunde.store.quick import QuickReads
from kunde.store.signal import Signal

if TYPE_CHECKING:
    from kunde.store.eventlog import EventLog

Dialect = Literal["sqlite", "postgresql"]


def normalise_url(url: str) -> str:
    """Accept the URLs people type and pick the async driver Kunde uses."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.split(":///", 1)[1]
    return url


class UnitOfWork:
    """One database transaction plus the events and after-commit callbacks it collects."""

    def __init__(self, conn: AsyncConnection, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect: Dialect = dialect
        self.events: list[Event] = []
        self._after: list[Callable[[], Any]] = []

    def emit(self, event: Event) -> Event:
        self.events.append(event)
        return event

    def after_commit(self, callback: Callable[[], Any]) -> None:
        self._after.append(callback)

    async def execute(self, statement: Any, params: Any = None) -> sa.CursorResult[Any]:
        result: sa.CursorResult[Any] = await self.conn.execute(statement, params)
        return result


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        timeout: float = 5.0,
        echo: bool = False,
    ) -> None:
        self.url = normalise_url(url)
        self.timeout = timeout
        self.dialect: Dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        self.log: EventLog | None = None
        self.committed = Signal()
        # SQLite's one writer goes to the most important waiting transaction first.
        self.gate = PriorityGate() if self.url.startswith("sqlite") else None
        if self.dialect == "sqlite":
            self._ensure_sqlite_dir()
            self.writer = self._sqlite_engine(immediate=True, pool_size=1, echo=echo)
            self.reader = self._sqlite_engine(immediate=False, pool_size=4, echo=echo)
        else:
            self.writer = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=timeout,
                echo=echo,
                connect_args={"timeout": timeout, "command_timeout": max(timeout * 6, 30)},
            )
            self.reader = self.writer
        self.quick = QuickReads(self.url, self.writer.dialect, timeout=timeout,
                                fallback=self.read)

    # -- engines -----------------------------------------------------------
    def _ensure_sqlite_dir(self) -> None:
        path = self.url.split(":///", 1)[1].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def _sqlite_engine(self, *, immediate: bool, pool_size: int, echo: bool) -> AsyncEngine:
        engine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=self.timeout * 6,
            echo=echo,
        )
        busy_ms = int(self.timeout * 1000)

        @sa_event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let us issue BEGIN ourselves (see SQLAlchemy's pysqlite notes).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.close()

        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @sa_event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return engine

    # -- transactions ------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        """Run one command: state changes and emitted events commit together or not at all."""
        gate = self.gate.hold() if self.gate is not None else contextlib.nullcontext()
        async with gate, self.writer.connect() as conn, conn.begin():
            uow = UnitOfWork(conn, self.dialect)
            yield uow
            if uow.events:
                if self.log is None:
                    raise RuntimeError("events emitted but no event log is attached")
                await self.log.append(uow)
        if uow.events:
            self.committed.notify()
        for callback in uow._after:
            result = callback()
            if asyncio.iscoroutine(result):
                await result

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection inside a transaction (a consistent snapshot)."""
        async with self.reader.connect() as conn, conn.begin():
            yield conn

    async def dispose(self) -> None:
        await self.quick.close()
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()

    async def ping(self) -> None:
        async with self.reader.connect() as conn:
            await asyncio.wait_for(conn.execute(sa.text("SELECT 1")), timeout=self.timeout)
