"""Event-log appends vs a raw executemany INSERT of the same rows, in the same run.

For SQLite (a temporary file, WAL, synchronous=FULL) and PostgreSQL (a temporary
database on ``KUNDE_BENCH_POSTGRES_URL``, default the local test server), batches of
100 and 500 events per transaction:

* ``kunde``: ``db.transaction()`` + ``uow.emit(Event.new(...))`` — the real path: event
  ids, partitioning, per-customer payload encryption, the PostgreSQL ordering lock.
* ``raw``: one ``INSERT`` executemany of rows with the same columns and payload sizes
  (ids made beforehand, no encryption), in one transaction on the same engine.

Target: kunde ≥ 50 % of raw.   ``python -m bench.event_log``  (BENCH_EVENTS=5000)
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

from bench._servers import PG_URL, temp_dir

BATCHES = (100, 500)
SEGMENTS = 5


async def _pg_admin(sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _measure(url: str, total: int) -> dict[str, Any]:
    from kunde.core.clock import utcnow
    from kunde.core.events import Event
    from kunde.core.ids import new_id
    from kunde.kernel import close_kernel, open_kernel
    from kunde.settings import load_settings
    from kunde.store.tables import events

    settings = load_settings(environ={}, env="dev", database_url=url,
                             data_dir=temp_dir("kunde-bench-log-"))
    kernel = await open_kernel(settings)
    customers = [new_id() for _ in range(200)]
    props = {"sku": "SKU-12345", "price_minor": 1999, "currency": "EUR", "quantity": 1,
             "category": "shoes", "channel": "web"}
    out: dict[str, Any] = {}
    try:
        async with kernel.db.transaction() as uow:  # data keys exist, as for known customers
            for c in customers:
                uow.emit(Event.new("bench.warmup", props, subject_id=c, source="bench"))
        for batch in BATCHES:
            rounds = max(SEGMENTS, total // batch)
            payload = json.dumps(props).encode() + b"\0" * 28  # same size as sealed
            now = utcnow()
            prepared = [[{
                "id": new_id(), "type": "interaction.recorded",
                "subject_id": customers[i % 200], "partition": i % 16, "source": "web",
                "occurred_at": now, "received_at": now, "payload": payload, "encrypted": True,
            } for i in range(batch)] for _ in range(rounds)]
            kunde_s = raw_s = 0.0
            # Alternate the two in segments so a noisy neighbour hurts both alike.
            for seg in range(SEGMENTS):
                mine = range(seg * rounds // SEGMENTS, (seg + 1) * rounds // SEGMENTS)
                started = time.perf_counter()
                for r in mine:
                    async with kernel.db.transaction() as uow:
                        for i in range(batch):
                            uow.emit(Event.new("interaction.recorded", props,
                                               subject_id=customers[(r * batch + i) % 200],
                                               source="web"))
                kunde_s += time.perf_counter() - started
                started = time.perf_counter()
                for r in mine:
                    async with kernel.db.writer.connect() as conn, conn.begin():
                        await conn.execute(events.insert(), prepared[r])
                raw_s += time.perf_counter() - started
            kunde_rate, raw_rate = rounds * batch / kunde_s, rounds * batch / raw_s
            out[f"batch_{batch}"] = {
                "kunde_events_per_s": round(kunde_rate), "raw_rows_per_s": round(raw_rate),
                "ratio": round(kunde_rate / raw_rate, 3), "events": rounds * batch,
            }
    finally:
        await close_kernel(kernel)
    return out


async def _run() -> dict[str, Any]:
    total = int(os.environ.get("BENCH_EVENTS", "5000"))
    result: dict[str, Any] = {}
    sqlite_dir = temp_dir("kunde-bench-sqlite-")
    result["sqlite"] = await _measure(f"sqlite+aiosqlite:///{sqlite_dir}/kunde.db", total)
    name = f"kunde_bench_{uuid.uuid4().hex[:8]}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # no PostgreSQL here: report it instead of failing the suite
        result["postgresql"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    else:
        try:
            result["postgresql"] = await _measure(PG_URL.rsplit("/", 1)[0] + f"/{name}", total)
        finally:
            await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ratios = [v["ratio"] for b in result.values() for v in b.values() if isinstance(v, dict)]
    result["worst_ratio"] = min(ratios) if ratios else None
    result["target"] = 0.5
    result["met"] = bool(ratios) and min(ratios) >= 0.5
    return result


def main() -> dict[str, Any]:
    import logging

    logging.disable(logging.WARNING)
    return asyncio.run(_run())


if __name__ == "__main__":
    print(json.dumps(main()))
