"""Latency of ``GET /v1/profiles/{id}`` and ``GET /v1/profiles/lookup?kind=email``.

2,000 customers with traits (sealed), two identifiers and some activity are seeded
in-process; a real `kunde serve` (granian, one worker, consumers off) is then loaded by
an open-loop generator at exactly 1,000 requests/s (the target's condition), then by wrk
with 4 connections at saturation; each request for a random customer. Target: p99 <= 5 ms
at 1,000 requests/s.

    python -m bench.ingest_profile_get        # BENCH_SECONDS=10, BENCH_DBS=sqlite,postgres
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench._load import open_loop
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

CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "2000"))
LUA = r"""
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
request = function()
  return wrk.format("GET", paths[math.random(1, #paths)])
end
"""


async def _seed(url: str, data_dir: str) -> list[tuple[str, str]]:
    from kunde.kernel import close_kernel, open_kernel
    from kunde.profiles.service import ProfileService
    from kunde.settings import load_settings

    kernel = await open_kernel(load_settings(environ={}, env="dev", data_dir=data_dir,
                                             database_url=url))
    try:
        profiles = kernel.service(ProfileService)
        out = []
        for i in range(CUSTOMERS):
            email = f"Shopper.{i}@Example.com"
            cid = await profiles.ensure_customer(
                {"email": email, "user_id": f"user-{i}"}, "web",
                traits={"first_name": f"Shopper {i}", "locale": "de-DE", "city": "Berlin"})
            out.append((cid, email.lower()))
        await _in_process(profiles, out)
        return out
    finally:
        await close_kernel(kernel)


IN_PROCESS: dict[str, Any] = {}


async def _in_process(profiles: Any, customers: list[tuple[str, str]]) -> None:
    """Time the service calls without HTTP: wall and CPU per call (steadier when shared)."""
    import random
    import time

    rnd = random.Random(7)
    picks = [rnd.choice(customers) for _ in range(300)]
    for label, call in (("by_id", lambda c: profiles.get_profile(c[0])),
                        ("by_email", lambda c: profiles.profile_by_identifier("email", c[1]))):
        wall, cpu = time.perf_counter(), time.process_time()
        for c in picks:
            await call(c)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        IN_PROCESS[label] = {"ms_per_call_wall": round(wall / len(picks) * 1000, 3),
                             "cpu_ms_per_call": round(cpu / len(picks) * 1000, 3)}


def _wrk(url: str, paths: list[str], key: str, seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script, \
            tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        script.write(LUA)
        listing.write("\n".join(paths))
    done = subprocess.run(["/usr/bin/wrk", "-t1", "-c4", f"-d{seconds}s", "--latency", "-s",
                           script.name, url], capture_output=True, text=True, check=True,
                          env={**os.environ, "BENCH_PATHS": listing.name, "BENCH_KEY": key})
    Path(script.name).unlink()
    Path(listing.name).unlink()
    text = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out = {"req_per_s": rps, "non_2xx": float(errors.group(1)) if errors else 0.0}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)$", text, re.M)
        if m:
            out[f"p{pct}_ms"] = round(float(m.group(1)) * {"us": 0.001, "ms": 1.0,
                                                          "s": 1000.0}[m.group(2)], 2)
    return out


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    await conn.execute(sql)
    await conn.close()


def run(kind: str, seconds: int) -> dict[str, Any]:
    data_dir = temp_dir(f"bench-profile-{kind}-")
    pg_name = None
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir}/kunde.db"
    else:
        pg_name = f"kunde_bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(_pg(f'CREATE DATABASE "{pg_name}"'))
        url = PG_URL.rsplit("/", 1)[0] + f"/{pg_name}"
    proc = None
    try:
        customers = asyncio.run(_seed(url, data_dir))
        env = kunde_env(data_dir, KUNDE_DATABASE_URL=url, KUNDE_RUN_CONSUMERS="false")
        key = subprocess.run([sys.executable, "-m", "kunde", "keys", "create", "--name", "bench",
                              "--scopes", "profiles:read"], env=env, capture_output=True,
                             text=True, check=True).stdout.strip().splitlines()[-1]
        port = free_port()
        proc = start_kunde(port, env, log=Path(data_dir) / "server.log")
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health/live", proc)
        by_id = [f"/v1/profiles/{cid}" for cid, _ in customers]
        by_email = [f"/v1/profiles/lookup?kind=email&value={email}" for _, email in customers]
        _wrk(base, by_id, key, 2)  # warm up
        auth = {"Authorization": f"Bearer {key}"}
        return {"by_id_at_1000_per_s": open_loop(port, by_id, auth, rate=1000,
                                                  seconds=seconds),
                "by_email_at_1000_per_s": open_loop(port, by_email, auth, rate=1000,
                                                     seconds=seconds),
                "by_id_saturated_wrk_c4": _wrk(base, by_id, key, seconds),
                "by_email_saturated_wrk_c4": _wrk(base, by_email, key, seconds),
                "in_process": dict(IN_PROCESS)}
    finally:
        if proc is not None:
            stop(proc)
        if pg_name:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


def main() -> dict[str, Any]:
    require_wrk()
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    dbs = os.environ.get("BENCH_DBS", "sqlite,postgres").split(",")
    return {"benchmark": "ingest_profile_get", "customers": CUSTOMERS, "connections": 4,
            **{db: run(db, seconds) for db in dbs},
            "load_average": os.getloadavg()}


if __name__ == "__main__":
    print(json.dumps(main()))
