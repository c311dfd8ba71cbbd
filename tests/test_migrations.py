"""Migrations: the migrated schema is exactly what the tables modules declare."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from kunde.kernel import Kernel
from kunde.store import migrate


async def test_schema_matches_tables_modules(kernel: Kernel) -> None:
    metadata = migrate.all_metadata()

    def diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": False})
        return list(compare_metadata(ctx, metadata))

    async with kernel.db.reader.connect() as conn:
        changes = await conn.run_sync(diff)
    # Anything here means a tables.py change without a migration revision.
    assert changes == []


async def test_every_feature_branch_is_applied(kernel: Kernel) -> None:
    heads = migrate.script_heads(kernel.db.url)
    assert "access_0001" in heads or any(h.startswith("access_") for h in heads)
    assert await migrate.is_current(kernel.db)


async def test_sqlite_enforces_foreign_keys_again_after_migrating(kernel: Kernel) -> None:
    # upgrade() turns them off while the revisions run (batch mode drops and recreates
    # tables that other tables refer to); the writer's connection must get them back.
    if kernel.db.dialect != "sqlite":
        return
    await migrate.upgrade(kernel.db)
    async with kernel.db.writer.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
