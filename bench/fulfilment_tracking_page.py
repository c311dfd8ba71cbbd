"""The public tracking page at a steady 1,000 requests/s, through a real server.

A shipment with 10 checkpoints; ``wrk`` with a Lua pacing script (each of 20
connections waits 20 ms between requests, ≈1,000 req/s) fetches
``GET /track/{token}`` for 15 s; wrk reports the latency percentiles.
Target: p99 <= 10 ms at 1,000 req/s.
Run: ``.venv/bin/python -m bench.fulfilment_tracking_page`` (needs ``wrk``).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.fulfilment_common import Server, temp_settings

CONNECTIONS = 20
PACE_MS = 20
SECONDS = 15

LUA = f"""
function delay()
  return {PACE_MS}
end
"""


async def prepare(settings: Any) -> str:
    from kunde.commerce.service_orders import OrderService
    from kunde.fulfilment.models import Checkpoint, TrackingUpdate
    from kunde.fulfilment.service import FulfilmentService
    from kunde.kernel import close_kernel, open_kernel
    from kunde.profiles.service import ProfileService

    kernel = await open_kernel(settings)
    try:
        cid = await kernel.service(ProfileService).ensure_customer(
            {"email": "track-bench@example.com"}, "web")
        orders = kernel.service(OrderService)
        async with kernel.db.transaction() as uow:
            order_id = await orders.place(uow, customer_id=cid, channel="web",
                                          currency="DKK", lines=[
                                              {"sku": "A", "quantity": 1,
                                               "unit_price_minor": 1000}])
        order = await orders.get_order(order_id)
        service = kernel.service(FulfilmentService)
        ship = await service.create_shipment(
            order_id=order_id, carrier="kunde", service="parcel", tracking_number="TP1",
            lines={order["lines"][0]["line_id"]: 1})
        start = datetime(2030, 1, 1, 8, tzinfo=UTC)
        statuses = ["info_received"] + ["in_transit"] * 8 + ["out_for_delivery"]
        async with kernel.db.transaction() as uow:
            for i, status in enumerate(statuses):
                await service.apply(uow, "kunde", TrackingUpdate("TP1", Checkpoint(
                    at=start + timedelta(hours=3 * i), status=status,  # type: ignore[arg-type]
                    message=f"Scan {i}", location="Terminal Copenhagen")))
        return str(ship["token"])
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


async def in_process(settings: Any, token: str, n: int = 2000) -> dict[str, Any]:
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
            for i in range(n):
                t0 = time.perf_counter()
                r = await c.get(f"/track/{token}")
                times.append((time.perf_counter() - t0) * 1000)
                if i == 0 and r.status_code != 200:
                    raise RuntimeError(r.text)
    finally:
        await close_kernel(kernel)
    times.sort()
    return {"requests": n, "p50_ms": round(times[n // 2], 2),
            "p99_ms": round(times[int(n * 0.99)], 2)}


def main() -> dict[str, Any]:
    tmp, url, settings = temp_settings("track")
    token = asyncio.run(prepare(settings))
    inproc = asyncio.run(in_process(settings, token))
    server = Server(url, tmp, consumers=False)
    script = tmp / "pace.lua"
    script.write_text(LUA)
    target = f"{server.url}/track/{token}"
    try:
        subprocess.run(["wrk", "-t1", "-c10", "-d3s", target], capture_output=True,
                       check=True)  # warm-up
        out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency",
                              "-s", str(script), target], capture_output=True, text=True,
                             check=True).stdout
    finally:
        server.stop()
    return {"benchmark": "fulfilment_tracking_page", "database": url.split(":")[0],
            **parse_wrk(out), "in_process_sequential": inproc,
            "target": "p99 <= 10 ms at 1000 req/s"}


if __name__ == "__main__":
    print(json.dumps(main()))
