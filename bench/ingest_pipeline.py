"""CPU cost of the ingestion pipeline in-process, without HTTP: accept and projection.

* ``accept``: `IngestService.accept` of 100-event batches for known shoppers (after a
  warm-up that creates them) and for new shoppers (each event mints a customer).
* ``projector``: the profile consumer draining what was ingested (identity links,
  activity, traits), events per second on one worker.

Reports wall-clock and process CPU time: on a shared machine the CPU figure is the
steadier one. Target context: 25,000 events/s acknowledged, projection >= 5,000 events/s.

    python -m bench.ingest_pipeline                # SQLite; BENCH_DBS=sqlite,postgres
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

from bench._servers import PG_URL, temp_dir

BATCHES = int(os.environ.get("BENCH_BATCHES", "40"))


async def _run(url: str, data_dir: str) -> dict[str, Any]:
    from kunde.ingest.models import normalise
    from kunde.ingest.service import IngestService
    from kunde.kernel import close_kernel, open_kernel
    from kunde.profiles.handlers import consumers
    from kunde.settings import load_settings
    from kunde.store.consumers import ConsumerRunner

    kernel = await open_kernel(load_settings(environ={}, env="dev", data_dir=data_dir,
                                             database_url=url))
    try:
        service = kernel.service(IngestService)
        now = kernel.clock.now()

        def batch(tag: str, n: int, shopper: Any) -> list[dict[str, Any]]:
            return [normalise({
                "type": "track", "event": "Product Viewed", "messageId": f"{tag}-{n}-{i}",
                "anonymousId": f"anon-{shopper(n, i)}", "timestamp": "2026-11-23T10:00:00Z",
                "properties": {"sku": f"SKU-{i % 50}", "price": 19.99, "category": "shoes"},
                "context": {"ip": "10.0.0.1"}}, index=i, kind=None, received_at=now,
                batch_sent_at=None, channel="web", check_size=False) for i in range(100)]

        await service.accept("bench", "web", batch("warm", 0, lambda n, i: i * 10))
        out: dict[str, Any] = {}
        for label, shopper in (("accept_known", lambda n, i: (i * 10) % 1000),
                               ("accept_new", lambda n, i: f"new-{n}-{i}")):
            batches = [batch(label, n, shopper) for n in range(BATCHES)]
            wall, cpu = time.perf_counter(), time.process_time()
            for b in batches:
                await service.accept("bench", "web", b)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            events = BATCHES * 100
            out[label] = {"events": events, "events_per_s_wall": round(events / wall),
                          "events_per_cpu_s": round(events / cpu),
                          "ms_per_batch_wall": round(wall / BATCHES * 1000, 2)}
        runner = ConsumerRunner(kernel.db, kernel.log, consumers(kernel),
                                lambda: frozenset(range(kernel.settings.partitions)))
        await runner.ensure_offsets()
        wall, cpu = time.perf_counter(), time.process_time()
        await runner.drain()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        handled = runner.stats["profiles.projector"].processed
        out["projector"] = {"events": handled, "events_per_s_wall": round(handled / wall),
                            "events_per_cpu_s": round(handled / cpu)}
        return out
    finally:
        await close_kernel(kernel)


def run(kind: str) -> dict[str, Any]:
    data_dir = temp_dir(f"bench-pipeline-{kind}-")
    if kind == "sqlite":
        return asyncio.run(_run(f"sqlite+aiosqlite:///{data_dir}/kunde.db", data_dir))
    import asyncpg

    name = f"kunde_bench_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(sql)
        await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        return asyncio.run(_run(PG_URL.rsplit("/", 1)[0] + f"/{name}", data_dir))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> dict[str, Any]:
    dbs = os.environ.get("BENCH_DBS", "sqlite,postgres").split(",")
    return {"benchmark": "ingest_pipeline", "batch": 100, "batches": BATCHES,
            **{db: run(db) for db in dbs}, "load_average": os.getloadavg()}


if __name__ == "__main__":
    print(json.dumps(main()))
