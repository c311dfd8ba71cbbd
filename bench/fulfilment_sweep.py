"""The promise-risk sweep over 1,000,000 open shipments.

Loads 1,000,000 open outbound shipments with set-based SQL (2 % past their
promise, ~3 % silent past their expected next scan), then times
`CareService.flag()`: the two indexed ``UPDATE`` statements that mark newly late
and newly silent shipments. Then times acting on 2,000 flagged shipments (event on
the timeline + apology message each). Target: sweep <= 60 s.
Run: ``.venv/bin/python -m bench.fulfilment_sweep`` (SHIPMENTS=… to change the size).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bench.fulfilment_common import temp_settings

SHIPMENTS = int(os.environ.get("SHIPMENTS", "1000000"))
COLUMNS = ("id, order_id, order_number, customer_id, kind, carrier, service, tracking_number, "
           "token, lines, country, status, status_at, promised_date, promised_by, "
           "expected_scan_by, is_open, risk, care_due, created_at, updated_at")

SQLITE = """
INSERT INTO shipments (COLUMNS)
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < :count)
SELECT printf('00000000-0000-4000-8000-%012d', x), printf('order-%d', x), printf('K%d', x),
       printf('00000000-0000-4000-9000-%012d', x % 20000), 'outbound', 'postnord', 'parcel',
       printf('BENCH%d', x), printf('tok%d', x), '{}', 'DK', 'in_transit', :now,
       :promised, CASE WHEN x % 50 = 0 THEN :past ELSE :future END,
       CASE WHEN x % 33 = 0 THEN :past ELSE :future END, 1, 'ok', 0, :now, :now
FROM n
"""

POSTGRES = """
INSERT INTO shipments (COLUMNS)
SELECT '00000000-0000-4000-8000-' || lpad(x::text, 12, '0'), 'order-' || x, 'K' || x,
       '00000000-0000-4000-9000-' || lpad((x % 20000)::text, 12, '0'), 'outbound', 'postnord',
       'parcel', 'BENCH' || x, 'tok' || x, CAST('{}' AS jsonb), 'DK', 'in_transit', :now,
       :promised, CASE WHEN x % 50 = 0 THEN CAST(:past AS timestamptz)
                       ELSE CAST(:future AS timestamptz) END,
       CASE WHEN x % 33 = 0 THEN CAST(:past AS timestamptz)
            ELSE CAST(:future AS timestamptz) END, true, 'ok', false, :now, :now
FROM generate_series(1, :count) AS x
""".replace("COLUMNS", COLUMNS)
SQLITE = SQLITE.replace("COLUMNS", COLUMNS)


def sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


async def load(kernel: Any, now: datetime) -> float:
    past, future = now - timedelta(hours=1), now + timedelta(days=3)
    started = time.perf_counter()
    async with kernel.db.transaction() as uow:
        if uow.dialect == "sqlite":
            await uow.execute(sa.text(SQLITE), {
                "count": SHIPMENTS, "now": sqlite_time(now), "past": sqlite_time(past),
                "future": sqlite_time(future), "promised": "2030-03-06"})
        else:
            await uow.execute(sa.text(POSTGRES), {
                "count": SHIPMENTS, "now": now, "past": past, "future": future,
                "promised": date(2030, 3, 6)})
    async with kernel.db.transaction() as uow:
        await uow.execute(sa.text("ANALYZE"))
    return time.perf_counter() - started


async def run() -> dict[str, Any]:
    from kunde.core.clock import FrozenClock
    from kunde.fulfilment.service_care import CareService
    from kunde.kernel import close_kernel, open_kernel

    # Loading a million rows is one long statement: allow it (statement timeout = 6x).
    _, url, settings = temp_settings("sweep", db_timeout_seconds=60.0)
    now = datetime(2030, 3, 5, 12, tzinfo=UTC)
    kernel = await open_kernel(settings, clock=FrozenClock(now))
    try:
        load_s = await load(kernel, now)
        care = kernel.service(CareService)
        t0 = time.perf_counter()
        flagged = await care.flag()
        sweep_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = await care.flag()
        idle_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        acted = await care.act_on_due(limit=2000)
        act_s = time.perf_counter() - t0
    finally:
        await close_kernel(kernel)
    return {"benchmark": "fulfilment_sweep", "database": url.split(":")[0],
            "open_shipments": SHIPMENTS, "load_seconds": round(load_s, 1),
            "sweep_seconds": round(sweep_s, 2), "flagged": flagged,
            "second_sweep_seconds": round(idle_s, 2), "second_sweep_flagged": again,
            "care_actions": acted, "care_actions_per_s": round(acted / act_s),
            "target_sweep_seconds": 60}


def main() -> dict[str, Any]:
    return asyncio.run(run())


if __name__ == "__main__":
    print(json.dumps(main()))
