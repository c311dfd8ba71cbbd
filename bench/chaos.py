"""Chaos run: mixed load while processes are killed with SIGKILL, then an oracle.

PostgreSQL (default): 2 ``kunde serve`` (no consumers) + 2 ``kunde worker`` on a scratch
database. ``--sqlite``: the embedded mode, one ``kunde serve`` with its consumers (only
server kills). Load, open loop, spread over the servers:

* ingestion: ``POST /v1/batch`` of 3 track calls; 25 % of the batches are client retries
  that re-send an earlier batch with the same messageIds; failed batches are re-sent;
* checkouts: ``POST /v1/carts/{id}/checkout`` with an Idempotency-Key, re-sent until paid;
* tracking updates: signed carrier webhooks, 25 % re-sent with the same webhook id;
* loyalty: redemptions with an Idempotency-Key and goodwill grants with a cause id,
  25 % of each re-sent;
* reads: ``GET /v1/catalog/products/{code}``.

Every ``--kill-every`` seconds a random server or worker gets SIGKILL and is restarted at
once. Half-way, PostgreSQL itself goes down: with ``--restart-postgres`` an immediate
restart of the cluster (``pg_ctlcluster … restart -m immediate``: only where nothing else
uses the server), otherwise every connection to the scratch database is terminated
(``pg_terminate_backend``: what clients see of a restart). Afterwards the oracle checks:
every acknowledged messageId stored exactly once, every paid checkout one order with one
``commerce.order_paid``, every acknowledged webhook, redemption and goodwill grant
present once, every ledger transaction balanced and every account equal to the replay
of its entries, no member below zero, consumers caught up.

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
from bench.black_friday import SKUS, _catalog, _prepare
from bench.fulfilment_common import SECRET

MEMBERS = 200
PROGRAMME = """
points_name: points
currency: EUR
earn_rules:
  - {id: purchase, label: every euro spent, event: commerce.order_paid,
     points_per: {field: amount_minor, per: 100, points: 1}}
rewards:
  - {id: chaos_voucher, name: Chaos voucher, kind: voucher_amount, value: 100, cost: 10}
"""

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


async def _setup(url: str, data_dir: str) -> tuple[str, str, list[str]]:
    """Keys, a carrier secret, a programme with a cheap reward, members with points."""
    from kunde.fulfilment.config import FulfilmentConfig
    from kunde.kernel import close_kernel, open_kernel
    from kunde.loyalty.service import LoyaltyService
    from kunde.loyalty.service_programme import ProgrammeService, parse_programme
    from kunde.profiles.service import ProfileService
    from kunde.settings import load_settings

    kernel = await open_kernel(load_settings(environ={}, env="dev", database_url=url,
                                             data_dir=data_dir, run_consumers=False))
    try:
        _, key = await kernel.access.create_api_key(
            "chaos", ["commerce:*", "loyalty:*", "fulfilment:*"])
        _, write_key = await kernel.access.create_source("chaos-shop", "web")
        await kernel.service(FulfilmentConfig).add_carrier_secret("postnord", SECRET)
        await kernel.service(ProgrammeService).apply(parse_programme(PROGRAMME), actor="chaos")
        members = []
        for i in range(MEMBERS):
            cid = await kernel.service(ProfileService).ensure_customer(
                {"email": f"member{i}@chaos.example"}, "web")
            async with kernel.db.transaction() as uow:
                await kernel.service(LoyaltyService).grant_goodwill(
                    uow, cid, 1_000_000, "chaos stake", f"stake-{cid}")
            members.append(cid)
        return key, write_key, members
    finally:
        await close_kernel(kernel)


def _restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart",
                    "-m", "immediate"], check=True, capture_output=True, timeout=120)


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
                  paid: dict[str, str], wait: float, *, webhooks: set[str],
                  redemptions: set[tuple[str, str]], goodwill: set[str]) -> dict[str, Any]:
    import sqlalchemy as sa

    from kunde.core.ids import derived_id
    from kunde.fulfilment.tables import tracking_inbox
    from kunde.kernel import close_kernel, open_kernel
    from kunde.loyalty.tables import accounts, entries, transactions
    from kunde.loyalty.tables import redemptions as redemption_rows
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
            async with kernel.db.read() as conn:  # the tracking inbox is applied by a job
                unapplied = (await conn.execute(
                    sa.select(sa.func.count()).select_from(tracking_inbox)
                    .where(tracking_inbox.c.processed_at.is_(None)))).scalar_one()
            if not any(lag.values()) and not unapplied:
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
            inbox = dict((await conn.execute(
                sa.select(tracking_inbox.c.msg_id, tracking_inbox.c.processed_at))).all())
            redeemed = set((await conn.execute(sa.select(redemption_rows.c.id))).scalars())
            granted = Counter((await conn.execute(
                sa.select(transactions.c.cause_id).where(transactions.c.rule == "goodwill")
            )).scalars())
            unbalanced = (await conn.execute(
                sa.select(entries.c.txn_id).group_by(entries.c.txn_id)
                .having(sa.func.sum(entries.c.amount) != 0))).scalars().all()
            replay = sa.select(entries.c.account, sa.func.sum(entries.c.amount).label("sum")
                               ).group_by(entries.c.account).subquery()
            drifted = (await conn.execute(
                sa.select(accounts.c.account).select_from(accounts.outerjoin(
                    replay, replay.c.account == accounts.c.account))
                .where(accounts.c.balance != sa.func.coalesce(replay.c.sum, 0))
            )).scalars().all()
            negative = (await conn.execute(
                sa.select(accounts.c.account).where(accounts.c.account.like("m:%"),
                                                    accounts.c.balance < 0))).scalars().all()
        webhooks_missing = [m for m in webhooks if m not in inbox]
        webhooks_unapplied = [m for m in webhooks if inbox.get(m) is None]
        redemptions_missing = [k for k in redemptions
                               if derived_id("redemption", k[0], k[1]) not in redeemed]
        goodwill_missing = [c for c in goodwill if granted[c] == 0]
        goodwill_twice = [c for c, n in granted.items() if n > 1]
        ledger_ok = not (unbalanced or drifted or negative)
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
            "acknowledged_webhooks": len(webhooks), "webhooks_lost": len(webhooks_missing),
            "webhooks_not_applied": len(webhooks_unapplied),
            "acknowledged_redemptions": len(redemptions),
            "redemptions_lost": len(redemptions_missing),
            "acknowledged_goodwill": len(goodwill), "goodwill_lost": len(goodwill_missing),
            "goodwill_granted_twice": len(goodwill_twice),
            "ledger_transactions_unbalanced": len(unbalanced),
            "accounts_not_equal_to_replay": len(drifted), "members_below_zero": len(negative),
            "consumer_lag_after_wait": {k: v for k, v in lag.items() if v},
            "ok": not (missing or duplicated or orders_missing or orders_double or paid_twice
                       or paid_missing or any(lag.values()) or webhooks_missing
                       or webhooks_unapplied or redemptions_missing or goodwill_missing
                       or goodwill_twice or not ledger_ok),
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
    key, write_key, members = await _setup(url, data_dir)
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
        hooks_acked: set[str] = set()
        hooks_sent: list[tuple[str, bytes]] = []
        redeemed: set[tuple[str, str]] = set()
        redeem_sent: list[tuple[str, str]] = []
        granted: set[str] = set()
        grants_sent: list[tuple[str, str]] = []

        def webhook(msg_id: str, body: bytes) -> Request:
            from kunde.messaging import signing

            headers = signing.headers(SECRET, msg_id, int(time.time()), body)

            def done(status: int, _: bytes) -> None:
                if status in (202, 409):  # 409: that webhook id was already stored
                    hooks_acked.add(msg_id)
            return Request("interactive", "POST", "/webhooks/carriers/postnord", body,
                           headers, done)

        def redemption(member: str, ikey: str) -> Request:
            def done(status: int, _: bytes) -> None:
                if status == 201:
                    redeemed.add((member, ikey))
            return Request("critical", "POST", f"/v1/loyalty/members/{member}/redemptions",
                           dumps({"reward_id": "chaos_voucher"}),
                           {**auth, "Idempotency-Key": ikey}, done)

        def grant(member: str, cause: str) -> Request:
            def done(status: int, _: bytes) -> None:
                if status == 201:
                    granted.add(cause)
            return Request("critical", "POST", f"/v1/loyalty/members/{member}/goodwill",
                           dumps({"points": 5, "reason": "chaos", "cause_id": cause}),
                           auth, done)

        def side_request() -> Request:
            """Tracking, redemption or goodwill; a quarter re-send an earlier one."""
            pick = rng.random()
            retry = rng.random() < 0.25
            if pick < 0.5:
                if retry and hooks_sent:
                    return webhook(*rng.choice(hooks_sent))
                msg_id = f"msg_{uuid.uuid4().hex}"
                body = dumps({"events": [{
                    "itemId": f"CHAOS{rng.randrange(10_000):05d}", "eventCode": "IN_TRANSIT",
                    "eventTime": "2030-01-01T10:00:00Z", "eventDescription": "In transit",
                    "location": {"displayName": "Copenhagen"}}]})
                hooks_sent.append((msg_id, body))
                return webhook(msg_id, body)
            if pick < 0.8:
                if retry and redeem_sent:
                    return redemption(*rng.choice(redeem_sent))
                item = (rng.choice(members), f"chaos-{uuid.uuid4().hex}")
                redeem_sent.append(item)
                return redemption(*item)
            if retry and grants_sent:
                return grant(*rng.choice(grants_sent))
            item = (rng.choice(members), f"chaos-gw-{uuid.uuid4().hex}")
            grants_sent.append(item)
            return grant(*item)

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
            if pick < 0.5:
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
            if pick < 0.75:
                return side_request()
            if pick < 0.93:
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
                    if args.restart_postgres:
                        await asyncio.to_thread(_restart_postgres)
                    else:
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
        # Re-send what may have been lost in flight, as a carrier or a shop would: an
        # unanswered webhook, redemption or grant is sent again with the same id.
        for _ in range(10):
            todo = ([webhook(m, b) for m, b in hooks_sent if m not in hooks_acked]
                    + [redemption(*r) for r in redeem_sent if r not in redeemed]
                    + [grant(*g) for g in grants_sent if g[1] not in granted])
            if not todo:
                break
            conn = loads[0].pool.get_nowait()
            for req in todo:
                try:
                    status, body = await conn.request(req, 15)
                except (OSError, TimeoutError, EOFError, ValueError):
                    continue
                if req.on_done:
                    req.on_done(status, body)
            loads[0].pool.put_nowait(conn)
            await asyncio.sleep(1)
        oracle = await _oracle(url, data_dir, acked, paid, wait=args.catch_up,
                               webhooks=hooks_acked, redemptions=redeemed,
                               goodwill={g for g in granted})
        return {
            "backend": "sqlite" if args.sqlite else "postgresql",
            "duration_s": args.duration, "rate_per_s": args.rate,
            "kills": len(fleet.kills), "killed": Counter(k.split("-")[0] for k in fleet.kills),
            "postgres_outage_once": ("immediate restart" if args.restart_postgres
                                     else "connections terminated") if scratch else None,
            "sent": {"webhooks": len(hooks_sent), "redemptions": len(redeem_sent),
                     "goodwill": len(grants_sent)},
            "responses_by_status": {str(k): v for k, v in sorted(statuses.items())},
            "oracle": oracle,
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
    p.add_argument("--restart-postgres", action="store_true",
                   help="restart the PostgreSQL cluster for real half-way (a machine of its own)")
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
