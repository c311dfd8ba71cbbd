"""CPU and SQL statements per request on the commerce and fulfilment hot paths, in-process.

The whole app stack (middleware, handlers, database) without sockets, one request after
another, so the figures do not depend on the neighbours' load the way latencies do:
``time.process_time()`` (all threads: the SQLite driver's worker thread is included)
and the statements the SQLAlchemy engines execute, per request.

* ``checkout``: cart (two lines) → paid order with the test provider, with an
  Idempotency-Key;
* ``track`` / ``track_miss`` / ``track_json``: the public tracking page from its
  one-second cache, rendered afresh, and its JSON;
* ``webhook``: one signed carrier update per request, accepted durably; then
  ``apply``: the accepted updates applied (unknown tracking numbers).

    .venv/bin/python -m bench.hot_paths_cpu checkout track_miss webhook
    BENCH_N=500 BENCH_PROFILE=/tmp/prof .venv/bin/python -m bench.hot_paths_cpu checkout

``BENCH_PROFILE=<prefix>`` writes a pyinstrument profile per path (pyinstrument must
be installed; it is not a dependency). Runs on SQLite, and on PostgreSQL too when
``KUNDE_BENCH_POSTGRES_URL`` names a server.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench._databases import on_each_database

N = int(os.environ.get("BENCH_N", "200"))
PATHS = ("checkout", "track", "track_miss", "track_json", "webhook")


async def _client(kernel: Any) -> httpx.AsyncClient:
    from kunde.app import create_app

    app = create_app(kernel=kernel)
    app.state.kernel = kernel
    key = (await kernel.access.create_api_key("bench", ["commerce:*", "fulfilment:*"]))[1]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                             headers={"Authorization": f"Bearer {key}"})


async def _checkout(kernel: Any, c: httpx.AsyncClient) -> list[Callable[[], Awaitable[Any]]]:
    skus = [f"HOT-{i:03d}" for i in range(50)]
    (await c.post("/v1/catalog/locations", json=[{"code": "wh", "name": "W"}])
     ).raise_for_status()
    (await c.post("/v1/catalog/products", json=[
        {"code": s, "title": s, "category": "Bench", "variants": [
            {"sku": s, "price_minor": 1000 + i, "currency": "EUR", "stock": {"wh": 10**6}}]}
        for i, s in enumerate(skus)])).raise_for_status()
    carts = []
    for i in range(N + 20):
        cart_id = (await c.post("/v1/carts", json={"currency": "EUR"})).json()["cart_id"]
        for sku in (skus[i % 50], skus[(i * 7 + 3) % 50]):
            (await c.post(f"/v1/carts/{cart_id}/lines",
                          json={"sku": sku, "quantity": 1 + i % 2})).raise_for_status()
        carts.append(cart_id)

    async def one(cart_id: str) -> None:
        r = await c.post(f"/v1/carts/{cart_id}/checkout", json={"payment_method": "test_approve"},
                         headers={"Idempotency-Key": f"hot-{cart_id}"})
        if r.status_code != 201:
            raise RuntimeError(r.text)

    return [lambda cart_id=cart_id: one(cart_id) for cart_id in carts]


async def _webhooks(kernel: Any, c: httpx.AsyncClient) -> list[Callable[[], Awaitable[Any]]]:
    from bench.fulfilment_common import SECRET
    from bench.fulfilment_webhooks import bodies
    from kunde.fulfilment.config import FulfilmentConfig

    await kernel.service(FulfilmentConfig).add_carrier_secret("postnord", SECRET)

    async def one(body: bytes, hdrs: dict[str, str]) -> None:
        r = await c.post("/webhooks/carriers/postnord", content=body, headers=hdrs)
        if r.status_code != 202:
            raise RuntimeError(r.text)

    return [lambda b=b, h=h: one(b, h) for b, h in bodies(N + 20, 1)]


async def _measure(label: str, work: list[Callable[[], Awaitable[Any]]],
                   statements: Counter[str], counting: list[bool]) -> dict[str, Any]:
    for w in work[:20]:  # warm-up: caches, compiled statements
        await w()
    work = work[20:]
    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="enabled")
        profiler.start()
    statements.clear()
    counting[0] = True
    cpu0 = time.process_time()
    for w in work:
        await w()
    cpu = time.process_time() - cpu0
    counting[0] = False
    if profiler is not None:
        profiler.stop()
        Path(f"{os.environ['BENCH_PROFILE']}-{label}.txt").write_text(
            profiler.output_text(unicode=False, color=False))
    n = len(work)
    return {"requests": n, "cpu_ms_per_request": round(cpu * 1000 / n, 3),
            "statements_per_request": round(sum(statements.values()) / n, 2),
            "statements": {k: round(v / n, 2) for k, v in sorted(statements.items())}}


async def _run_path(url: str, tmp: Path, what: str) -> dict[str, Any]:
    from sqlalchemy import event as sa_event

    from kunde.kernel import close_kernel, open_kernel
    from kunde.settings import load_settings

    settings = load_settings(environ={}, env="test", data_dir=str(tmp / what),
                             database_url=url if "postgresql" in url else
                             f"sqlite+aiosqlite:///{tmp / what / 'k.db'}",
                             run_consumers=False, log_json=False, log_level="WARNING")
    if what.startswith("track"):  # the shipment is prepared by its own kernel first
        from bench.fulfilment_tracking_page import prepare

        await prepare(settings)
    kernel = await open_kernel(settings)
    statements: Counter[str] = Counter()
    counting = [False]

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if counting[0]:
            statements[statement.split(None, 1)[0].upper()] += 1

    for engine in {kernel.db.writer, kernel.db.reader}:
        sa_event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with await _client(kernel) as c:
            if what == "checkout":
                return await _measure(what, await _checkout(kernel, c), statements, counting)
            if what.startswith("track"):
                return await _measure(what, await _tracking_existing(kernel, c, what),
                                      statements, counting)
            out = await _measure(what, await _webhooks(kernel, c), statements, counting)
            out["apply"] = await _apply(kernel, statements, counting)
            return out
    finally:
        await close_kernel(kernel)


async def _tracking_existing(kernel: Any, c: httpx.AsyncClient, what: str
                             ) -> list[Callable[[], Awaitable[Any]]]:
    import sqlalchemy as sa

    from kunde.fulfilment.pages import TrackingPages
    from kunde.fulfilment.tables import shipments

    async with kernel.db.read() as conn:
        token = (await conn.execute(sa.select(shipments.c.token).limit(1))).scalar_one()
    pages = kernel.service(TrackingPages)
    path = f"/v1/track/{token}" if what == "track_json" else f"/track/{token}"

    async def one() -> None:
        if what == "track_miss":
            pages._items.clear()
        r = await c.get(path)
        if r.status_code != 200:
            raise RuntimeError(r.text)

    return [one for _ in range(N + 20)]


async def _apply(kernel: Any, statements: Counter[str], counting: list[bool]
                 ) -> dict[str, Any]:
    from kunde.fulfilment.service import FulfilmentService

    service = kernel.service(FulfilmentService)
    statements.clear()
    counting[0] = True
    updates, cpu0 = 0, time.process_time()
    while (summary := await service.apply_pending()) != "nothing to apply":
        updates += sum(int(part.split()[-1]) for part in summary.split(", "))
    cpu = time.process_time() - cpu0
    counting[0] = False
    return {"updates": updates, "cpu_ms_per_update": round(cpu * 1000 / max(updates, 1), 3),
            "statements_per_update": round(sum(statements.values()) / max(updates, 1), 2)}


def main() -> dict[str, Any]:
    chosen = [a for a in sys.argv[1:] if a in PATHS] or list(PATHS)
    out: dict[str, Any] = {"benchmark": "hot_paths_cpu", "requests": N}
    for what in chosen:
        async def run(url: str, tmp: Path, what: str = what) -> dict[str, Any]:
            (tmp / what).mkdir(parents=True, exist_ok=True)
            return await _run_path(url, tmp, what)

        out[what] = on_each_database(f"hot-{what}", run)
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
