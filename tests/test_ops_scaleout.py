"""Scale-out with real processes: workers share partitions on PostgreSQL; kill -9 and join.

Each worker process runs the same `kunde.runtime.Background` as ``kunde worker`` with one
probe consumer that counts its effects per event id. After a worker is killed with
SIGKILL and another joins, every event must have exactly one effect.

Run as a script (``python tests/test_ops_scaleout.py DB_URL``), this file is that worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

PROBE_TYPE = "ops.scaleout_probe"
TABLE = "ops_probe_effects"
PARTITIONS = 8


# -- the worker process ------------------------------------------------------------------------

async def _worker(url: str, data_dir: str) -> None:
    from kunde.core.events import Event
    from kunde.features import Feature
    from kunde.kernel import Kernel, open_kernel
    from kunde.runtime import Background
    from kunde.settings import load_settings
    from kunde.store.consumers import Consumer
    from kunde.store.database import UnitOfWork
    from kunde.store.leases import LeaseManager

    settings = load_settings(environ={}, env="test", database_url=url, data_dir=data_dir,
                             partitions=PARTITIONS, log_json=False)
    kernel = await open_kernel(settings, run_migrations=False)
    me = str(os.getpid())

    async def count(uow: UnitOfWork, events: Sequence[Event]) -> None:
        await uow.execute(sa.text(
            f"INSERT INTO {TABLE} (event_id, applied, worker) VALUES (:id, 1, :w) "  # noqa: S608
            f"ON CONFLICT (event_id) DO UPDATE SET applied = {TABLE}.applied + 1"),
            [{"id": e.id, "w": me} for e in events])

    def consumers(_: Kernel) -> list[Consumer]:
        return [Consumer("ops.scaleout_probe", count, frozenset({PROBE_TYPE}), batch_size=100)]

    background = Background(kernel, [Feature(name="probe", consumers=consumers)])
    # Short leases so the test sees a takeover in seconds (production: 10 s).
    background.leases = LeaseManager(kernel.db, PARTITIONS, ttl=2.0, margin=0.5)
    background.runner.owned = background.leases.owned
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, background.request_stop)
    await background.start()
    print("ready", flush=True)
    await background.wait()
    await background.stop()


# -- the test ----------------------------------------------------------------------------------

def _start_worker(url: str, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"{name}.log").open("wb")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, __file__, url, str(tmp_path)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def _wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        if b"ready" in log.read_bytes():
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker did not start: {log.read_text()}")


async def _produce(kernel: object, subjects: list[str], batches: int) -> int:
    from kunde.core.events import Event
    from kunde.kernel import Kernel

    assert isinstance(kernel, Kernel)
    n = 0
    for b in range(batches):
        async with kernel.db.transaction() as uow:
            for s in subjects[b % 4::4]:
                uow.emit(Event.new(PROBE_TYPE, {"n": n}, subject_id=s, source="test"))
                n += 1
        await asyncio.sleep(0.02)
    return n


async def _effects(kernel: object) -> tuple[int, int, int]:
    from kunde.kernel import Kernel

    assert isinstance(kernel, Kernel)
    async with kernel.db.read() as conn:
        row = (await conn.execute(sa.text(
            f"SELECT COUNT(*), COALESCE(MAX(applied), 0), COUNT(DISTINCT worker) "  # noqa: S608
            f"FROM {TABLE}"))).one()
    return int(row[0]), int(row[1]), int(row[2])


async def test_workers_rebalance_on_kill_and_join_without_loss_or_double_effects(
    postgres_url: str, tmp_path: Path
) -> None:
    from conftest import _truncate_all
    from conftest import test_settings as make_settings
    from kunde.core.ids import new_id
    from kunde.kernel import close_kernel, open_kernel

    kernel = await open_kernel(make_settings(postgres_url, tmp_path, partitions=PARTITIONS),
                               run_migrations=False)
    async with kernel.db.transaction() as uow:
        await uow.execute(sa.text(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (event_id VARCHAR(36) PRIMARY KEY, "
            "applied INTEGER NOT NULL, worker VARCHAR(32) NOT NULL)"))
    workers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        subjects = [new_id() for _ in range(32)]
        for name in ("a", "b"):
            workers[name] = _start_worker(postgres_url, tmp_path, name)
        for name in ("a", "b"):
            await asyncio.to_thread(_wait_ready, workers[name], tmp_path / f"{name}.log")
        total = await _produce(kernel, subjects, 40)
        workers["a"].send_signal(signal.SIGKILL)  # no goodbye: its leases must expire
        workers["a"].wait()
        total += await _produce(kernel, subjects, 40)
        workers["c"] = _start_worker(postgres_url, tmp_path, "c")
        await asyncio.to_thread(_wait_ready, workers["c"], tmp_path / "c.log")
        total += await _produce(kernel, subjects, 40)

        deadline = time.monotonic() + 90  # generous: the CI machine may be busy
        while (await _effects(kernel))[0] < total and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        seen, most, by = await _effects(kernel)
        logs = "\n".join((tmp_path / f"{n}.log").read_text()[-1500:] for n in workers)
        assert seen == total, f"{total - seen} events without effect\n{logs}"
        assert most == 1, "an event had its effect twice"
        assert by >= 2
        async with kernel.db.read() as conn:
            owners = set((await conn.execute(sa.text(
                "SELECT owner FROM partition_leases WHERE expires_at > now()"))).scalars())
        assert owners and all(o and o.split("-")[-2] != str(workers["a"].pid) for o in owners)
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in workers.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        async with kernel.db.transaction() as uow:
            await uow.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
        await _truncate_all(kernel)
        await close_kernel(kernel)


if __name__ == "__main__":
    asyncio.run(_worker(sys.argv[1], sys.argv[2]))
