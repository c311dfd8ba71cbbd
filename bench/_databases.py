"""Run a benchmark on a scratch SQLite file and, when configured, a scratch PostgreSQL database.

``KUNDE_BENCH_POSTGRES_URL`` names a PostgreSQL server (any database on it); a fresh
database is created for the run and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Run = Callable[[str, Path], Awaitable[dict[str, Any]]]


async def pg_scratch(admin_url: str) -> tuple[str, str]:
    """Create an empty database; returns (its URL, its name)."""
    import asyncpg

    name = f"kunde_bench_{uuid.uuid4().hex[:8]}"
    dsn = admin_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return dsn.rsplit("/", 1)[0] + "/" + name, name


async def pg_drop(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def on_each_database(prefix: str, run: Run) -> dict[str, Any]:
    """``run(database_url, data_dir)`` on SQLite, then on PostgreSQL when configured."""
    out: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix=f"kunde-bench-{prefix}-"))
    out["sqlite"] = asyncio.run(run(f"sqlite+aiosqlite:///{tmp / 'k.db'}", tmp))
    admin = os.environ.get("KUNDE_BENCH_POSTGRES_URL")
    if admin:
        url, name = asyncio.run(pg_scratch(admin))
        try:
            out["postgresql"] = asyncio.run(
                run(url, Path(tempfile.mkdtemp(prefix=f"kunde-bench-{prefix}-pg-"))))
        finally:
            asyncio.run(pg_drop(admin, name))
    return out
