"""Backup under write load and restore: nothing acknowledged before the backup is missing."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from conftest import TEST_SECRET, _pg_exec, _with_db
from conftest import test_settings as make_settings
from kunde.core.events import Event
from kunde.kernel import Kernel, close_kernel, open_kernel
from kunde.ops.backup import after_restore, backup, restore_files
from kunde.ops.cli import register
from kunde.settings import Settings
from kunde.store.tables import events


async def _write_until(kernel: Kernel, stop: asyncio.Event,
                       acked: list[tuple[float, str]]) -> None:
    n = 0
    while not stop.is_set():
        ids = []
        async with kernel.db.transaction() as uow:
            for _ in range(5):
                ids.append(uow.emit(Event.new("ops.backup_probe", {"n": n}, source="test")).id)
                n += 1
        at = time.monotonic()  # acknowledged: the commit returned
        acked.extend((at, i) for i in ids)
        await asyncio.sleep(0)


async def _stored_ids(settings: Settings) -> set[str]:
    kernel = await open_kernel(settings)
    try:
        again = await after_restore(kernel)
        assert again == 0
        async with kernel.db.read() as conn:
            return set((await conn.execute(sa.select(events.c.id))).scalars())
    finally:
        await close_kernel(kernel)


async def test_backup_under_load_then_restore_keeps_every_acknowledged_event(
    kernel: Kernel, settings: Settings, backend: str, tmp_path: Path
) -> None:
    stop = asyncio.Event()
    acked: list[tuple[float, str]] = []
    writer = asyncio.create_task(_write_until(kernel, stop, acked))
    while len(acked) < 200:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    info = await asyncio.to_thread(backup, settings, tmp_path / "kunde.backup")
    finished = time.monotonic()
    while len(acked) < len([a for a in acked if a[0] <= finished]) + 50:
        await asyncio.sleep(0.01)  # writes carry on after the backup, too
    stop.set()
    await writer
    before = {i for at, i in acked if at < started}
    after = {i for at, i in acked if at > finished}
    assert info.position >= len(before) and info.bytes > 0

    if backend == "postgres":
        name = f"kunde_r_{uuid.uuid4().hex[:10]}"
        await _pg_exec(f'CREATE DATABASE "{name}"')
        target_url = _with_db(settings.effective_database_url.replace("+asyncpg", ""), name)
    else:
        target_url = f"sqlite+aiosqlite:///{tmp_path / 'restored' / 'kunde.db'}"
    target = make_settings(target_url, tmp_path / "restored")
    try:
        await asyncio.to_thread(restore_files, target, Path(info.path))
        restored = await _stored_ids(target)
    finally:
        if backend == "postgres":
            await _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert before <= restored, f"{len(before - restored)} acknowledged events missing"
    assert not (after & restored), "events written after the backup finished cannot be in it"
    assert len(restored) == info.position  # one writer: positions are dense


def test_backup_and_restore_commands(tmp_path: Path, sqlite_template: Path) -> None:
    db = tmp_path / "kunde.db"
    db.write_bytes(sqlite_template.read_bytes())
    env = {"KUNDE_ENV": "test", "KUNDE_DATA_DIR": str(tmp_path),
           "KUNDE_SECRET_KEY": TEST_SECRET, "KUNDE_DATABASE_URL": f"sqlite:///{db}"}
    app = typer.Typer()
    register(app)
    runner = CliRunner(env=env)
    file = tmp_path / "backups" / "k.db"
    done = runner.invoke(app, ["backup", str(file)])
    assert done.exit_code == 0, done.output
    assert "events up to position" in done.output and file.is_file()
    assert runner.invoke(app, ["restore", str(file)]).exit_code == 2
    done = runner.invoke(app, ["restore", str(file), "--yes"])
    assert done.exit_code == 0, done.output
    assert "erasures re-applied: 0" in done.output
