"""Balance and member-overview reads: p99 at 1,000 req/s against a real ``kunde serve``.

1,000 members with points, a tier and history are loaded first (not timed); then
``GET /v1/loyalty/members/{id}/balance`` and ``GET /v1/loyalty/members/{id}`` are each
fired open loop at ``RATE`` requests/s for ``SECONDS`` seconds (arrivals do not wait for
answers, so queueing shows in the latency). SQLite by default; PostgreSQL too when
``KUNDE_BENCH_POSTGRES_URL`` names a server (a scratch database is created and dropped).

    .venv/bin/python bench/loyalty_balance.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _databases import on_each_database
from commerce_checkout import _serve

RATE = int(os.environ.get("BENCH_RATE", "1000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
MEMBERS = 1000
TARGET_P99_MS = 5.0


def _pcts(lat: list[float]) -> dict[str, float]:
    lat = sorted(lat)
    return {f"p{int(p * 100)}_ms": round(lat[min(len(lat) - 1, int(p * len(lat)))], 3)
            for p in (0.5, 0.95, 0.99)}


async def _in_process(kernel: Any, ids: list[str]) -> dict[str, Any]:
    """The read without HTTP, one at a time: the floor the server adds its cost to."""
    from kunde.loyalty.service import LoyaltyService
    from kunde.loyalty.service_members import MemberViews

    out: dict[str, Any] = {}
    for name, call in (("member_summary", kernel.service(LoyaltyService).member_summary),
                       ("overview", kernel.service(MemberViews).overview)):
        lat = []
        for cid in ids:
            t0 = time.perf_counter()
            await call(cid)
            lat.append((time.perf_counter() - t0) * 1000)
        out[name] = _pcts(lat)
    return out


async def _seed(url: str, tmp: Path) -> tuple[str, list[str], dict[str, Any]]:
    from kunde.core.ids import new_id
    from kunde.kernel import close_kernel, open_kernel
    from kunde.loyalty.demo import demo_programme
    from kunde.loyalty.service import LoyaltyService
    from kunde.loyalty.service_programme import ProgrammeService
    from kunde.settings import load_settings

    settings = load_settings(environ={}, env="test", data_dir=str(tmp), database_url=url,
                             run_consumers=False, log_json=False)
    kernel = await open_kernel(settings)
    try:
        await kernel.service(ProgrammeService).apply(demo_programme(kernel), actor="bench")
        svc = kernel.service(LoyaltyService)
        ids = [new_id() for _ in range(MEMBERS)]
        for start in range(0, MEMBERS, 50):
            async with kernel.db.transaction() as uow:
                for i in range(start, min(start + 50, MEMBERS)):
                    for j in range(3):
                        await svc.grant_goodwill(uow, ids[i], 10 + i % 500, "bench",
                                                 f"{ids[i]}:{j}")
        key = (await kernel.access.create_api_key("bench", ["loyalty:read"]))[1]
        return key, ids, await _in_process(kernel, ids)
    finally:
        await close_kernel(kernel)


async def _fire(c: httpx.AsyncClient, paths: list[str]) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def get(path: str) -> None:
        t0 = time.perf_counter()
        try:
            r = await c.get(path)
            status = str(r.status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        latencies.append((time.perf_counter() - t0) * 1000)
        if status != "200":
            errors[status] = errors.get(status, 0) + 1

    start = time.perf_counter()
    tasks = []
    for i, path in enumerate(paths):
        delay = start + i / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(get(path)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2)

    return {"requests": len(lat), "offered_rate": RATE,
            "achieved_rate": round(len(lat) / elapsed, 1), "p50_ms": pct(0.5),
            "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": round(lat[-1], 2),
            "errors": errors, "target_p99_ms": TARGET_P99_MS,
            "met": pct(0.99) <= TARGET_P99_MS and not errors}


async def _run(url: str, tmp: Path) -> dict[str, Any]:
    key, ids, service = await _seed(url, tmp)
    proc, base = _serve(url, tmp)
    try:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits,
                                     headers={"Authorization": f"Bearer {key}"}) as c:
            n = RATE * SECONDS
            balance = [f"/v1/loyalty/members/{ids[i % MEMBERS]}/balance" for i in range(n)]
            overview = [f"/v1/loyalty/members/{ids[i % MEMBERS]}" for i in range(n)]
            await _fire(c, balance[:RATE])  # warm-up
            return {"in_process": service, "balance": await _fire(c, balance),
                    "overview": await _fire(c, overview)}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "loyalty_balance", "rate": RATE, "seconds": SECONDS,
                           "members": MEMBERS}
    out.update(on_each_database("loyalty", _run))
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
