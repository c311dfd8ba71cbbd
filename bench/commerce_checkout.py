"""Checkout benchmark: cart → paid order with the test provider, open loop at a fixed rate.

A real ``kunde serve`` (granian, one worker, consumers running) on a fresh database.
Carts with two lines are filled first (not timed); then ``POST /v1/carts/{id}/checkout``
(with an ``Idempotency-Key``) is fired at ``RATE`` orders/s for ``SECONDS`` seconds,
open loop (arrivals do not wait for answers, so queueing shows in the latency), and the
latency of each checkout is recorded. Runs on SQLite, and on PostgreSQL when
``KUNDE_BENCH_POSTGRES_URL`` names a server (a scratch database is created and dropped).

    .venv/bin/python bench/commerce_checkout.py
    KUNDE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/commerce_checkout.py
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _cpu import tree_cpu_seconds
from _databases import on_each_database

RATE = int(os.environ.get("BENCH_RATE", "200"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
# Consumers (loyalty, messaging, fulfilment, … reacting to each order) share the server's
# CPU and, on SQLite, its single writer; BENCH_CONSUMERS=false measures checkout alone.
CONSUMERS = os.environ.get("BENCH_CONSUMERS", "true").lower() != "false"
TARGET_P99_MS = 25.0
SKUS = [f"BENCH-{i:03d}" for i in range(50)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _api_key(url: str, tmp: Path) -> str:
    from kunde.kernel import close_kernel, open_kernel
    from kunde.settings import load_settings

    settings = load_settings(environ={}, env="test", data_dir=str(tmp), database_url=url,
                             run_consumers=False, log_json=False)
    kernel = await open_kernel(settings)
    try:
        return (await kernel.access.create_api_key("bench", ["commerce:*"]))[1]
    finally:
        await close_kernel(kernel)


def _serve(url: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "KUNDE_ENV": "test", "KUNDE_DATA_DIR": str(tmp),
           "KUNDE_DATABASE_URL": url, "KUNDE_LOG_JSON": "false", "KUNDE_LOG_LEVEL": "WARNING",
           "KUNDE_RUN_CONSUMERS": "true" if CONSUMERS else "false"}
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "kunde", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health/live", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError((tmp / "server.log").read_text()[-2000:])


async def _prepare(c: httpx.AsyncClient, n: int) -> list[str]:
    r = await c.post("/v1/catalog/locations", json=[{"code": "wh", "name": "Warehouse"}])
    r.raise_for_status()
    r = await c.post("/v1/catalog/products", json=[
        {"code": sku, "title": f"Bench item {sku}", "category": "Bench",
         "variants": [{"sku": sku, "price_minor": 1000 + i, "currency": "EUR",
                       "stock": {"wh": 1_000_000}}]} for i, sku in enumerate(SKUS)])
    r.raise_for_status()
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> str:
        async with sem:
            r = await c.post("/v1/carts", json={"currency": "EUR"})
            cart_id = str(r.json()["cart_id"])
            for sku in (SKUS[i % len(SKUS)], SKUS[(i * 7 + 3) % len(SKUS)]):
                (await c.post(f"/v1/carts/{cart_id}/lines",
                              json={"sku": sku, "quantity": 1 + i % 2})).raise_for_status()
            return cart_id

    return list(await asyncio.gather(*[one(i) for i in range(n)]))


async def _fire(c: httpx.AsyncClient, carts: list[str]) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def checkout(cart_id: str) -> None:
        t0 = time.perf_counter()
        r = await c.post(f"/v1/carts/{cart_id}/checkout", json={"payment_method": "test_approve"},
                         headers={"Idempotency-Key": f"bench-{cart_id}"})
        latencies.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 201 or r.json().get("status") != "paid":
            what = f"{r.status_code} {r.json().get('code', '')}".strip()
            errors[what] = errors.get(what, 0) + 1

    start = time.perf_counter()
    tasks = []
    for i, cart_id in enumerate(carts):
        delay = start + i / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(checkout(cart_id)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2)

    return {"orders": len(lat), "offered_rate": RATE, "achieved_rate": round(len(lat) / elapsed, 1),
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "max_ms": round(lat[-1], 2), "errors": errors,
            "target_p99_ms": TARGET_P99_MS, "met": pct(0.99) <= TARGET_P99_MS and not errors}


async def _run(url: str, tmp: Path) -> dict[str, Any]:
    key = await _api_key(url, tmp)
    proc, base = _serve(url, tmp)
    try:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits,
                                     headers={"Authorization": f"Bearer {key}"}) as c:
            carts = await _prepare(c, RATE * SECONDS)
            await _fire(c, carts[: RATE])  # warm-up on a first slice, then the measured run
            if SECONDS <= 1:
                return {}
            cpu0 = tree_cpu_seconds(proc.pid)
            out = await _fire(c, carts[RATE:])
            # The server's CPU (consumers included) per checkout: comparable on a busy machine.
            out["server_cpu_ms_per_order"] = round(
                (tree_cpu_seconds(proc.pid) - cpu0) * 1000 / max(out["orders"], 1), 2)
            return out
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "commerce_checkout", "rate": RATE, "seconds": SECONDS,
                           "consumers": CONSUMERS}
    out.update(on_each_database("checkout", _run))
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
