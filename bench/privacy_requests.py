"""Export and erasure of one customer with 10,000 events, 100 orders and a loyalty history.

Seeding is not timed: 10,000 event-log entries about the customer (shaped like
``ingest.track`` payloads, under a type no consumer reads, so seeding stays quick),
100 orders through commerce's order import (when commerce is installed) and goodwill
grants through loyalty (when installed); then every consumer catches up. Timed: building
and storing the export bundle through every ``Feature.export`` hook (target 10 s), and
one erasure through every ``Feature.erase`` hook with key shredding (target 5 s).
SQLite by default; PostgreSQL too when ``KUNDE_BENCH_POSTGRES_URL`` names a server (a
scratch database is created and dropped). Per-section export times are reported.

    .venv/bin/python bench/privacy_requests.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

EVENTS = 10_000
ORDERS = 100
GOODWILL = 50
TARGET_EXPORT_S = 10.0
TARGET_ERASE_S = 5.0


async def _seed(kernel: Any, cid: str) -> dict[str, int]:
    from kunde.core.events import Event
    from kunde.features import all_features
    from kunde.runtime import consumers_of
    from kunde.store.consumers import ConsumerRunner

    for start in range(0, EVENTS, 1000):
        async with kernel.db.transaction() as uow:
            for i in range(start, start + 1000):
                uow.emit(Event.new("bench.product_viewed", {
                    "message_id": f"m{i}", "user_id": "bench-user", "event": "Product Viewed",
                    "properties": {"sku": f"SKU-{i % 300}", "price_minor": 1999,
                                   "currency": "EUR"},
                    "context": {"page": {"url": f"https://shop.example/p/{i % 300}"}},
                    "channel": "web"}, subject_id=cid, source="web"))
    seeded = {"events": EVENTS, "orders": 0, "goodwill": 0}
    try:
        from kunde.commerce.external import ExternalLineIn, ExternalOrderIn, import_orders

        await import_orders(kernel, [ExternalOrderIn(
            external_id=f"bench-{cid}-{n}", currency="EUR", customer_id=cid,
            lines=[ExternalLineIn(sku=f"SKU-{n % 50}", quantity=1 + n % 3,
                                  unit_price_minor=2500, title=f"Item {n}")])
            for n in range(ORDERS)])
        seeded["orders"] = ORDERS
    except ImportError:
        pass
    try:
        from kunde.loyalty.service import LoyaltyService

        svc = kernel.service(LoyaltyService)
        async with kernel.db.transaction() as uow:
            for n in range(GOODWILL):
                await svc.grant_goodwill(uow, cid, 10, "bench", f"bench-{cid}-{n}")
        seeded["goodwill"] = GOODWILL
    except ImportError:
        pass
    runner = ConsumerRunner(kernel.db, kernel.log, consumers_of(kernel, all_features()),
                            lambda: frozenset(range(kernel.settings.partitions)))
    await runner.drain()
    return seeded


async def _run(url: str, tmp: Path) -> dict[str, Any]:
    from kunde.core.ids import new_id
    from kunde.kernel import close_kernel, open_kernel
    from kunde.privacy.erasure import ErasureService
    from kunde.privacy.export import ExportService
    from kunde.settings import load_settings

    settings = load_settings(environ={}, env="test", data_dir=str(tmp), database_url=url,
                             run_consumers=False, log_json=False)
    kernel = await open_kernel(settings)
    try:
        cid = new_id()
        seeded = await _seed(kernel, cid)
        exports = ExportService(kernel)
        rid = await exports.request(cid, requested_by="system:bench", channel="bench")
        t0 = time.perf_counter()
        await exports.run(rid)
        export_s = time.perf_counter() - t0
        row = await exports.get(rid)
        erasure = ErasureService(kernel)
        t0 = time.perf_counter()
        receipt = await erasure.run(await erasure.request(cid, requested_by="system:bench",
                                                          channel="bench"))
        erase_s = time.perf_counter() - t0
        return {"seeded": seeded, "export_s": round(export_s, 3),
                "export_sections_s": exports.timings,
                "export_state": row["state"], "export_events": (row["summary"] or {}).get(
                    "events"), "export_bytes": (row["summary"] or {}).get("bytes"),
                "erase_s": round(erase_s, 3), "erased_features": sorted(receipt["features"]),
                "export_ok": export_s <= TARGET_EXPORT_S, "erase_ok": erase_s <= TARGET_ERASE_S}
    finally:
        await close_kernel(kernel)


def main() -> dict[str, Any]:
    from _databases import pg_drop, pg_scratch

    out: dict[str, Any] = {"benchmark": "privacy_requests", "targets": {
        "export_s": TARGET_EXPORT_S, "erase_s": TARGET_ERASE_S}}
    tmp = Path(tempfile.mkdtemp(prefix="kunde-bench-privacy-"))
    out["sqlite"] = asyncio.run(_run(f"sqlite+aiosqlite:///{tmp / 'kunde.db'}", tmp))
    pg = os.environ.get("KUNDE_BENCH_POSTGRES_URL")
    if pg:
        url, name = asyncio.run(pg_scratch(pg))
        try:
            out["postgresql"] = asyncio.run(_run(url, tmp / "pg"))
        finally:
            asyncio.run(pg_drop(pg, name))
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
