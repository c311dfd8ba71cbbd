"""Scale-out: how many more events per second do two `kunde worker` processes handle?

One PostgreSQL database is seeded with ``BENCH_EVENTS`` ingested track events (with
consumers off), then copied (``CREATE DATABASE … TEMPLATE``) so every run starts from
the same backlog. For M = 1 and M = 2 workers on their own copy, the run starts M real
``kunde worker`` processes and polls the consumers' lag; the rate is the event
deliveries handled (the drop of the summed lag of every consumer) divided by the time
from the first delivery to an empty backlog, so process start-up is not counted.

Target: two workers at least 1.6 times one. The machine has two cores, and PostgreSQL and this
script run on them too; the report gives the load average beside the figures.

    python -m bench.scale_out            # BENCH_EVENTS=80000; LONG, run by name
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench._servers import PG_URL, kill_group, kunde_env, temp_dir

# A second worker takes its share of the partitions at the first worker's next lease
# renewal (every ttl/4 = 2.5 s) and its own next tick: up to about 5 s. The backlog
# must take much longer than that to drain, or the run measures one worker twice.
EVENTS = int(os.environ.get("BENCH_EVENTS", "80000"))
LONG = True  # minutes; `make bench` runs it only by name


async def _admin(sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _url(name: str) -> str:
    return PG_URL.rsplit("/", 1)[0] + f"/{name}"


async def _seed(url: str, data_dir: str) -> None:
    from kunde.ingest.models import normalise
    from kunde.ingest.service import IngestService
    from kunde.kernel import close_kernel, open_kernel
    from kunde.settings import load_settings

    kernel = await open_kernel(load_settings(environ={}, env="dev", data_dir=data_dir,
                                             database_url=url, run_consumers=False))
    try:
        service = kernel.service(IngestService)
        now = kernel.clock.now()
        for n in range(EVENTS // 100):
            await service.accept("bench", "web", [normalise({
                "type": "track", "event": "Product Viewed", "messageId": f"s-{n}-{i}",
                "anonymousId": f"anon-{(n * 100 + i) % 3000}",
                "timestamp": "2026-11-23T10:00:00Z",
                "properties": {"sku": f"SKU-{i % 50}", "price": 19.99, "category": "shoes"},
            }, index=i, kind=None, received_at=now, batch_sent_at=None, channel="web",
                check_size=False) for i in range(100)])
    finally:
        await close_kernel(kernel)


async def _lag(url: str, data_dir: str) -> int:
    from kunde.store.consumers import consumer_lag
    from kunde.store.database import Database

    db = Database(url)
    try:
        return sum((await consumer_lag(db)).values())
    finally:
        await db.dispose()


async def _drain(url: str, data_dir: str, workers: int) -> dict[str, Any]:
    from kunde.store.consumers import consumer_lag
    from kunde.store.database import Database

    env = kunde_env(data_dir, KUNDE_DATABASE_URL=url, KUNDE_RUN_CONSUMERS="false")
    procs = [subprocess.Popen([sys.executable, "-m", "kunde", "worker"], env=env,
                              stdout=(Path(data_dir) / f"worker-{i}.log").open("ab"),
                              stderr=subprocess.STDOUT, start_new_session=True)
             for i in range(workers)]
    db = Database(url)
    try:
        peak = 0
        first: float | None = None
        started = time.monotonic()
        while time.monotonic() - started < 900:
            lag = sum((await consumer_lag(db)).values())
            now = time.monotonic()
            if lag > peak:
                peak = lag  # every consumer's offsets exist once the workers started
            elif first is None and 0 < lag < peak:
                first = now
            if first is not None and lag == 0:
                seconds = now - first
                return {"workers": workers, "deliveries": peak, "seconds": round(seconds, 2),
                        "deliveries_per_s": round(peak / seconds)}
            await asyncio.sleep(0.2)
        raise RuntimeError("the backlog did not drain in 15 minutes")
    finally:
        await db.dispose()
        for p in procs:
            kill_group(p)


def main() -> dict[str, Any]:
    seed = f"kunde_scale_{uuid.uuid4().hex[:8]}"
    copies: list[str] = []
    data_dir = temp_dir("bench-scale-")
    asyncio.run(_admin(f'CREATE DATABASE "{seed}"'))
    try:
        asyncio.run(_seed(_url(seed), data_dir))
        runs = []
        for workers in (1, 2):
            copy = f"{seed}_{workers}"
            copies.append(copy)
            asyncio.run(_admin(f'CREATE DATABASE "{copy}" TEMPLATE "{seed}"'))
            runs.append(asyncio.run(_drain(_url(copy), data_dir, workers)))
        one, two = runs
        return {"benchmark": "scale_out", "events_seeded": EVENTS, "runs": runs,
                "speedup_two_workers": round(two["deliveries_per_s"] / one["deliveries_per_s"],
                                             2),
                "target": 1.6, "load_average": os.getloadavg()}
    finally:
        for name in [*copies, seed]:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    print(json.dumps(main()))
