"""Black Friday: find capacity C, hold 3xC, spike to 10xC, and watch shedding by class.

One real ``kunde serve`` (granian, consumers running) on a fresh SQLite file (or a
scratch PostgreSQL database with ``--postgres``). Traffic, open loop:

* critical (10 %): ``POST /v1/carts/{id}/checkout`` on prepared carts (Idempotency-Key);
* interactive (60 %): ``GET /v1/catalog/products/{code}``;
* background (30 %): ``POST /v1/batch`` with 5 Segment track calls (shed as 429).

Phases: warm-up, capacity search (the realistic mix, rising rates; C = the highest rate whose
interactive p99 ≤ 10 ms), then 3xC, then the spike at 10xC, then 1xC to measure the
recovery (the time until 3 consecutive seconds without shedding and with interactive
p99 ≤ 10 ms). Per phase and class: admitted p99, success and shed rates, goodput.
Charts: ``bench/results/black_friday_*.svg``.

    python -m bench.black_friday --spike 60 --steady 20      # one command; LONG, by name
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench._load import CLASSES, Load, Request, dumps, pct, summarise
from bench._servers import PG_URL, free_port, kunde_env, start_kunde, stop, temp_dir, wait_http

LONG = True
RESULTS = Path(__file__).parent / "results"
SKUS = [f"BF-{i:03d}" for i in range(40)]
MIX = (("critical", 0.10), ("interactive", 0.60), ("background", 0.30))
P99_TARGET_S = 0.010


async def _credentials(url: str, data_dir: str) -> tuple[str, str]:
    from kunde.kernel import close_kernel, open_kernel
    from kunde.settings import load_settings

    kernel = await open_kernel(load_settings(environ={}, env="dev", database_url=url,
                                             data_dir=data_dir, run_consumers=False))
    try:
        _, key = await kernel.access.create_api_key("bench", ["commerce:*"])
        _, write_key = await kernel.access.create_source("bench-shop", "web")
        return key, write_key
    finally:
        await close_kernel(kernel)


async def _catalog(load: Load, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    setup = [
        Request("x", "POST", "/v1/catalog/locations",
                dumps([{"code": "wh", "name": "Warehouse"}]), auth),
        Request("x", "POST", "/v1/catalog/products", dumps([
            {"code": sku, "title": f"Item {sku}", "category": "Deals",
             "variants": [{"sku": sku, "price_minor": 1999 + i, "currency": "EUR",
                           "stock": {"wh": 10_000_000}}]} for i, sku in enumerate(SKUS)]), auth),
    ]
    conn = load.pool.get_nowait()
    for req in setup:
        status, body = await conn.request(req, 60)
        if status >= 300:
            raise RuntimeError(f"setup failed: {status} {body[:300]!r}")
    load.pool.put_nowait(conn)


async def _prepare(load: Load, key: str, carts: int) -> list[str]:
    auth = {"Authorization": f"Bearer {key}"}
    ids: list[str] = []
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            c = await load.pool.get()
            try:
                cart = await _until_done(c, Request(
                    "x", "POST", "/v1/carts", dumps({"currency": "EUR"}), auth))
                cart_id = json.loads(cart)["cart_id"]
                await _until_done(c, Request(
                    "x", "POST", f"/v1/carts/{cart_id}/lines",
                    dumps({"sku": SKUS[i % len(SKUS)], "quantity": 1}), auth))
                ids.append(cart_id)
            finally:
                load.pool.put_nowait(c)

    await asyncio.gather(*[one(i) for i in range(carts)])
    return ids


async def _until_done(conn: Any, req: Request) -> bytes:
    """Set-up requests honour shedding: wait and try again, as a polite client does."""
    for _ in range(100):
        status, body = await conn.request(req, 60)
        if status < 300:
            return bytes(body)
        if status not in (429, 503):
            raise RuntimeError(f"{req.path}: {status} {body[:300]!r}")
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{req.path}: still shed after 100 attempts")


def _maker(key: str, write_key: str, carts: list[str], mix: tuple[tuple[str, float], ...]
           ) -> Any:
    auth = {"Authorization": f"Bearer {key}"}
    basic = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    cursor = [0]
    weights = [(cls, sum(w for _, w in mix[: i + 1])) for i, (cls, _) in enumerate(mix)]

    def make(i: int) -> Request:
        pick = (i * 0.6180339887) % 1.0  # evenly spread, deterministic
        cls = next(c for c, edge in weights if pick < edge + 1e-12)
        if cls == "critical":
            cart = carts[cursor[0] % len(carts)]
            cursor[0] += 1
            return Request(cls, "POST", f"/v1/carts/{cart}/checkout",
                           dumps({"payment_method": "test_approve"}),
                           {**auth, "Idempotency-Key": f"bf-{cart}"})
        if cls == "interactive":
            return Request(cls, "GET", f"/v1/catalog/products/{SKUS[i % len(SKUS)]}", b"", auth)
        batch = [{"type": "track", "event": "Product Viewed", "userId": f"u{i % 5000}",
                  "messageId": str(uuid.uuid4()), "properties": {"sku": SKUS[i % len(SKUS)]}}
                 for _ in range(5)]
        return Request(cls, "POST", "/v1/batch", dumps({"batch": batch}), basic)

    return make


async def _phase(load: Load, make: Any, rate: float, seconds: float) -> tuple[float, float]:
    start = time.perf_counter()
    await load.run(make, rate, seconds)
    end = time.perf_counter()
    await load.drain()
    return start, end


def _per_second(load: Load, t0: float, t1: float) -> list[dict[str, Any]]:
    rows = []
    for s in range(int(t1 - t0) + 1):
        rows.append(summarise(load.outcomes, t0 + s, t0 + s + 1))
    return rows


def _recovery(load: Load, spike_end: float, end: float) -> float | None:
    good = 0
    for s in range(int(end - spike_end)):
        window = [o for o in load.outcomes if spike_end + s <= o.at < spike_end + s + 1]
        shed = any(o.status in (429, 503) for o in window)
        p99 = pct([o.latency for o in window if o.cls == "interactive"
                   and 200 <= o.status < 300], 0.99)
        good = good + 1 if not shed and p99 is not None and p99 <= P99_TARGET_S * 1000 else 0
        if good == 3:
            return float(s - 2)
    return None


def _charts(rows: list[dict[str, Any]], t0: float, marks: dict[str, float]) -> list[str]:
    from kunde.ops.charts import COLOURS, Series, line_chart

    starts = [int(t0) + i for i in range(len(rows))]

    def series(field: str, scale: float = 1.0, dashed: bool = False) -> list[Series]:
        return [Series(f"{c} {field.split('_')[0]}",
                       [None if r.get(c, {}).get(field) is None else r[c][field] * scale
                        for r in rows], COLOURS[c], dashed) for c in CLASSES]

    RESULTS.mkdir(exist_ok=True)
    out = []
    shed_rates = [Series(f"{c} shed/s", [r.get(c, {}).get("sent", 0) * r.get(c, {}).get(
        "shed_rate", 0) for r in rows], COLOURS[c], True) for c in CLASSES]
    for name, title, unit, lines in (
        ("throughput", "Goodput (solid) and shed (dashed) per second", "req/s",
         series("goodput_per_s") + shed_rates),
        ("latency", "Admitted p99 per class", "ms", series("admitted_p99_ms")),
    ):
        marks_text = ", ".join(f"{k} at +{v:.0f} s" for k, v in marks.items())
        path = RESULTS / f"black_friday_{name}.svg"
        path.write_text(line_chart(f"{title} ({marks_text})", unit, starts, lines))
        out.append(str(path))
    return out


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = temp_dir("kunde-bf-")
    scratch = None
    if args.postgres:
        import asyncpg  # type: ignore[import-untyped]

        scratch = f"kunde_bf_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f'CREATE DATABASE "{scratch}"')
        await conn.close()
        url = PG_URL.rsplit("/", 1)[0] + f"/{scratch}"
    else:
        url = f"sqlite+aiosqlite:///{data_dir}/kunde.db"
    key, write_key = await _credentials(url, data_dir)
    port = free_port()
    server = start_kunde(port, kunde_env(data_dir, KUNDE_DATABASE_URL=url),
                         log=Path(data_dir) / "server.log")
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/health/live", server)
        load = Load("127.0.0.1", port, connections=args.connections)
        await _catalog(load, key)
        carts = await _prepare(load, key, args.max_carts)
        make = _maker(key, write_key, carts, MIX)
        # Warm up (caches, connections, the admission limit), then search the capacity
        # with the realistic mix: the highest rate whose interactive p99 stays <= 10 ms.
        await _phase(load, make, 20, 5)
        capacity, steps = 0.0, {}
        for rate in (20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640):
            t0, t1 = await _phase(load, make, rate, args.step)
            got = summarise(load.outcomes, t0, t1 + 60)
            steps[str(rate)] = got
            inter = got.get("interactive", {})
            if all(v.get("success_rate", 0) >= 0.99 for v in got.values()) and \
                    (inter.get("admitted_p99_ms") or 1e9) <= P99_TARGET_S * 1000:
                capacity = float(rate)
            else:
                break
        capacity = capacity or 20.0
        load.outcomes.clear()
        t0, steady_end = await _phase(load, make, 3 * capacity, args.steady)
        spike_start, spike_end = await _phase(load, make, 10 * capacity, args.spike)
        rec_start, rec_end = await _phase(load, make, capacity, args.recovery)
        rows = _per_second(load, t0, rec_end)
        charts = _charts(rows, t0, {"spike": spike_start - t0, "recovery": rec_start - t0})
        spike = summarise(load.outcomes, spike_start, spike_end)
        critical = spike.get("critical", {})
        shed_p99 = max((v.get("shed_p99_ms") or 0) for v in spike.values()) if spike else None
        goodput = sum(v["goodput_per_s"] for v in spike.values())
        recovery = _recovery(load, spike_end, rec_end)
        return {
            "backend": "postgresql" if args.postgres else "sqlite",
            "capacity_C_per_s": capacity, "capacity_search": steps,
            "steady_3C": summarise(load.outcomes, t0, steady_end),
            "spike_10C": spike,
            "recovery_1C": summarise(load.outcomes, rec_start, rec_end),
            "goodput_in_spike_per_s": round(goodput, 1),
            "goodput_vs_C": round(goodput / capacity, 3),
            "recovery_seconds": recovery,
            "targets": {
                "critical_success_ge_0.999": critical.get("success_rate", 0) >= 0.999,
                "critical_p99_le_50ms": (critical.get("admitted_p99_ms") or 1e9) <= 50,
                "shed_p99_le_5ms": shed_p99 is not None and shed_p99 <= 5,
                "goodput_ge_0.9C": goodput >= 0.9 * capacity,
                "recovery_le_10s": recovery is not None and recovery <= 10,
            },
            "charts": charts,
            "durations_s": {"step": args.step, "steady": args.steady, "spike": args.spike,
                            "recovery": args.recovery},
            "note": "load generator and server share the machine's 2 cores (and other users)",
        }
    finally:
        stop(server)
        if scratch:
            import asyncpg

            conn = await asyncpg.connect(PG_URL)
            await conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
            await conn.close()


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.black_friday", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    p.add_argument("--spike", type=float, default=float(env("BENCH_SPIKE", "60")),
                   help="seconds at 10xC")
    p.add_argument("--steady", type=float, default=float(env("BENCH_STEADY", "20")),
                   help="seconds at 3xC")
    p.add_argument("--recovery", type=float, default=float(env("BENCH_RECOVERY", "20")),
                   help="seconds at 1xC after the spike")
    p.add_argument("--step", type=float, default=float(env("BENCH_STEP", "10")),
                   help="seconds per rate in the capacity search")
    p.add_argument("--connections", type=int, default=256)
    p.add_argument("--max-carts", type=int, default=5000)
    p.add_argument("--postgres", action="store_true", help=f"use a scratch DB on {PG_URL}")
    return p.parse_args(argv)


def main() -> dict[str, Any]:
    import logging

    logging.disable(logging.WARNING)
    return asyncio.run(_run(_args(sys.argv[1:] if __name__ == "__main__" else [])))


if __name__ == "__main__":
    result = main()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "black_friday.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
