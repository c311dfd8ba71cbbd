"""``kunde import events FILE.jsonl``: same validation and de-duplication as the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from conftest import TEST_SECRET
from kunde.ingest.importer import import_file
from kunde.kernel import Kernel
from kunde.store.tables import events


def _write(path: Path) -> None:
    lines = [json.dumps({"type": "track", "event": "Order Completed", "userId": "u1",
                         "messageId": f"imp-{i}", "properties": {"order_id": f"o{i}",
                                                                  "total": 10}})
             for i in range(5)]
    lines.insert(2, '{"type": "track", "event": "x"}')  # no userId/anonymousId
    lines.append("not json")
    path.write_text("\n".join(lines) + "\n")


async def _count(kernel: Kernel) -> int:
    async with kernel.db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(events)
                                       .where(events.c.type == "ingest.track"))).scalar_one())


async def test_import_file_twice_stores_once(kernel: Kernel, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    _write(path)
    stats = await import_file(kernel, path, "legacy", "web", batch_size=2)
    assert (stats["stored"], stats["rejected"]) == (5, 2)
    assert "ingest.missing_identity" in stats["errors"][0]
    again = await import_file(kernel, path, "legacy", "web")
    assert (again["stored"], again["duplicates"]) == (0, 5)
    assert await _count(kernel) == 5


async def test_import_command(kernel: Kernel, database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    _write(path)
    env = {**os.environ, "KUNDE_ENV": "test", "KUNDE_DATABASE_URL": database_url,
           "KUNDE_DATA_DIR": str(tmp_path), "KUNDE_SECRET_KEY": TEST_SECRET}
    done = subprocess.run([sys.executable, "-m", "kunde", "import", "events", str(path),
                           "--source", "legacy-shop"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "stored 5" in done.stdout and "2 rejected" in done.stdout
    assert await _count(kernel) == 5
