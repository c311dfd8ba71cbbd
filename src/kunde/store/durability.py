"""Start-up check that the database will keep what it acknowledged.

Kunde answers 200 only after a commit; that promise is worthless if the
database may lose committed transactions on power loss. The server refuses to
start on unsafe settings unless ``KUNDE_ALLOW_UNSAFE_DURABILITY=true``.
"""

from __future__ import annotations

import sqlalchemy as sa

from kunde.store.database import Database


async def durability_problems(db: Database) -> list[str]:
    problems: list[str] = []
    async with db.writer.connect() as conn:
        if db.dialect == "sqlite":
            sync = (await conn.execute(sa.text("PRAGMA synchronous"))).scalar()
            mode = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar()
            await conn.rollback()
            if int(sync or 0) < 2:
                problems.append(f"SQLite synchronous={sync} (needs FULL=2 or EXTRA=3)")
            if str(mode).lower() != "wal":
                problems.append(f"SQLite journal_mode={mode} (needs wal)")
            return problems
        for name, good in (
            ("fsync", {"on"}),
            ("synchronous_commit", {"on", "remote_write", "remote_apply"}),
            ("full_page_writes", {"on"}),
        ):
            value = (await conn.execute(sa.text(f"SHOW {name}"))).scalar()
            if str(value) not in good:
                problems.append(f"PostgreSQL {name}={value} (needs one of {sorted(good)})")
        await conn.rollback()
    return problems
