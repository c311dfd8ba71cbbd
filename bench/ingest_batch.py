"""Ingestion through ``POST /v1/batch`` (100 events per batch), SQLite and PostgreSQL.

A real `kunde serve` (granian, one worker, consumers off so only acknowledgement is
measured) is loaded by wrk with a Lua script that builds a fresh batch per request:
unique messageIds, 5,000 anonymous shoppers, a tenth of events from known users.
Phase 1: closed loop, acknowledged events/s. Phase 2: open loop at half that rate from
an asyncio client, latency percentiles. Target: >= 25,000 events/s; p99 <= 50 ms at half.

    python -m bench.ingest_batch                  # BENCH_SECONDS=10, both databases
    BENCH_DBS=sqlite python -m bench.ingest_batch
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench._servers import (
    PG_URL,
    free_port,
    kunde_env,
    require_wrk,
    start_kunde,
    stop,
    temp_dir,
    wait_http,
)

EVENTS_PER_BATCH = 100
LUA = r"""
local n = 0
local key = os.getenv("BENCH_AUTH")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic " .. key
local tid = tostring(math.random(1, 1000000000))
request = function()
  n = n + 1
  local parts = {}
  for i = 1, 100 do
    local shopper = math.random(1, 5000)
    local who
    if i % 10 == 0 then who = '"userId":"user-' .. shopper .. '"'
    else who = '"anonymousId":"anon-' .. shopper .. '"' end
    parts[i] = '{"type":"track","event":"Product Viewed","messageId":"' .. tid .. '-' .. n ..
      '-' .. i .. '",' .. who .. ',"timestamp":"2026-11-23T10:00:00Z",' ..
      '"properties":{"sku":"SKU-' .. (i % 50) .. '","price":19.99,"category":"shoes"},' ..
      '"context":{"ip":"10.0.0.1","library":{"name":"wrk","version":"1"}}}'
  end
  local body = '{"sentAt":"2026-11-23T10:00:01Z","batch":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format(nil, "/v1/batch", nil, body)
end
"""


def _database(kind: str, data_dir: str) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{data_dir}/kunde.db", None
    import asyncpg

    name = f"kunde_bench_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(create())
    return PG_URL.rsplit("/", 1)[0] + f"/{name}", name


def _drop(name: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(drop())


def _write_key(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "kunde", "sources", "create", "bench",
                           "--channel", "web"], env=env, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip().splitlines()[-1]


def _wrk(url: str, auth: str, seconds: int, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(LUA)
    done = subprocess.run(["/usr/bin/wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                           "--latency", "-s", fh.name, url],
                          env={**os.environ, "BENCH_AUTH": auth}, capture_output=True,
                          text=True, check=True)
    Path(fh.name).unlink()
    text = done.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
    assert m is not None, text
    total, elapsed = int(m.group(1)), float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    refused = int(errors.group(1)) if errors else 0
    acked = (total - refused) / elapsed
    # Only 200s count: a 429 (shed under load, "retry later") acknowledges nothing.
    out = {"acked_batches_per_s": round(acked, 1),
           "events_per_s": round(acked * EVENTS_PER_BATCH),
           "refused_429_or_other": float(refused), "requests": float(total)}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)$", text, re.M)
        if m:
            out[f"p{pct}_ms"] = round(float(m.group(1)) * {"us": 0.001, "ms": 1.0,
                                                          "s": 1000.0}[m.group(2)], 2)
    return out


def _batch(n: int) -> bytes:
    events = [{"type": "track", "event": "Product Viewed", "messageId": f"ol-{n}-{i}-{time.time()}",
               "anonymousId": f"anon-{(n * 7 + i) % 5000}", "timestamp": "2026-11-23T10:00:00Z",
               "properties": {"sku": f"SKU-{i % 50}", "price": 19.99}} for i in range(100)]
    return json.dumps({"batch": events}).encode()


async def _open_loop(url: str, auth: str, rate: float, seconds: int) -> dict[str, float]:
    """Send batches at a fixed rate (not waiting for answers) and time each one."""
    latencies: list[float] = []
    failures = 0
    bodies = [_batch(i) for i in range(int(rate * seconds) + 1)]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def one(body: bytes) -> None:
            nonlocal failures
            started = time.perf_counter()
            r = await client.post("/v1/batch", content=body, headers={
                "Authorization": f"Basic {auth}", "Content-Type": "application/json"})
            if r.status_code == 200:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                failures += 1

        tasks = []
        start = time.perf_counter()
        for i, body in enumerate(bodies):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.gather(*tasks)
    latencies.sort()
    if not latencies:
        return {"failures": float(failures)}
    return {"rate_batches_per_s": round(rate, 1), "events_per_s": round(rate * 100),
            "p50_ms": round(latencies[len(latencies) // 2], 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
            "failures": float(failures)}


def run(kind: str, seconds: int) -> dict[str, Any]:
    data_dir = temp_dir(f"bench-ingest-{kind}-")
    url_db, pg_name = _database(kind, data_dir)
    env = kunde_env(data_dir, KUNDE_DATABASE_URL=url_db, KUNDE_RUN_CONSUMERS="false")
    port = free_port()
    proc = None
    try:
        auth = base64.b64encode(f"{_write_key(env)}:".encode()).decode()
        proc = start_kunde(port, env, log=Path(data_dir) / "server.log")
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health/live", proc)
        _wrk(url, auth, 2, 8)  # warm up: customers for the shopper pool exist afterwards
        closed = _wrk(url, auth, seconds, 8)
        half = max(closed["acked_batches_per_s"] / 2, 1.0)
        opened = asyncio.run(_open_loop(url, auth, half, max(seconds // 2, 3)))
        return {"closed_loop": closed, "open_loop_half_rate": opened}
    finally:
        if proc is not None:
            stop(proc)
        if pg_name:
            _drop(pg_name)


def main() -> dict[str, Any]:
    require_wrk()
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    dbs = os.environ.get("BENCH_DBS", "sqlite,postgres").split(",")
    return {"benchmark": "ingest_batch", "events_per_batch": EVENTS_PER_BATCH,
            "seconds": seconds, **{db: run(db, seconds) for db in dbs},
            "load_average": os.getloadavg()}


if __name__ == "__main__":
    print(json.dumps(main()))
