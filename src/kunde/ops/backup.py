"""Online, consistent backups and restores, on SQLite and PostgreSQL.

* SQLite: the SQLite online backup API copies the database in one step under a
  read snapshot; WAL lets writers carry on meanwhile.
* PostgreSQL: a repeatable-read transaction exports its snapshot and notes the
  newest event position; ``pg_dump --snapshot`` then dumps exactly that state
  (custom format) while writes continue. ``pg_restore`` brings it back.

Every backup records its *backup point*: the newest event position it holds.
Everything acknowledged before the backup started is in it.

After a restore the schema is migrated to the running version and the privacy
feature's erasure log (kept outside the database) is re-applied, so a person
erased after the backup was taken does not come back.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kunde.core.errors import ConfigurationError, KundeError
from kunde.settings import Settings


@dataclass(frozen=True)
class BackupInfo:
    path: str
    backend: str
    bytes: int
    position: int
    seconds: float


class BackupFailed(KundeError):
    status = 500
    code = "ops.backup_failed"


def _sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1].split("?", 1)[0])


def libpq_url(url: str) -> str:
    """The database URL as pg_dump/pg_restore understand it (no SQLAlchemy driver)."""
    scheme, rest = url.split("://", 1)
    if not scheme.startswith("postgres"):
        raise ConfigurationError(f"not a PostgreSQL URL: {scheme}://…")
    return "postgresql://" + rest


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ConfigurationError(
            f"{tool} is not installed; install the PostgreSQL client tools "
            "(Debian: apt-get install postgresql-client) matching the server's major version")
    return path


def _max_position(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()
    return int(row[0])


def backup_sqlite(db_file: Path, target: Path) -> BackupInfo:
    started = time.perf_counter()
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst)  # pages=-1: one step, one consistent snapshot
        dst.execute("PRAGMA journal_mode=DELETE")
        position = _max_position(dst)
    finally:
        dst.close()
        src.close()
    os.replace(partial, target)
    return BackupInfo(str(target), "sqlite", target.stat().st_size, position,
                      time.perf_counter() - started)


async def backup_postgres(url: str, target: Path) -> int:
    """Dump the database to ``target``; returns the backup point (newest event position)."""
    import asyncpg  # type: ignore[import-untyped]

    pg_dump = _require("pg_dump")
    dsn = libpq_url(url)
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction(isolation="repeatable_read", readonly=True)
        await tx.start()
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        position = int(await conn.fetchval("SELECT COALESCE(MAX(position), 0) FROM events"))
        partial = target.with_name(target.name + ".partial")
        proc = await asyncio.create_subprocess_exec(
            pg_dump, "--format=custom", "--no-owner", f"--snapshot={snapshot}",
            f"--file={partial}", f"--dbname={dsn}",
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        _, stderr = await proc.communicate()
        await tx.rollback()
    finally:
        await conn.close()
    if proc.returncode != 0:
        raise BackupFailed(f"pg_dump failed: {stderr.decode(errors='replace')[:2000]}")
    os.replace(partial, target)
    return position


def backup(settings: Settings, target: Path) -> BackupInfo:
    """Write a consistent backup of the configured database to ``target``."""
    url = settings.effective_database_url
    target.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        db_file = _sqlite_path(url)
        if not db_file.is_file():
            raise ConfigurationError(f"no database at {db_file}")
        return backup_sqlite(db_file, target)
    started = time.perf_counter()
    position = asyncio.run(backup_postgres(url, target))
    return BackupInfo(str(target), "postgresql", target.stat().st_size, position,
                      time.perf_counter() - started)


def restore_files(settings: Settings, source: Path) -> None:
    """Replace the configured database's contents with the backup (servers must be stopped)."""
    if not source.is_file():
        raise ConfigurationError(f"no backup at {source}")
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        db_file = _sqlite_path(url)
        db_file.parent.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(db_file, timeout=30)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
            src.close()
        return
    result = subprocess.run(  # noqa: S603 - fixed tool, arguments are not shell-parsed
        [_require("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
         f"--dbname={libpq_url(url)}", str(source)],
        capture_output=True, check=False,
    )
    if result.returncode != 0:
        raise BackupFailed(f"pg_restore failed: {result.stderr.decode(errors='replace')[:2000]}")


async def after_restore(kernel: object) -> int:
    """Re-apply erasures logged since the backup; returns how many had to be re-applied."""
    try:
        from kunde.privacy.erasure import reapply_erasures
    except ImportError:  # a build without the privacy feature has nothing to re-apply
        return 0
    return int(await reapply_erasures(kernel))  # type: ignore[arg-type]
