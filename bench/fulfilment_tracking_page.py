"""The public tracking page at a steady 1,000 requests/s, through a real server.

A shipment with 10 checkpoints; ``wrk`` with a Lua pacing script (each of 20
connections waits 20 ms between requests, ≈1,000 req/s) fetches
``GET /track/{token}`` for 15 s; wrk reports the latency percentiles.
Target: p99 <= 10 ms at 1,000 req/s.
``BENCH_TOKENS=n`` (default 1) tracks n parcels, fetched at random, so most requests
miss the page's one-second cache (the cost of many customers, not one popular link).
Run: ``.venv/bin/python -m bench.fulfilment_tracking_page`` (needs ``wrk``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

from bench._cpu import tree_cpu_seconds
from bench._servers import require_wrk
from bench.fulfilment_common import Server, temp_settings

CONNECTIONS = 20
PACE_MS = 20
SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
IN_PROCESS = int(os.environ.get("BENCH_IN_PROCESS", "2000"))
TOKENS = int(os.environ.get("BENCH_TOKENS", "1"))

LUA = f"""
function delay()
  return {PACE_MS}
end
"""


async def prepare(settings: Any, n: int = 1) -> list[str]:
    from kunde.commerce.service_orders import OrderService
    from kunde.fulfilment.models import Checkpoint, TrackingUpdate
    from kunde.fulfilment.service import FulfilmentService
    from kunde.kernel import close_kernel, open_kernel
    from kunde.profiles.service import ProfileService

    kernel = await open_kernel(settings)
    tokens = []
    try:
        cid = await kernel.service(ProfileService).ensure_customer(
            {"email": "track-bench@example.com"}, "web")
        orders = kernel.service(OrderService)
        service = kernel.service(FulfilmentService)
        for k in range(n):
            number = f"TP{k + 1}"
            async with kernel.db.transaction() as uow:
                order_id = await orders.place(uow, customer_id=cid, channel="web",
                                              currency="DKK", lines=[
                                                  {"sku": "A", "quantity": 1,
                                                   "unit_price_minor": 1000}])
            order = await orders.get_order(order_id)
            ship = await service.create_shipment(
                order_id=order_id, carrier="kunde", service="parcel", tracking_number=number,
                lines={order["lines"][0]["line_id"]: 1})
            start = datetime(2030, 1, 1, 8, tzinfo=UTC)
            statuses = ["info_received"] + ["in_transit"] * 8 + ["out_for_delivery"]
            async with kernel.db.transaction() as uow:
                for i, status in enumerate(statuses):
                    await service.apply(uow, "kunde", TrackingUpdate(number, Checkpoint(
                        at=start + timedelta(hours=3 * i),
                        status=status,  # type: ignore[arg-type]
                        message=f"Scan {i}", location="Terminal Copenhagen")))
            tokens.append(str(ship["token"]))
        return tokens
    finally:
        await close_kernel(kernel)


def parse_wrk(text: str) -> dict[str, Any]:
    def ms(value: str) -> float:
        number = float(re.findall(r"[\d.]+", value)[0])
        if value.endswith("us"):
            return number / 1000
        if value.endswith("ms"):
            return number
        return number * 1000

    pct = {p: ms(v) for p, v in re.findall(r"^\s+(\d+)%\s+(\S+)", text, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {"requests_per_s": round(rps), "p50_ms": pct.get("50"), "p90_ms": pct.get("90"),
            "p99_ms": pct.get("99"), "non_2xx": int(errors.group(1)) if errors else 0}


async def in_process(settings: Any, tokens: list[str], n: int = 2000) -> dict[str, Any]:
    """The same page through the whole app stack but without sockets: the server's share."""
    import time

    import httpx

    from kunde.app import create_app
    from kunde.kernel import close_kernel, open_kernel

    kernel = await open_kernel(settings, run_migrations=False)
    try:
        app = create_app(kernel=kernel)
        app.state.kernel = kernel
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
            times = []
            cpu0 = time.process_time()
            for i in range(n):
                t0 = time.perf_counter()
                r = await c.get(f"/track/{tokens[i % len(tokens)]}")
                times.append((time.perf_counter() - t0) * 1000)
                if i == 0 and r.status_code != 200:
                    raise RuntimeError(r.text)
            cpu = time.process_time() - cpu0
    finally:
        await close_kernel(kernel)
    times.sort()
    return {"requests": n, "p50_ms": round(times[n // 2], 2),
            "p99_ms": round(times[int(n * 0.99)], 2),
            "cpu_ms_per_request": round(cpu * 1000 / n, 3)}


def main() -> dict[str, Any]:
    require_wrk()
    tmp, url, settings = temp_settings("track")
    tokens = asyncio.run(prepare(settings, TOKENS))
    inproc = asyncio.run(in_process(settings, tokens, IN_PROCESS))
    if shutil.which("wrk") is None:  # the server's share alone, without the paced load
        return {"benchmark": "fulfilment_tracking_page", "database": url.split(":")[0],
                "in_process_sequential": inproc, "wrk": "not installed"}
    server = Server(url, tmp, consumers=False)
    script = tmp / "pace.lua"
    paths = ", ".join(f'"/track/{t}"' for t in tokens)
    script.write_text(LUA + (f"""
paths = {{{paths}}}
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
""" if len(tokens) > 1 else ""))
    target = f"{server.url}/track/{tokens[0]}"
    try:
        subprocess.run(["wrk", "-t1", "-c10", "-d3s", target], capture_output=True,
                       check=True)  # warm-up
        cpu0 = tree_cpu_seconds(server.proc.pid)
        out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency",
                              "-s", str(script), target], capture_output=True, text=True,
                             check=True).stdout
        cpu = tree_cpu_seconds(server.proc.pid) - cpu0
    finally:
        server.stop()
    result = parse_wrk(out)
    served = result["requests_per_s"] * SECONDS
    return {"benchmark": "fulfilment_tracking_page", "database": url.split(":")[0],
            **result, "server_cpu_ms_per_request": round(cpu * 1000 / max(served, 1), 3),
            "in_process_sequential": inproc, "tokens": len(tokens),
            "target": "p99 <= 10 ms at 1000 req/s"}


if __name__ == "__main__":
    print(json.dumps(main()))
