"""Agent case view with every panel, for a customer with 10,000 events and 100 orders.

Measures the server time of the workspace behind ``GET /v1/service/cases/{id}/workspace``:
`Workspace.view` (profile + identities, consents, orders, shipments, loyalty, scores,
recent timeline, other cases, the thread, the activity) plus its JSON encoding, in one
process and event loop (no HTTP client in the loop). Target: p99 <= 50 ms.
Run: ``.venv/bin/python bench/service_case_view.py`` (SQLite in a temp dir; set
KUNDE_BENCH_DATABASE_URL=postgresql://… to run on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

# Smaller runs for a quick look: KUNDE_BENCH_EVENTS, KUNDE_BENCH_ORDERS, KUNDE_BENCH_ROUNDS.
EVENTS = int(os.environ.get("KUNDE_BENCH_EVENTS", 10_000))
ORDERS = int(os.environ.get("KUNDE_BENCH_ORDERS", 100))
ROUNDS = int(os.environ.get("KUNDE_BENCH_ROUNDS", 400))


async def run() -> dict[str, Any]:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from kunde.access.models import Principal
    from kunde.commerce.service_orders import OrderService
    from kunde.core import jsonutil
    from kunde.core.events import Event
    from kunde.kernel import close_kernel, open_kernel
    from kunde.profiles.service import ProfileService
    from kunde.service.service import Actor, CaseService, NewCase
    from kunde.service.workspace import Workspace
    from kunde.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="kunde-bench-"))
    url = os.environ.get("KUNDE_BENCH_DATABASE_URL", f"sqlite+aiosqlite:///{tmp / 'k.db'}")
    settings = load_settings(environ={}, env="test", data_dir=str(tmp), database_url=url,
                             run_consumers=False, log_json=False, log_level="WARNING")
    kernel = await open_kernel(settings)
    try:
        cid = await kernel.service(ProfileService).ensure_customer(
            {"email": f"bench-{time.time_ns()}@example.com"}, "web",
            traits={"first_name": "Bench"})
        for start in range(0, EVENTS, 1000):
            async with kernel.db.transaction() as uow:
                for i in range(start, min(start + 1000, EVENTS)):
                    uow.emit(Event.new("ingest.track", {
                        "event": "Product Viewed", "properties": {"sku": f"SKU-{i % 300}"}},
                        subject_id=cid, source="web"))
        orders = kernel.service(OrderService)
        for i in range(ORDERS):
            async with kernel.db.transaction() as uow:
                await orders.place(uow, customer_id=cid, channel="web", currency="EUR",
                                   lines=[{"sku": f"SKU-{i}", "quantity": 1,
                                           "unit_price_minor": 1000 + i}])
        cases = kernel.service(CaseService)
        case_id = await cases.open_case(NewCase(channel="email", subject="Where is my parcel?",
                                                customer_id=cid),
                                        Actor("customer", cid, "customer"), body="Hello?")
        for i in range(10):
            await cases.reply(case_id, Actor("staff", "a", "Agent"), f"Reply {i}")
            await cases.customer_message(case_id, cid, f"Answer {i}")
        if os.environ.get("KUNDE_BENCH_PANELS"):
            print(json.dumps(await panel_times(kernel, case_id)))
        ws = kernel.service(Workspace)
        agent = Principal(kind="staff", id="bench", name="Agent", role="admin",
                          scopes=frozenset({"*"}))
        for _ in range(20):
            view = await ws.view(case_id, agent)
        panels = {n: p["status"] for n, p in view["panels"].items()}
        queries = await statements_per_view(kernel, ws, case_id, agent)
        times = []
        cpu0 = time.process_time()
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            jsonutil.dumps(await ws.view(case_id, agent))
            times.append((time.perf_counter() - t0) * 1000)
        cpu_ms = (time.process_time() - cpu0) * 1000 / ROUNDS
    finally:
        await close_kernel(kernel)
    times.sort()
    return {
        "bench": "service_case_view", "backend": url.split(":")[0], "events": EVENTS,
        "orders": ORDERS, "rounds": ROUNDS, "panels": panels,
        "p50_ms": round(times[len(times) // 2], 2),
        "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
        "max_ms": round(times[-1], 2), "target_p99_ms": 50,
        # CPU of the whole process (event loop + SQLite threads) per view: what the view
        # costs regardless of how busy the shared machine is.
        "cpu_ms_per_view": round(cpu_ms, 2), "load_average": os.getloadavg()[0],
        "sql_statements_per_view": queries,
    }


async def statements_per_view(kernel: Any, ws: Any, case_id: str, agent: Any) -> int:
    """SQL statements one view sends through the engines (the bare-driver quick reads
    are not counted)."""
    from sqlalchemy import event

    count = 0

    def seen(*_: Any) -> None:
        nonlocal count
        count += 1

    engines = {id(e): e.sync_engine for e in (kernel.db.reader, kernel.db.writer)}
    for engine in engines.values():
        event.listen(engine, "before_cursor_execute", seen)
    try:
        await ws.view(case_id, agent)
    finally:
        for engine in engines.values():
            event.remove(engine, "before_cursor_execute", seen)
    return count


async def panel_times(kernel: Any, case_id: str) -> dict[str, float]:
    """Median milliseconds of each panel on its own (to see where the time goes)."""
    from kunde.access.models import Principal
    from kunde.service.workspace import Workspace

    ws = kernel.service(Workspace)
    cid = (await ws.cases.get_case(case_id))["customer_id"]
    out = {}
    for name in ("profile", "consents", "orders", "loyalty", "scores"):
        fn = getattr(ws, f"_{name}")
        samples = []
        for _ in range(30):
            t0 = time.perf_counter()
            await fn(cid)
            samples.append((time.perf_counter() - t0) * 1000)
        out[name] = round(sorted(samples)[15], 2)
    p = Principal(kind="api_key", id="b", name="b", scopes=frozenset({"*"}))
    samples = []
    for _ in range(30):
        t0 = time.perf_counter()
        await ws.view(case_id, p)
        samples.append((time.perf_counter() - t0) * 1000)
    out["view"] = round(sorted(samples)[15], 2)
    return out


def main() -> dict[str, Any]:
    return asyncio.run(run())


if __name__ == "__main__":
    print(json.dumps(main()))
