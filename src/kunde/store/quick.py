"""Hot-path reads: a handful of indexed lookups without the async ORM layers.

A profile, a balance or a tracking page is a few primary-key lookups. Through
SQLAlchemy's asyncio layer each statement costs several thread hops (aiosqlite)
or greenlet switches plus statement building, about 0.5 ms apiece: more than the
lookups themselves. `QuickReads` keeps the statements as SQLAlchemy Core (so they
are written once, for both databases, with the columns' own type conversions)
but compiles each one once per dialect and runs it on the bare driver:

* **SQLite**: plain ``sqlite3`` connections, called synchronously on the event
  loop. An indexed lookup takes tens of microseconds, less than one hop to a
  worker thread; WAL lets these readers run beside the single writer. A small
  free-list gives each concurrent reader its own connection.
* **PostgreSQL**: a small ``asyncpg`` pool of its own; asyncpg prepares and
  caches each statement on the connection.

Reads in one ``session()`` share one snapshot. Failing to reach the database is
raised as `ConnectionError`/`TimeoutError`, which the web layer answers with a
fast 503 like any other database outage.
"""

from __future__ import annotations

import asyncio
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect as SADialect

from kunde.core import jsonutil

Row = dict[str, Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[str, ...]
    binders: tuple[Callable[[Any], Any] | None, ...]
    names: tuple[str, ...]
    loaders: tuple[Callable[[Any], Any] | None, ...]
    defaults: dict[str, Any]


class Query:
    """A Core SELECT with named `sa.bindparam`s, compiled once per dialect."""

    def __init__(self, statement: sa.Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, dialect: SADialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = self._compile(dialect)
        return found

    def _compile(self, dialect: SADialect) -> _Compiled:
        # Parameters with values in the statement itself (comparisons with constants)
        # are used when the caller does not name them; IN-lists (expanding) are not
        # supported: write `or_(col == a, col == b)` or join instead.
        c = self.statement.compile(dialect=dialect)
        order = tuple(c.positiontup or ())
        binders = tuple(c.binds[name].type._cached_bind_processor(dialect) for name in order)
        columns = list(self.statement.selected_columns)
        loaders = tuple(col.type._cached_result_processor(dialect, None) for col in columns)
        names = tuple(str(col.key) for col in columns)
        defaults = {name: value for name, value in c.params.items() if value is not None}
        return _Compiled(str(c), order, binders, names, loaders, defaults)


def _rows(compiled: _Compiled, raw: Any) -> list[Row]:
    names, loaders = compiled.names, compiled.loaders
    out = []
    for record in raw:
        out.append({n: (f(v) if f is not None else v)
                    for n, f, v in zip(names, loaders, tuple(record), strict=True)})
    return out


def _args(compiled: _Compiled, params: dict[str, Any]) -> list[Any]:
    out = []
    for n, b in zip(compiled.params, compiled.binders, strict=True):
        value = params[n] if n in params else compiled.defaults[n]
        out.append(b(value) if b is not None else value)
    return out


class QuickSession(ABC):
    """One snapshot of quick reads: SQLite, PostgreSQL or the Core fallback."""

    @abstractmethod
    async def fetch(self, query: Query, **params: Any) -> list[Row]: ...

    async def fetch_one(self, query: Query, **params: Any) -> Row | None:
        rows = await self.fetch(query, **params)
        return rows[0] if rows else None


class _SqliteSession(QuickSession):
    def __init__(self, conn: sqlite3.Connection, dialect: SADialect) -> None:
        self.conn = conn
        self.dialect = dialect

    async def fetch(self, query: Query, **params: Any) -> list[Row]:
        compiled = query.compiled(self.dialect)
        try:
            raw = self.conn.execute(compiled.sql, _args(compiled, params)).fetchall()
        except sqlite3.OperationalError as exc:
            raise TimeoutError(f"sqlite: {exc}") from exc
        return _rows(compiled, raw)


class _CoreSession(QuickSession):
    """Through SQLAlchemy's own connection: for an in-memory SQLite database, which a
    second connection could not see."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch(self, query: Query, **params: Any) -> list[Row]:
        result = await self.conn.execute(query.statement, params)
        return [dict(r._mapping) for r in result]


class _PgSession(QuickSession):
    def __init__(self, conn: Any, dialect: SADialect, timeout: float) -> None:
        self.conn = conn
        self.dialect = dialect
        self.timeout = timeout

    async def fetch(self, query: Query, **params: Any) -> list[Row]:
        compiled = query.compiled(self.dialect)
        raw = await _pg_call(self.conn.fetch(compiled.sql, *_args(compiled, params),
                                             timeout=self.timeout))
        return _rows(compiled, raw)


async def _pg_call(awaitable: Any) -> Any:
    import asyncpg  # type: ignore[import-untyped]

    try:
        return await awaitable
    except (asyncpg.exceptions.PostgresConnectionError,
            asyncpg.exceptions.InterfaceError, OSError) as exc:
        raise ConnectionError(f"postgresql: {exc}") from exc
    except asyncpg.exceptions.CannotConnectNowError as exc:  # pragma: no cover - recovery
        raise ConnectionError(f"postgresql: {exc}") from exc


async def _pg_codecs(conn: Any) -> None:
    # JSON columns come back decoded, as through SQLAlchemy's own asyncpg connections.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, schema="pg_catalog", format="text",
                                  encoder=lambda v: jsonutil.dumps(v).decode(),
                                  decoder=jsonutil.loads)


async def _no_reset(conn: Any) -> None:
    # Quick sessions change no session state (read-only, rolled back): the pool's
    # default reset would cost a round trip per request for nothing.
    return None


class QuickReads:
    """Per-process hot-path readers for one database URL (see the module docstring)."""

    def __init__(self, url: str, dialect: SADialect, *, timeout: float,
                 fallback: Callable[[], Any] | None = None, max_idle: int = 8) -> None:
        self.url = url
        self._fallback = fallback
        self.dialect = dialect
        self.timeout = timeout
        self._idle: list[sqlite3.Connection] = []
        self._max_idle = max_idle
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()

    # -- SQLite ------------------------------------------------------------
    def _sqlite_connect(self) -> sqlite3.Connection:
        path = self.url.split(":///", 1)[1].split("?", 1)[0]
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                               timeout=self.timeout)
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        conn.execute("PRAGMA query_only=ON")
        return conn

    @asynccontextmanager
    async def _sqlite_session(self) -> AsyncIterator[QuickSession]:
        conn = self._idle.pop() if self._idle else self._sqlite_connect()
        ok = False
        try:
            try:
                conn.execute("BEGIN")
            except sqlite3.OperationalError as exc:
                raise TimeoutError(f"sqlite: {exc}") from exc
            yield _SqliteSession(conn, self.dialect)
            ok = True
        finally:
            try:
                conn.execute("COMMIT" if ok else "ROLLBACK")
            except sqlite3.Error:
                conn.close()
            else:
                if len(self._idle) < self._max_idle:
                    self._idle.append(conn)
                else:
                    conn.close()

    def _memory(self) -> bool:
        path = self.url.split(":///", 1)[-1].split("?", 1)[0]
        return path in ("", ":memory:")

    @asynccontextmanager
    async def _core_session(self) -> AsyncIterator[QuickSession]:
        assert self._fallback is not None
        async with self._fallback() as conn:
            yield _CoreSession(conn)

    # -- PostgreSQL ----------------------------------------------------------
    async def _pg_pool(self) -> Any:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    import asyncpg

                    dsn = "postgresql://" + self.url.split("://", 1)[1]
                    self._pool = await _pg_call(asyncio.wait_for(asyncpg.create_pool(
                        dsn, min_size=1, max_size=4, timeout=self.timeout,
                        command_timeout=self.timeout, init=_pg_codecs, reset=_no_reset),
                        timeout=self.timeout))
        return self._pool

    @asynccontextmanager
    async def _pg_connection(self) -> AsyncIterator[Any]:
        pool = await self._pg_pool()
        try:
            conn = await asyncio.wait_for(pool.acquire(), timeout=self.timeout)
        except TimeoutError as exc:
            raise TimeoutError("postgresql: no connection for a quick read in time") from exc
        try:
            yield conn
        finally:
            await pool.release(conn)

    @asynccontextmanager
    async def _pg_session(self) -> AsyncIterator[QuickSession]:
        async with self._pg_connection() as conn:
            tx = conn.transaction(readonly=True, isolation="repeatable_read")
            await _pg_call(tx.start())
            try:
                yield _PgSession(conn, self.dialect, self.timeout)
            finally:
                await _pg_call(tx.rollback())

    # -- API -----------------------------------------------------------------
    async def fetch(self, query: Query, **params: Any) -> list[Row]:
        """One statement on its own (on PostgreSQL without BEGIN/ROLLBACK round trips)."""
        q: QuickSession
        if self.dialect.name == "sqlite":
            async with self.session() as q:
                return await q.fetch(query, **params)
        async with self._pg_connection() as conn:
            q = _PgSession(conn, self.dialect, self.timeout)
            return await q.fetch(query, **params)

    def session(self) -> Any:
        """``async with quick.session() as q: await q.fetch(QUERY, name=value)``."""
        if self.dialect.name == "sqlite":
            if self._memory() and self._fallback is not None:
                return self._core_session()
            return self._sqlite_session()
        return self._pg_session()

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
