"""Chaos run: mixed load while processes are killed with SIGKILL, then an oracle.

PostgreSQL (default): 2 ``kunde serve`` (no consumers) + 2 ``kunde worker`` on a scratch
database. ``--sqlite``: the embedded mode, one ``kunde serve`` with its consumers (only
server kills). Load, open loop, spread over the servers:

* ingestion: ``POST /v1/batch`` of 3 track calls; 25 % of the batches are client retries
  that re-send an earlier batch with the same messageIds; failed batches are re-sent;
* checkouts: ``POST /v1/carts/{id}/checkout`` with an Idempotency-Key, re-sent until paid;
* reads: ``GET /v1/catalog/products/{code}``.

Every ``--kill-every`` seconds a random server or worker gets SIGKILL and is restarted at
once; half-way, every connection to the database is terminated (``pg_terminate_backend``:
what clients see of a PostgreSQL restart; this machine's server is shared, so it is not
restarted for real). Afterwards the oracle checks: every acknowledged messageId stored
exactly once, every paid checkout one order with one ``commerce.order_paid``, consumers
caught up.

    python -m bench.chaos --duration 600 --rate 60        # one command; LONG, by name
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench._load import Load, Request, dumps
from bench._servers import (
    PG_URL,
    free_port,
    kill_group,
    kunde_env,
    start_kunde,
    stop,
    temp_dir,
    wait_http,
)
from bench.black_friday import SKUS, _catalog, _credentials, _prepare

LONG = True
RESULTS = Path(__file__).parent / "results"


class Fleet:
    """The processes under test, restartable on the same ports."""

    def __init__(self, url: str, data_dir: str, servers: int, workers: int) -> None:
        self.url, self.data_dir = url, data_dir
        self.ports = [free_port() for _ in range(servers)]
        consumers = "true" if workers == 0 else "false"
        self.env = kunde_env(data_dir, KUNDE_DATABASE_URL=url, KUNDE_RUN_CONSUMERS=consumers)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.worker_names = [f"worker-{i}" for i in range(workers)]
        self.kills: list[str] = []

    def start(self, name: str) -> None:
        log = Path(self.data_dir) / f"{name}.log"
        if name.startswith("server"):
            port = self.ports[int(name.split("-")[1])]
            self.procs[name] = start_kunde(port, self.env, log=log)
        else:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "kunde", "worker"], env=self.env,
                stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def start_all(self) -> None:
        for i in range(len(self.ports)):
            self.start(f"server-{i}")
        for i, port in enumerate(self.ports):
            wait_http(f"http://127.0.0.1:{port}/health/live", self.procs[f"server-{i}"])
        for name in self.worker_names:
            self.start(name)

    def kill_one(self, rng: random.Random) -> str:
        name = rng.choice(sorted(self.procs))
        kill_group(self.procs[name])  # SIGKILL to the process and its granian workers
        self.kills.append(name)
        self.start(name)
        return name

    def stop_all(self) -> None:
        for proc in self.procs.values():
            stop(proc)


async def _terminate_connections(db_name: str) -> int:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(PG_URL)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()", db_name)
        return len(rows)
    finally:
        await conn.close()


async def _oracle(url: str, data_dir: str, acked_messages: set[str],
                  paid: dict[str, str], wait: float) -> dict[str, Any]:
    import sqlalchemy as sa

    from kunde.kernel import close_kernel, open_kernel
    from kunde.settings import load_settings
    from kunde.store.consumers import consumer_lag
    from kunde.store.tables import events

    kernel = await open_kernel(load_settings(environ={}, env="dev", database_url=url,
                                             data_dir=data_dir, run_consumers=False),
                               run_migrations=False)
    try:
        deadline = time.monotonic() + wait
        lag: dict[str, int] = {}
        while time.monotonic() < deadline:
            lag = await consumer_lag(kernel.db)
            if not any(lag.values()):
                break
            await asyncio.sleep(1)
        stored: Counter[str] = Counter()
        paid_events: Counter[str] = Counter()
        after = 0
        while True:
            async with kernel.db.read() as conn:
                batch = await kernel.log.read(conn, after=after, limit=5000)
            if not batch:
                break
            after = batch[-1].position
            for e in batch:
                if e.type.startswith("ingest.") and e.payload:
                    stored[str(e.payload.get("message_id"))] += 1
                elif e.type == "commerce.order_paid" and e.payload:
                    paid_events[str(e.payload.get("order_id"))] += 1
        async with kernel.db.read() as conn:
            orders = dict((await conn.execute(sa.text(
                "SELECT cart_id, COUNT(*) FROM commerce_orders WHERE cart_id IS NOT NULL "
                "GROUP BY cart_id"))).all())
            total_events = (await conn.execute(
                sa.select(sa.func.count()).select_from(events))).scalar_one()
        missing = [m for m in acked_messages if stored[m] == 0]
        duplicated = [m for m, n in stored.items() if n > 1]
        orders_missing = [c for c in paid if orders.get(c, 0) == 0]
        orders_double = [c for c, n in orders.items() if n > 1]
        paid_twice = [o for o, n in paid_events.items() if n > 1]
        paid_missing = [o for o in paid.values() if paid_events[o] == 0]
        return {
            "events_in_log": int(total_events),
            "acknowledged_messages": len(acked_messages),
            "acknowledged_lost": len(missing), "messages_stored_twice": len(duplicated),
            "paid_checkouts": len(paid), "paid_orders_missing": len(orders_missing),
            "orders_per_cart_over_1": len(orders_double),
            "order_paid_events_twice": len(paid_twice),
            "order_paid_events_missing": len(paid_missing),
            "consumer_lag_after_wait": {k: v for k, v in lag.items() if v},
            "ok": not (missing or duplicated or orders_missing or orders_double or paid_twice
                       or paid_missing or any(lag.values())),
        }
    finally:
        await close_kernel(kernel)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    data_dir = temp_dir("kunde-chaos-")
    scratch = None
    if args.sqlite:
        url = f"sqlite+aiosqlite:///{data_dir}/kunde.db"
        servers, workers = 1, 0
    else:
        import asyncpg

        scratch = f"kunde_chaos_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'CREATE DATABASE "{scratch}"')
        await conn.close()
        url = PG_URL.rsplit("/", 1)[0] + f"/{scratch}"
        servers, workers = 2, 2
    key, write_key = await _credentials(url, data_dir)
    fleet = Fleet(url, data_dir, servers, workers)
    try:
        await asyncio.to_thread(fleet.start_all)
        loads = [Load("127.0.0.1", p, connections=64, timeout=15) for p in fleet.ports]
        await _catalog(loads[0], key)
        carts = await _prepare(loads[0], key, int(args.rate * args.duration * 0.3) + 10)
        auth = {"Authorization": f"Bearer {key}"}
        basic = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
        acked: set[str] = set()
        sent_batches: list[list[dict[str, Any]]] = []
        retry_batches: list[list[dict[str, Any]]] = []
        paid: dict[str, str] = {}
        retry_carts: list[str] = []
        cart_iter = iter(carts)

        def ingest_done(batch: list[dict[str, Any]]) -> Any:
            def done(status: int, body: bytes) -> None:
                if 200 <= status < 300:
                    acked.update(m["messageId"] for m in batch)
                else:
                    retry_batches.append(batch)
            return done

        def checkout_done(cart: str) -> Any:
            def done(status: int, body: bytes) -> None:
                try:
                    data = json.loads(body) if status == 201 else {}
                except ValueError:
                    data = {}
                if data.get("status") == "paid":
                    paid[cart] = str(data.get("order_id"))
                elif cart not in paid:
                    retry_carts.append(cart)
            return done

        def make(i: int) -> Request:
            pick = rng.random()
            if pick < 0.6:
                if retry_batches:
                    batch = retry_batches.pop(0)
                elif sent_batches and rng.random() < 0.25:
                    batch = rng.choice(sent_batches)  # a client retry of the same messageIds
                else:
                    batch = [{"type": "track", "event": "Product Viewed",
                              "userId": f"u{rng.randrange(2000)}",
                              "messageId": str(uuid.uuid4()),
                              "properties": {"sku": rng.choice(SKUS)}} for _ in range(3)]
                    sent_batches.append(batch)
                return Request("background", "POST", "/v1/batch", dumps({"batch": batch}),
                               basic, ingest_done(batch))
            if pick < 0.9:
                cart = retry_carts.pop(0) if retry_carts else next(cart_iter, None)
                if cart is not None:
                    return Request("critical", "POST", f"/v1/carts/{cart}/checkout",
                                   dumps({"payment_method": "test_approve"}),
                                   {**auth, "Idempotency-Key": f"chaos-{cart}"},
                                   checkout_done(cart))
            return Request("interactive", "GET", f"/v1/catalog/products/{rng.choice(SKUS)}",
                           b"", auth)

        def make_retry(i: int) -> Request:
            if retry_batches:
                batch = retry_batches.pop(0)
                return Request("background", "POST", "/v1/batch", dumps({"batch": batch}),
                               basic, ingest_done(batch))
            if retry_carts:
                cart = retry_carts.pop(0)
                return Request("critical", "POST", f"/v1/carts/{cart}/checkout",
                               dumps({"payment_method": "test_approve"}),
                               {**auth, "Idempotency-Key": f"chaos-{cart}"},
                               checkout_done(cart))
            return Request("interactive", "GET", f"/v1/catalog/products/{SKUS[0]}", b"", auth)

        async def chaos() -> None:
            started = time.monotonic()
            terminated = False
            while time.monotonic() - started < args.duration:
                await asyncio.sleep(args.kill_every * rng.uniform(0.7, 1.3))
                if time.monotonic() - started >= args.duration:
                    break
                await asyncio.to_thread(fleet.kill_one, rng)
                if scratch and not terminated and time.monotonic() - started > args.duration / 2:
                    await _terminate_connections(scratch)
                    terminated = True

        async def traffic() -> None:
            per = args.rate / len(loads)
            await asyncio.gather(*[ld.run(make, per, args.duration) for ld in loads])
            # Drain: re-send what failed until acknowledged (bounded), as clients would.
            for _ in range(30):
                for ld in loads:
                    await ld.drain()
                if not retry_batches and not retry_carts:
                    break
                await asyncio.sleep(1)
                pending = len(retry_batches) + len(retry_carts)
                await loads[0].run(make_retry, max(pending, 1), 1)

        await asyncio.gather(chaos(), traffic())
        for ld in loads:
            await ld.drain()
        statuses = Counter(o.status for ld in loads for o in ld.outcomes)
        oracle = await _oracle(url, data_dir, acked, paid, wait=args.catch_up)
        return {
            "backend": "sqlite" if args.sqlite else "postgresql",
            "duration_s": args.duration, "rate_per_s": args.rate,
            "kills": len(fleet.kills), "killed": Counter(k.split("-")[0] for k in fleet.kills),
            "db_connections_terminated_once": bool(scratch),
            "responses_by_status": {str(k): v for k, v in sorted(statuses.items())},
            "oracle": oracle,
            "not_covered": "tracking updates and loyalty redemptions are not in the mix yet",
        }
    finally:
        fleet.stop_all()
        if scratch:
            import asyncpg

            conn = await asyncpg.connect(PG_URL)
            await conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
            await conn.close()


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    p.add_argument("--duration", type=float, default=float(env("BENCH_DURATION", "600")))
    p.add_argument("--rate", type=float, default=float(env("BENCH_RATE", "60")),
                   help="requests per second over all servers (about 70 %% of capacity)")
    p.add_argument("--kill-every", type=float, default=15.0)
    p.add_argument("--catch-up", type=float, default=120.0,
                   help="seconds to wait for consumers after the load")
    p.add_argument("--sqlite", action="store_true", help="embedded mode: one server, SQLite")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args(argv)


def main() -> dict[str, Any]:
    import logging

    logging.disable(logging.WARNING)
    return asyncio.run(_run(_args(sys.argv[1:] if __name__ == "__main__" else [])))


if __name__ == "__main__":
    result = main()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chaos.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
