"""Time from the 200 OK of an ``identify`` to the merged profile, at a steady event rate.

A real `kunde serve` on SQLite with its consumers running receives 10 batches/s of
100 events (1,000 events/s); each batch holds a page view of a new anonymous visitor
and an ``identify`` tying that visitor to a new user id. A poller on the same database
checks every 50 ms (one query) which of the acknowledged pairs resolve to one customer
and records the delay since the 200. Two set-ups: the server running its consumers
(embedded), and the server ingesting while one `kunde worker` runs the consumers.
Target: p99 <= 1 s.

    python -m bench.ingest_merge_latency          # BENCH_SECONDS=10
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench._servers import free_port, kunde_env, start_kunde, stop, temp_dir, wait_http

RATE = float(os.environ.get("BENCH_BATCHES_PER_S", "10"))


def _batch(n: int) -> bytes:
    events: list[dict[str, Any]] = [
        {"type": "track", "event": "Product Viewed", "anonymousId": f"browse-{(n * 98 + i) % 3000}",
         "messageId": f"t-{n}-{i}", "properties": {"sku": f"S{i}", "price": 9.5}}
        for i in range(98)]
    events.append({"type": "page", "anonymousId": f"visitor-{n}", "name": "Home",
                   "messageId": f"p-{n}"})
    events.append({"type": "identify", "anonymousId": f"visitor-{n}", "userId": f"member-{n}",
                   "traits": {"email": f"member-{n}@example.com"}, "messageId": f"i-{n}"})
    return json.dumps({"batch": events}).encode()


async def _measure(url: str, db_url: str, data_dir: str, auth: str, seconds: int
                   ) -> dict[str, Any]:
    from kunde.kernel import close_kernel, open_kernel
    from kunde.settings import load_settings

    kernel = await open_kernel(load_settings(environ={}, env="dev", data_dir=data_dir,
                                             database_url=db_url), run_migrations=False)
    acked: dict[int, float] = {}
    delays: list[float] = []
    stop_polling = asyncio.Event()

    from kunde.profiles import graph

    vault = kernel.vault

    async def poll() -> None:
        # One query per poll for every pending pair, so the poller stays cheap.
        while not (stop_polling.is_set() and not acked):
            pending = list(acked.items())
            hashes = {n: (vault.blind_index("anonymous_id", f"visitor-{n}"),
                          vault.blind_index("user_id", f"member-{n}")) for n, _ in pending}
            if pending:
                async with kernel.db.read() as conn:
                    owners = await graph.owners(conn, [h for pair in hashes.values()
                                                       for h in pair])
                for n, t0 in pending:
                    anon, user = (owners.get(h) for h in hashes[n])
                    if anon is not None and user is not None and anon[1] == user[1]:
                        delays.append(time.perf_counter() - t0)
                        del acked[n]
            await asyncio.sleep(0.05)

    poller = asyncio.create_task(poll())
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async def send(n: int) -> None:
            r = await client.post("/v1/batch", content=_batch(n), headers={
                "Authorization": f"Basic {auth}", "Content-Type": "application/json"})
            if r.status_code == 200:
                acked[n] = time.perf_counter()

        start = time.perf_counter()
        tasks = []
        for n in range(int(RATE * seconds)):
            delay = start + n / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(n)))
        await asyncio.gather(*tasks)
    stop_polling.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(poller, timeout=30)
    await close_kernel(kernel)
    delays.sort()
    if not delays:
        return {"batches_sent": int(RATE * seconds), "merged": 0}
    return {"batches_sent": int(RATE * seconds), "merged": len(delays),
            "not_merged_in_30s": len(acked),
            "p50_ms": round(delays[len(delays) // 2] * 1000),
            "p99_ms": round(delays[max(int(len(delays) * 0.99) - 1, 0)] * 1000),
            "max_ms": round(delays[-1] * 1000)}


def run(mode: str, seconds: int) -> dict[str, Any]:
    """``embedded``: one server running its consumers; ``worker``: the server only
    ingests and one `kunde worker` process runs the consumers (the second core)."""
    data_dir = temp_dir("bench-merge-")
    db_url = f"sqlite+aiosqlite:///{data_dir}/kunde.db"
    env = kunde_env(data_dir, KUNDE_DATABASE_URL=db_url,
                    KUNDE_RUN_CONSUMERS="true" if mode == "embedded" else "false")
    key = subprocess.run([sys.executable, "-m", "kunde", "sources", "create", "bench"],
                         env=env, capture_output=True, text=True, check=True
                         ).stdout.strip().splitlines()[-1]
    auth = base64.b64encode(f"{key}:".encode()).decode()
    port = free_port()
    proc = start_kunde(port, env, log=Path(data_dir) / "server.log")
    worker = None
    if mode == "worker":
        worker = subprocess.Popen([sys.executable, "-m", "kunde", "worker"], env=env,
                                  stdout=(Path(data_dir) / "worker.log").open("ab"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health/live", proc)
        return asyncio.run(_measure(url, db_url, data_dir, auth, seconds))
    finally:
        stop(proc)
        if worker is not None:
            stop(worker)


def main() -> dict[str, Any]:
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    modes = os.environ.get("BENCH_MODES", "embedded,worker").split(",")
    return {"benchmark": "ingest_merge_latency", "database": "sqlite",
            "events_per_s": RATE * 100, "seconds": seconds,
            **{mode: run(mode, seconds) for mode in modes},
            "load_average_after": os.getloadavg()}


if __name__ == "__main__":
    print(json.dumps(main()))
