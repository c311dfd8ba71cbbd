"""Order paid -> points visible: p99 latency at ``RATE`` orders/s through the real consumer.

``commerce.order_placed`` + ``commerce.order_paid`` events are appended (each pair in its
own transaction, as commerce does) open loop at ``RATE`` orders/s for ``SECONDS``
seconds, while the loyalty consumer runs in the same process as a worker would
(`ConsumerRunner.run_forever`, woken by commits). For every order the time from the
commit of ``order_paid`` to the commit of the consumer transaction that made its
points visible is recorded. SQLite by default; PostgreSQL too with
``KUNDE_BENCH_POSTGRES_URL``.

    .venv/bin/python bench/loyalty_latency.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _databases import on_each_database

RATE = int(os.environ.get("BENCH_RATE", "500"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
TARGET_P99_MS = 1000.0
BACKLOG = int(os.environ.get("BENCH_BACKLOG", "500"))


def _order_events(event_cls: Any, new_id: Any) -> tuple[Any, Any]:
    cid, oid = new_id(), new_id()
    placed = event_cls.new("commerce.order_placed", {
        "order_id": oid, "customer_id": cid, "currency": "EUR", "total_minor": 4200,
        "lines": [{"line_id": "1", "sku": "S", "category": "shoes", "quantity": 1,
                   "unit_price_minor": 4200, "total_minor": 4200}]},
        subject_id=cid, source="web")
    paid = event_cls.new("commerce.order_paid", {"order_id": oid, "amount_minor": 4200,
                                                 "currency": "EUR", "external": False},
                         subject_id=cid, source="web")
    return placed, paid


async def _run(url: str, tmp: Path) -> dict[str, Any]:
    from kunde.core.events import Event
    from kunde.core.ids import new_id
    from kunde.kernel import close_kernel, open_kernel
    from kunde.loyalty.demo import demo_programme
    from kunde.loyalty.handlers import consumers
    from kunde.loyalty.service_programme import ProgrammeService
    from kunde.settings import load_settings
    from kunde.store.consumers import Consumer, ConsumerRunner
    from kunde.store.database import UnitOfWork

    settings = load_settings(environ={}, env="test", data_dir=str(tmp), database_url=url,
                             run_consumers=False, log_json=False)
    kernel = await open_kernel(settings)
    try:
        await kernel.service(ProgrammeService).apply(demo_programme(kernel), actor="bench")
        paid_at: dict[str, float] = {}
        visible: dict[str, float] = {}
        engine = consumers(kernel)[0]

        async def timed(uow: UnitOfWork, events: Sequence[Event]) -> None:
            await engine.handle(uow, events)
            ids = [e.id for e in events if e.type == "commerce.order_paid"]
            uow.after_commit(lambda: visible.update(dict.fromkeys(ids, time.perf_counter())))

        # 1. Throughput: a backlog of orders (appended 50 per transaction, not timed),
        #    then the time the consumer takes to make all their points visible.
        backlog = [_order_events(Event, new_id) for _ in range(BACKLOG)]
        for i in range(0, BACKLOG, 50):
            async with kernel.db.transaction() as uow:
                for placed, paid in backlog[i:i + 50]:
                    uow.emit(placed)
                    uow.emit(paid)
        parts = frozenset(range(settings.partitions))
        t0 = time.perf_counter()
        await ConsumerRunner(kernel.db, kernel.log, [engine], lambda: parts).drain()
        drain_s = time.perf_counter() - t0
        throughput = {"orders": BACKLOG, "seconds": round(drain_s, 2),
                      "orders_per_second": round(BACKLOG / drain_s, 1)}

        # 2. Latency: orders arriving open loop while the consumer runs.
        runner = ConsumerRunner(kernel.db, kernel.log,
                                [Consumer("loyalty.engine", timed, engine.types)],
                                lambda: frozenset(range(settings.partitions)), idle_wait=0.05)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run_forever(stop))

        inflight = asyncio.Semaphore(16)  # below the pool size; more would only queue

        async def one_order() -> None:
            async with inflight:
                await append_order()

        async def append_order() -> None:
            placed, paid = _order_events(Event, new_id)
            async with kernel.db.transaction() as uow:
                uow.emit(placed)
                uow.emit(paid)
            paid_at[paid.id] = time.perf_counter()

        start = time.perf_counter()
        tasks = []
        for i in range(RATE * SECONDS):
            delay = start + i / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one_order()))
        await asyncio.gather(*tasks)
        offered_for = time.perf_counter() - start
        deadline = time.perf_counter() + 120
        while len(visible) < len(paid_at) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await task
        lat = sorted((visible[k] - v) * 1000 for k, v in paid_at.items() if k in visible)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1)

        return {"consumer_throughput": throughput,
                "orders": len(paid_at), "visible": len(lat), "offered_rate": RATE,
                "achieved_append_rate": round(len(paid_at) / offered_for, 1),
                "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
                "max_ms": round(lat[-1], 1), "target_p99_ms": TARGET_P99_MS,
                "met": pct(0.99) <= TARGET_P99_MS and len(lat) == len(paid_at)}
    finally:
        await close_kernel(kernel)


def main() -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "loyalty_latency", "rate": RATE, "seconds": SECONDS}
    out.update(on_each_database("loyalty-lat", _run))
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
