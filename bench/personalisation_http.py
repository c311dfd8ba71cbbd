"""Recommendations over HTTP at a fixed 500 requests/s (open loop): latency percentiles.

A temporary SQLite deployment gets synthetic shoppers (interactions in the personalisation
store, personalisation consent for all of them), a trained model, and `kunde serve`; the
load generator sends GET /v1/recommendations on keep-alive connections at fixed intervals
and measures each latency from the moment the request was due (no coordinated omission).
The mix is home / product:SKU / cart for random customers, so part of it hits the
in-process response cache and part computes.
Run: .venv/bin/python bench/personalisation_http.py
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _servers import free_port, kunde_env, start_kunde, stop, temp_dir, wait_http

RATE = int(os.environ.get("BENCH_RATE", "500"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
CUSTOMERS, PRODUCTS = 2000, 1500


async def prepare(data_dir: str) -> tuple[str, list[str], list[str]]:
    from kunde.core.ids import derived_id as derived_key
    from kunde.kernel import close_kernel, open_kernel
    from kunde.personalisation.service import RecommendationService
    from kunde.personalisation.tables import consents, interactions
    from kunde.settings import load_settings

    settings = load_settings(environ={}, env="dev", data_dir=data_dir, run_consumers=False)
    kernel = await open_kernel(settings)
    rng = random.Random(5)
    now = kernel.clock.now()
    skus = [f"SKU-{i:05d}" for i in range(PRODUCTS)]
    customers = [derived_key("bench", str(i)) for i in range(CUSTOMERS)]
    rows = []
    for n, cid in enumerate(customers):
        group = n % 30  # shoppers with similar tastes buy from the same shelf
        shelf = skus[group * 50:(group + 1) * 50]
        for k in range(rng.randint(5, 40)):
            sku = rng.choice(shelf) if rng.random() < 0.8 else rng.choice(skus)
            rows.append({"id": derived_key(cid, str(k)), "customer_id": cid, "sku": sku,
                         "kind": rng.choice(["view", "view", "cart", "purchase"]),
                         "category": f"shelf-{skus.index(sku) // 50}",
                         "basket": f"{cid}-{k // 4}", "quantity": 1, "value_minor": 999,
                         "currency": "EUR", "occurred_at": now - timedelta(days=rng.random() * 90)})
    async with kernel.db.transaction() as uow:
        for start in range(0, len(rows), 5000):
            await uow.execute(interactions.insert(), rows[start:start + 5000])
        await uow.execute(consents.insert(), [
            {"customer_id": c, "purpose": "personalisation", "granted": True, "updated_at": now}
            for c in customers])
    try:
        from kunde.profiles.service_consent import ConsentService

        consent = kernel.service(ConsentService)
        for cid in customers:
            await consent.grant(cid, "personalisation", method="bench")
    except ImportError:
        pass
    await kernel.service(RecommendationService).train()
    _, key = await kernel.access.create_api_key("bench", ["personalisation:read"])
    await close_kernel(kernel)
    return key, customers, skus


async def _conn(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _get(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str,
               key: str) -> int:
    reader, writer = conn
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\r\n"
                 .encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return status


async def load(port: int, key: str, customers: list[str], skus: list[str]) -> dict[str, Any]:
    rng = random.Random(9)
    pool: asyncio.Queue[Any] = asyncio.Queue()
    for _ in range(32):
        pool.put_nowait(await _conn(port))
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}

    def path() -> str:
        cid = rng.choice(customers)
        ctx = rng.choice(["home", f"product:{rng.choice(skus)}", "cart"])
        return f"/v1/recommendations?customer={cid}&context={ctx}&limit=10"

    async def one(due: float, p: str) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            status = await _get(conn, p, key)
            statuses[status] = statuses.get(status, 0) + 1
            if status != 200:
                errors += 1
        finally:
            pool.put_nowait(conn)
        latencies.append(time.perf_counter() - due)
        timeline.append((due, latencies[-1]))

    timeline: list[tuple[float, float]] = []
    for _ in range(200):  # warm-up
        await one(time.perf_counter(), path())
    latencies.clear()
    timeline.clear()
    # The client's own garbage collection would show up as server latency: the set-up
    # data is frozen and collection waits until the measurement is over.
    gc.collect()
    gc.freeze()
    gc.disable()
    start = time.perf_counter()
    tasks = []
    for i in range(RATE * SECONDS):
        due = start + i / RATE
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, path())))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    gc.enable()
    latencies.sort()
    q = statistics.quantiles(latencies, n=1000)
    by_second: dict[int, list[float]] = {}
    for due, lat in timeline:
        by_second.setdefault(int(due - start), []).append(lat)
    p99_by_second = [round(sorted(v)[int(len(v) * 0.99) - 1] * 1000, 1)
                     for _, v in sorted(by_second.items())]
    return {"rate_target": RATE, "seconds": SECONDS, "requests": len(latencies),
            "achieved_req_per_s": round(len(latencies) / elapsed, 1), "errors": errors,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "p50_ms": round(q[499] * 1000, 2), "p99_ms": round(q[989] * 1000, 2),
            "p999_ms": round(q[998] * 1000, 2), "max_ms": round(latencies[-1] * 1000, 2),
            "p99_ms_by_second": p99_by_second}


def main() -> dict[str, Any]:
    data_dir = temp_dir("kunde-bench-reco-")
    key, customers, skus = asyncio.run(prepare(data_dir))
    port = free_port()
    proc = start_kunde(port, kunde_env(data_dir, KUNDE_RUN_CONSUMERS="false"),
                       log=Path(data_dir) / "server.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health/live", proc)
        result = asyncio.run(load(port, key, customers, skus))
    finally:
        stop(proc)
    return {**result, "customers": CUSTOMERS, "products": PRODUCTS,
            "load_average": os.getloadavg()}


if __name__ == "__main__":
    print(json.dumps(main()))
