"""Health and metrics endpoints."""

from __future__ import annotations

import asyncio
import logging
import time

import sqlalchemy as sa
from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kunde.kernel import Kernel
from kunde.store import migrate
from kunde.store.consumers import consumer_lag
from kunde.store.tables import dead_letters
from kunde.web.deps import KernelDep

log = logging.getLogger("kunde.ops")
STALL_SECONDS = 60.0
_schema_ok: dict[int, bool] = {}


@get("/health/live", opt={"public": True, "criticality": "critical"}, tags=["ops"],
     summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


async def readiness(kernel: Kernel) -> tuple[bool, dict[str, object]]:
    checks: dict[str, object] = {}
    ok = True
    health = kernel.metrics.database
    if not health.up:
        # The background probe already knows: answer at once instead of timing out again.
        return False, {"database": f"unreachable: {health.last_error}",
                       "database_down_since": round(health.since, 3)}
    try:
        await asyncio.wait_for(kernel.db.ping(), timeout=kernel.settings.db_timeout_seconds)
        checks["database"] = "ok"
    except Exception as exc:
        health.suspect()
        return False, {"database": f"unreachable: {type(exc).__name__}"}
    key = id(kernel)
    if not _schema_ok.get(key):
        _schema_ok[key] = await migrate.is_current(kernel.db)
    checks["migrations"] = "current" if _schema_ok[key] else "behind: run `kunde migrate`"
    ok &= _schema_ok[key]
    runner = kernel.metrics.runner
    if runner is not None:
        lag = await consumer_lag(kernel.db)
        now = asyncio.get_running_loop().time()
        stalled = [
            name for name, n in lag.items()
            if n > 0 and name in runner.stats
            and now - (runner.stats[name].last_progress or now) > STALL_SECONDS
        ]
        async with kernel.db.read() as conn:
            parked = (await conn.execute(
                sa.select(sa.func.count()).select_from(dead_letters))).scalar_one()
        checks["consumers"] = {"lag": lag, "stalled": stalled, "dead_letters": parked}
        ok &= not stalled
    return ok, checks


@get("/health/ready", opt={"public": True, "criticality": "critical"}, tags=["ops"],
     summary="Database reachable, schema current, consumers not stalled")
async def ready(kernel: KernelDep) -> Response[dict[str, object]]:
    started = time.perf_counter()
    ok, checks = await readiness(kernel)
    body: dict[str, object] = {"status": "ready" if ok else "not_ready", "checks": checks,
            "ms": round((time.perf_counter() - started) * 1000, 1)}
    return Response(body, status_code=200 if ok else 503)


@get("/metrics", opt={"permission": "ops:read"}, tags=["ops"], media_type=CONTENT_TYPE_LATEST,
     summary="Prometheus metrics")
async def metrics(kernel: KernelDep) -> Response[bytes]:
    m = kernel.metrics
    try:
        lag = await consumer_lag(kernel.db)
        for name, n in lag.items():
            m.consumer_lag.labels(name).set(n)
        m.history.record_lag(sum(lag.values()), time.time())
        async with kernel.db.read() as conn:
            m.events_total.set(await kernel.log.head(conn))
    except Exception as exc:  # metrics must answer even when the database does not
        log.warning("metrics without database figures: %r", exc)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
