"""An erasure killed half-way (SIGKILL inside the erasure transaction) resumes and completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.privacy.erasure import ErasureService
from kunde.privacy.suppression import SuppressionService

WORKER = textwrap.dedent("""
    import asyncio, sys
    from kunde.features import Feature
    from kunde.kernel import open_kernel
    from kunde.privacy.erasure import ErasureService
    from kunde.settings import load_settings

    async def main() -> None:
        settings = load_settings(environ={}, env="test", data_dir=sys.argv[2],
                                 database_url=sys.argv[3], secret_key=sys.argv[4],
                                 run_consumers=False)
        kernel = await open_kernel(settings, run_migrations=False)

        async def first(kernel, uow, ids):
            return {"rows": 1}

        async def stuck(kernel, uow, ids):
            print("erasing", flush=True)
            await asyncio.sleep(120)
            return {}

        svc = ErasureService(kernel, [Feature(name="first", erase=first),
                                      Feature(name="stuck", erase=stuck)])
        await svc.run(sys.argv[1])

    asyncio.run(main())
""")


async def test_killed_erasure_resumes(kernel: Kernel, tmp_path: Path) -> None:
    cid = new_id()
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("ingest.track", {"event": "x"}, subject_id=cid))
    svc = ErasureService(kernel, [])
    rid = await svc.request(cid, requested_by="staff:u1", channel="staff")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    s = kernel.settings
    proc = subprocess.Popen(
        [sys.executable, str(script), rid, s.data_dir, s.effective_database_url, s.secret_key],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        line = b""
        while time.monotonic() < deadline and b"erasing" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "died")
        assert b"erasing" in line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # The transaction died with the process: nothing is half-erased.
    assert (await svc.get(rid))["state"] == "pending"
    async with kernel.db.transaction() as uow:
        assert not await kernel.vault.is_shredded(uow, cid)
    assert await svc.resume_all() == [rid]
    row = await svc.get(rid)
    assert row["state"] == "done" and row["attempts"] == 1
    async with kernel.db.transaction() as uow:
        assert await kernel.vault.is_shredded(uow, cid)
    assert await kernel.service(SuppressionService).is_suppressed("customer_id", cid)
    assert await svc.resume_all() == []
