"""The commands of docs/privacy.md, run as an operator would: `kunde audit verify` (and its
exit code after tampering), `kunde keys rotate-master`, `kunde privacy ropa|export|erase`."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.privacy.audit import AuditService
from kunde.privacy.tables import audit_log, subject_keys

TEST_SECRET = "test-secret-key-0123456789abcdef0123456789"


def kunde(kernel: Kernel, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "KUNDE_ENV": "test", "KUNDE_DATA_DIR": kernel.settings.data_dir,
            "KUNDE_DATABASE_URL": kernel.settings.effective_database_url,
            "KUNDE_SECRET_KEY": TEST_SECRET, "KUNDE_LOG_JSON": "false", **env}
    return subprocess.run([sys.executable, "-m", "kunde", *args], env=full, text=True,
                          capture_output=True, timeout=120, check=False)


@pytest.fixture(autouse=True)
def _sqlite_only(backend: str) -> None:
    # Each command is a process start; the commands do not depend on the backend, whose
    # code paths the in-process tests cover on both databases.
    if backend != "sqlite":
        pytest.skip("CLI commands run once, on SQLite")


@pytest.fixture
async def audited(kernel: Kernel) -> Kernel:
    for i in range(3):
        async with kernel.db.transaction() as uow:
            await kernel.service(AuditService).record(uow, "staff:u1", "profiles.viewed",
                                                      f"c{i}", {})
    return kernel


async def test_audit_verify_passes_then_detects_tampering(audited: Kernel) -> None:
    ok = kunde(audited, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    assert "3 entries verified" in ok.stdout
    async with audited.db.transaction() as uow:
        await uow.execute(audit_log.update().where(audit_log.c.seq == 2)
                          .values(action="profiles.nothing_to_see"))
    bad = kunde(audited, "audit", "verify")
    assert bad.returncode == 1 and "entry 2" in bad.stderr


async def test_rotate_master_rewraps_keys_and_old_data_stays_readable(kernel: Kernel) -> None:
    cid = new_id()
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("ingest.track", {"event": "x", "note": "kept"}, subject_id=cid))
    new_key = base64.b64encode(os.urandom(32)).decode()
    r = kunde(kernel, "keys", "rotate-master", KUNDE_NEW_MASTER_KEY=new_key)
    assert r.returncode == 0, r.stderr
    async with kernel.db.read() as conn:
        ids = {row.master_key_id for row in await conn.execute(sa.select(subject_keys))}
    assert len(ids) == 1 and ids != {kernel.vault._current_id}
    # A process started with the new key reads what the old key sealed.
    erase = kunde(kernel, "privacy", "export", cid, "--out",
                  str(Path(kernel.settings.data_dir) / "x.json"), KUNDE_MASTER_KEY=new_key)
    assert erase.returncode == 0, erase.stderr
    assert b"kept" in (Path(kernel.settings.data_dir) / "x.json").read_bytes()
    audit = await kernel.service(AuditService).search(action="keys.master_rotated")
    assert audit and audit[0]["details"]["keys_rewrapped"] >= 2


async def test_ropa_and_erase_commands(kernel: Kernel) -> None:
    ropa = kunde(kernel, "privacy", "ropa")
    assert ropa.returncode == 0 and "Record of processing activities" in ropa.stdout
    assert "Retention: 3653 days" in ropa.stdout
    cid = new_id()
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("ingest.track", {"event": "x"}, subject_id=cid))
    erased = kunde(kernel, "privacy", "erase", cid)
    assert erased.returncode == 0, erased.stderr
    assert '"keys_shredded": 1' in erased.stdout
