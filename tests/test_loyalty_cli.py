"""``kunde loyalty apply``: validated, line-numbered errors, dry-run diff, then apply."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TEST_SECRET
from test_loyalty_engine import EXAMPLE


def kunde(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUNDE_ENV": "test", "KUNDE_DATA_DIR": str(tmp_path),
           "KUNDE_SECRET_KEY": TEST_SECRET, "KUNDE_LOG_JSON": "false",
           "KUNDE_DATABASE_URL": database_url, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "kunde", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_apply_programme_file(tmp_path: Path, database_url: str, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the command is the same on both databases; the service is tested on both")
    bad = tmp_path / "bad.yaml"
    bad.write_text("points_name: Stars\nearn_rules:\n  - id: a\n    event: commerce.order_paid\n"
                   "    points: many\n")
    r = kunde(tmp_path, database_url, "loyalty", "apply", str(bad))
    assert r.returncode == 1
    assert f"{bad}:5" in r.stderr and "$.earn_rules[0].points" in r.stderr

    r = kunde(tmp_path, database_url, "loyalty", "apply", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert "+ rewards.tote" in r.stdout and "applied programme version 1" in r.stdout
