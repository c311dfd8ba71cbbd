"""Balance and member-overview reads: p99 at 1,000 req/s against a real ``kunde serve``.

1,000 members with points, a tier and history are loaded first (not timed); then
``GET /v1/loyalty/members/{id}/balance`` and ``GET /v1/loyalty/members/{id}`` are each
fired open loop at ``RATE`` requests/s for ``SECONDS`` seconds (arrivals do not wait for
answers, so queueing shows in the latency). SQLite by default; PostgreSQL too when
``KUNDE_BENCH_POSTGRES_URL`` names a server (a scratch database is created and dropped).

    .venv/bin/python bench/loyalty_balance.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _databases import on_each_database
from _load import open_loop_async
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


async def _run(url: str, tmp: Path) -> dict[str, Any]:
    key, ids, service = await _seed(url, tmp)
    proc, base = _serve(url, tmp)
    port = int(base.rsplit(":", 1)[1].split("/", 1)[0])
    auth = {"Authorization": f"Bearer {key}"}
    try:
        out: dict[str, Any] = {"in_process": service}
        for name, paths in (("balance", [f"/v1/loyalty/members/{c}/balance" for c in ids]),
                            ("overview", [f"/v1/loyalty/members/{c}" for c in ids])):
            got = await open_loop_async(port, paths, auth, rate=RATE, seconds=SECONDS)
            got["met"] = (got["p99_ms"] or 1e9) <= TARGET_P99_MS and got["success_rate"] == 1
            out[name] = got
        return out
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
