"""Carrier tracking webhooks accepted durably per second, through a real server.

Every request is signed (Standard Webhooks) with its own message id; "accepted"
means answered 202 after the updates were committed to ``tracking_inbox``
(SQLite WAL with synchronous=FULL). Two shapes: one update per request, and
carrier batches of 25 and 100 updates per request. Background work (applying the inbox,
jobs) runs in the server as in production; ``BENCH_CONSUMERS=false`` measures
acceptance alone, and then applies the inbox in-process to report the CPU per
applied update. Target: >= 3,000 updates/s.
Run: ``.venv/bin/python bench/fulfilment_webhooks.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

import httpx

from bench._cpu import tree_cpu_seconds
from bench.fulfilment_common import SECRET, Server, temp_settings

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "3000"))
CONCURRENCY = 16


def bodies(n: int, per_request: int) -> list[tuple[bytes, dict[str, str]]]:
    from kunde.core import jsonutil
    from kunde.messaging import signing

    out = []
    now = int(time.time())
    for i in range(n):
        updates = [{"itemId": f"BENCH{i:07d}{j:02d}", "eventCode": "IN_TRANSIT",
                    "eventTime": "2030-01-01T10:00:00Z", "eventDescription": "In transit",
                    "location": {"displayName": "Copenhagen"}} for j in range(per_request)]
        body = jsonutil.dumps({"events": updates})
        hdrs = signing.headers(SECRET, f"msg_{uuid.uuid4().hex}", now, body)
        hdrs["content-type"] = "application/json"
        out.append((body, hdrs))
    return out


async def fire(url: str, work: list[tuple[bytes, dict[str, str]]]) -> dict[str, Any]:
    queue = list(reversed(work))
    statuses: dict[int, int] = {}
    latencies: list[float] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            body, hdrs = queue.pop()
            t0 = time.perf_counter()
            r = await client.post(url, content=body, headers=hdrs)
            latencies.append(time.perf_counter() - t0)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {"requests": len(work), "seconds": round(elapsed, 2), "statuses": statuses,
            "requests_per_s": round(len(work) / elapsed),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1)}


async def prepare(settings: Any) -> None:
    from kunde.fulfilment.config import FulfilmentConfig
    from kunde.kernel import close_kernel, open_kernel

    kernel = await open_kernel(settings)
    try:
        await kernel.service(FulfilmentConfig).add_carrier_secret("postnord", SECRET)
    finally:
        await close_kernel(kernel)


async def count_inbox(settings: Any) -> int:
    import sqlalchemy as sa

    from kunde.fulfilment.tables import tracking_inbox
    from kunde.kernel import close_kernel, open_kernel

    kernel = await open_kernel(settings, run_migrations=False)
    try:
        async with kernel.db.read() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(
                tracking_inbox))).scalar_one())
    finally:
        await close_kernel(kernel)


async def apply_all(settings: Any) -> dict[str, Any]:
    """Apply what the server accepted but left in the inbox (``BENCH_CONSUMERS=false``),
    in this process, and report the CPU per applied update."""
    from kunde.fulfilment.service import FulfilmentService
    from kunde.kernel import close_kernel, open_kernel

    kernel = await open_kernel(settings, run_migrations=False)
    try:
        service = kernel.service(FulfilmentService)
        updates, cpu0 = 0, time.process_time()
        while (summary := await service.apply_pending()) != "nothing to apply":
            applied, unknown = (int(part.split()[-1]) for part in summary.split(", "))
            updates += applied + unknown
        cpu = time.process_time() - cpu0
    finally:
        await close_kernel(kernel)
    return {"updates": updates,
            "cpu_ms_per_update": round(cpu * 1000 / updates, 3) if updates else None}


def main() -> dict[str, Any]:
    tmp, url, settings = temp_settings("webhooks")
    asyncio.run(prepare(settings))
    consumers = os.environ.get("BENCH_CONSUMERS", "true") == "true"
    server = Server(url, tmp, consumers=consumers)
    try:
        endpoint = server.url + "/webhooks/carriers/postnord"
        asyncio.run(fire(endpoint, bodies(200, 1)))  # warm-up
        cpu0 = tree_cpu_seconds(server.proc.pid)
        single = asyncio.run(fire(endpoint, bodies(REQUESTS, 1)))
        # Server CPU per accepted update (background apply included when consumers run).
        single["server_cpu_ms_per_update"] = round(
            (tree_cpu_seconds(server.proc.pid) - cpu0) * 1000 / REQUESTS, 3)
        single["updates_per_s"] = single["requests_per_s"]
        batched = asyncio.run(fire(endpoint, bodies(REQUESTS // 10, 25)))
        batched["updates_per_s"] = round(batched["requests_per_s"] * 25)
        large = asyncio.run(fire(endpoint, bodies(REQUESTS // 30, 100)))
        large["updates_per_s"] = round(large["requests_per_s"] * 100)
    finally:
        server.stop()
    stored = asyncio.run(count_inbox(settings))
    applied = None if consumers else asyncio.run(apply_all(settings))
    return {"benchmark": "fulfilment_webhooks", "database": url.split(":")[0],
            "applied_afterwards": applied,
            "background_work": consumers,
            "one_update_per_request": single, "25_updates_per_request": batched,
            "100_updates_per_request": large,
            "inbox_rows": stored, "target_updates_per_s": 3000}


if __name__ == "__main__":
    print(json.dumps(main()))
