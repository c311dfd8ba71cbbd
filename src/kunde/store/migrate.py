"""Migrations: Alembic, one branch per feature, run with ``kunde migrate``.

Each feature owns a branch (``branch_labels=("<feature>",)``) that depends on
``core``; ``upgrade heads`` brings every branch up to date. A feature's first
revision creates its tables as ``tables.py`` defines them now (``create_tables``);
every later schema change is an explicit ``op.*`` revision on the feature's
branch whose steps are skipped where a new database already has them
(``migrate_ops``; docs/adr/0004-migrations-per-feature.md).
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from kunde.store.database import Database, normalise_url
from kunde.store.tables import metadata

# Modules whose import defines tables on the shared metadata, in dependency order.
TABLE_MODULES = [
    "kunde.store.tables",
    "kunde.privacy.tables",
    "kunde.access.tables",
    "kunde.profiles.tables",
    "kunde.ingest.tables",
    "kunde.messaging.tables",
    "kunde.commerce.tables",
    "kunde.fulfilment.tables",
    "kunde.loyalty.tables",
    "kunde.personalisation.tables",
    "kunde.service.tables",
]


def all_metadata() -> sa.MetaData:
    for name in TABLE_MODULES:
        importlib.import_module(name)
    return metadata


def create_tables(names: list[str]) -> None:
    """Create the named tables (with their indexes) from the shared metadata."""
    from alembic import op

    md = all_metadata()
    md.create_all(op.get_bind(), tables=[md.tables[n] for n in names])


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url))
    return cfg


def script_heads(url: str) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(url)).get_heads())


def _sqlite_foreign_keys(sync_conn: sa.Connection, on: bool) -> None:
    # SQLite ignores this pragma inside a transaction, so it goes to the driver's
    # connection directly: a statement through SQLAlchemy would begin one first.
    dbapi = sync_conn.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cursor.close()


async def upgrade(db: Database) -> None:
    """Bring the schema to the newest revision of every feature branch.

    On SQLite, Alembic's batch mode changes a table by copying it and dropping the
    original, which enforced foreign keys refuse while other tables' rows refer to it;
    so, as SQLite's documentation prescribes for such changes, foreign keys are off
    while the revisions run, and ``PRAGMA foreign_key_check`` must find nothing before
    they commit."""
    cfg = alembic_config(db.url)

    def _run(sync_conn: sa.Connection) -> None:
        cfg.attributes["connection"] = sync_conn
        sync_conn.info["migrating"] = True  # statements here may reshape keys (ADR 0015)
        try:
            command.upgrade(cfg, "heads")
            if db.dialect == "sqlite":
                broken = sync_conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"migrating left rows whose foreign key finds no row "
                                       f"(table, rowid, parent, fk): {broken[:10]}")
        finally:
            sync_conn.info.pop("migrating", None)

    async with db.writer.connect() as conn:
        if db.dialect == "postgresql":
            # Several processes may start at once: one migrates, the others wait.
            await conn.execute(sa.text("SELECT pg_advisory_lock(4242)"))
            await conn.commit()
        else:
            await conn.run_sync(_sqlite_foreign_keys, False)
        try:
            await conn.run_sync(_run)
            await conn.commit()
        finally:
            if db.dialect == "postgresql":
                await conn.execute(sa.text("SELECT pg_advisory_unlock(4242)"))
                await conn.commit()
            else:
                await conn.rollback()  # (after a failure) the pragma needs no transaction
                await conn.run_sync(_sqlite_foreign_keys, True)


async def current_heads(db: Database) -> set[str]:
    def _read(sync_conn: sa.Connection) -> set[str]:
        return set(MigrationContext.configure(sync_conn).get_current_heads())

    async with db.reader.connect() as conn:
        return await conn.run_sync(_read)


def _applied(url: str, current: set[str]) -> set[str]:
    """Every revision the database has, following down_revision and depends_on links."""
    script = ScriptDirectory.from_config(alembic_config(url))
    if not current:
        return set()
    return {r.revision for r in script.iterate_revisions(tuple(current), "base") if r}


async def is_current(db: Database) -> bool:
    current = await current_heads(db)
    heads = await asyncio.to_thread(script_heads, db.url)
    return heads <= await asyncio.to_thread(_applied, db.url, current)
