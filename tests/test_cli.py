"""The `kunde` command, driven non-interactively as scripts and operators do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TEST_SECRET


def kunde(tmp_path: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "KUNDE_ENV": "test", "KUNDE_DATA_DIR": str(tmp_path),
                "KUNDE_SECRET_KEY": TEST_SECRET, "KUNDE_LOG_JSON": "false", **(env or {})}
    return subprocess.run([sys.executable, "-m", "kunde", *args], env=full_env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    assert kunde(tmp_path, "migrate").returncode == 0
    return tmp_path


def test_help_explains_every_command(tmp_path: Path) -> None:
    out = kunde(tmp_path, "--help").stdout
    for command in ("serve", "worker", "migrate", "demo", "keys", "sources", "users"):
        assert command in out


def test_keys_create_prints_the_key_once(data: Path) -> None:
    r = kunde(data, "keys", "create", "--name", "shop", "--scopes", "profiles:read,loyalty:*")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert key.startswith("kk_") and len(key) > 40
    assert "only time" in r.stderr
    bad = kunde(data, "keys", "create", "--name", "x", "--scopes", "nonsense")
    assert bad.returncode == 1 and "unknown scopes" in bad.stderr


def test_sources_create_prints_a_write_key(data: Path) -> None:
    r = kunde(data, "sources", "create", "webshop", "--channel", "web")
    assert r.returncode == 0 and r.stdout.strip().startswith("wk_")
    again = kunde(data, "sources", "create", "webshop")
    assert again.returncode == 1 and "exists" in again.stderr


def test_users_create_reads_the_password_from_the_environment(data: Path) -> None:
    missing = kunde(data, "users", "create", "--email", "a@b.c", "--role", "agent")
    assert missing.returncode == 2 and "KUNDE_NEW_PASSWORD" in missing.stderr
    r = kunde(data, "users", "create", "--email", "a@b.c", "--role", "agent",
              env={"KUNDE_NEW_PASSWORD": "long-enough-password"})
    assert r.returncode == 0 and "created agent a@b.c" in r.stdout


def test_consumers_lag_and_replay(data: Path) -> None:
    r = kunde(data, "consumers", "lag")
    assert r.returncode == 0 and "consumer" in r.stdout


def test_bad_configuration_says_what_to_do(tmp_path: Path) -> None:
    r = kunde(tmp_path, "migrate", env={"KUNDE_ENV": "prod"})
    assert r.returncode == 2 and "KUNDE_MASTER_KEY" in r.stderr and "KUNDE_ENV=dev" in r.stderr
