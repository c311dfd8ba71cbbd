"""Settings: typed, validated at start, development secrets refused outside dev."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from kunde.core.errors import ConfigurationError
from kunde.kernel import open_kernel
from kunde.settings import load_settings

GOOD_KEY = base64.b64encode(os.urandom(32)).decode()


def test_defaults_are_embedded_sqlite_in_dev() -> None:
    s = load_settings(environ={})
    assert s.env == "dev"
    assert s.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert s.effective_database_url.endswith("kunde-data/kunde.db")


def test_environment_variables_are_typed() -> None:
    s = load_settings(environ={"KUNDE_PORT": "9001", "KUNDE_RUN_CONSUMERS": "false",
                               "KUNDE_PARTITIONS": "32"})
    assert (s.port, s.run_consumers, s.partitions) == (9001, False, 32)


def test_bad_values_are_refused_clearly() -> None:
    with pytest.raises(ConfigurationError, match="port"):
        load_settings(environ={"KUNDE_PORT": "eighty"})
    with pytest.raises(ConfigurationError, match="PARTITIONS"):
        load_settings(environ={"KUNDE_PARTITIONS": "0"})
    with pytest.raises(ConfigurationError, match="32 bytes"):
        load_settings(environ={"KUNDE_MASTER_KEY": base64.b64encode(b"short").decode()})


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings(environ={"KUNDE_ENV": "prod"})
    assert "KUNDE_SECRET_KEY" in str(err.value) and "KUNDE_MASTER_KEY" in str(err.value)
    s = load_settings(environ={"KUNDE_ENV": "prod", "KUNDE_SECRET_KEY": "x" * 40,
                               "KUNDE_MASTER_KEY": GOOD_KEY})
    assert s.env == "prod"


def test_config_file_then_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "kunde.toml"
    cfg.write_text('port = 7000\npartitions = 8\n')
    s = load_settings(environ={"KUNDE_CONFIG_FILE": str(cfg), "KUNDE_PORT": "7001"})
    assert (s.port, s.partitions) == (7001, 8)
    cfg.write_text('colour = "blue"\n')
    with pytest.raises(ConfigurationError, match="unknown settings"):
        load_settings(environ={"KUNDE_CONFIG_FILE": str(cfg)})


async def test_unsafe_postgres_durability_is_refused(backend: str, settings: object,
                                                     database_url: str) -> None:
    if backend != "postgres":
        pytest.skip("PostgreSQL durability settings")
    from kunde.settings import Settings

    assert isinstance(settings, Settings)
    import asyncpg

    name = database_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        with pytest.raises(ConfigurationError, match="synchronous_commit"):
            await open_kernel(settings, run_migrations=False)
        unsafe_ok = load_settings(environ={}, env="test", database_url=database_url,
                                  allow_unsafe_durability=True)
        k = await open_kernel(unsafe_ok, run_migrations=False)
        await k.db.dispose()
    finally:
        await conn.execute(f'ALTER DATABASE "{name}" RESET synchronous_commit')
        await conn.close()


async def test_sqlite_runs_wal_with_full_sync(backend: str, settings: object) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite pragmas")
    from kunde.settings import Settings
    from kunde.store.durability import durability_problems

    assert isinstance(settings, Settings)
    k = await open_kernel(settings, run_migrations=False)
    try:
        assert await durability_problems(k.db) == []
        async with k.db.read() as conn:
            assert (await conn.execute(sa.text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await k.db.dispose()
