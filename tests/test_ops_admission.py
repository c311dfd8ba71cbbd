"""Admission control: the adaptive limit (pure), and shedding by class over HTTP under pressure."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar import Litestar, get, post

from kunde.app import create_app
from kunde.kernel import Kernel
from kunde.ops.admission import route_class
from kunde.ops.history import LoadHistory, percentile
from kunde.ops.metrics import Metrics
from kunde.ops.middleware import front_door
from kunde.ops.models import SHARE, Admission, Criticality, GradientLimit, LoadState


@asynccontextmanager
async def in_loop_client(kernel: Kernel) -> AsyncIterator[httpx.AsyncClient]:
    """The app served in this test's own event loop (the database pool is bound to it)."""
    app = create_app(kernel=kernel)
    async with app.lifespan(), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as c:
        yield c


# -- the limit --------------------------------------------------------------------------------


@given(st.lists(st.tuples(st.floats(0.0001, 5.0), st.integers(0, 2000)), max_size=300))
def test_limit_stays_within_bounds(samples: list[tuple[float, int]]) -> None:
    limit = GradientLimit(initial=20, min_limit=4, max_limit=500)
    for rtt, inflight in samples:
        value = limit.update(rtt, inflight)
        assert 4 <= value <= 500


@given(st.integers(0, 1000), st.sampled_from(list(Criticality)), st.floats(1, 1000))
def test_a_higher_class_is_admitted_whenever_a_lower_one_is(
    inflight: int, cls: Criticality, limit: float
) -> None:
    admission = Admission(GradientLimit(initial=limit, min_limit=1, max_limit=1000))
    admission.inflight = inflight
    admission.by_class = [inflight // 3, inflight // 3, inflight - 2 * (inflight // 3)]
    if admission.try_acquire(cls, 0.0):
        admission.inflight -= 1
        admission.by_class[cls] -= 1
        for higher in Criticality:
            if higher > cls:
                probe = copy.deepcopy(admission)
                assert probe.try_acquire(higher, 0.0)


@given(st.lists(st.tuples(st.sampled_from(list(Criticality)), st.booleans(),
                          st.floats(0.0001, 1.0)), max_size=400))
def test_inflight_counts_exactly_what_was_admitted(
    steps: list[tuple[Criticality, bool, float]]
) -> None:
    admission = Admission()
    held: list[Criticality] = []
    now = 0.0
    for cls, finish, rtt in steps:
        now += 0.01
        if finish and held:
            admission.release(held.pop(0), rtt, now)
        elif admission.try_acquire(cls, now):
            held.append(cls)
            if cls is not Criticality.CRITICAL:  # admitted only below its share of the limit
                assert admission.inflight <= admission.limit * SHARE[cls] + 1
        assert admission.inflight == len(held) >= 0
        assert admission.by_class == [held.count(c) for c in Criticality]


def test_limit_grows_when_latency_holds_and_shrinks_when_it_rises() -> None:
    limit = GradientLimit(initial=20, min_limit=4, max_limit=1000)
    for _ in range(50):
        limit.update(0.002, int(limit.limit))
    grown = limit.limit
    assert grown > 30
    for _ in range(50):
        limit.update(0.050, int(limit.limit))
    assert limit.limit < grown / 2
    # Not using the limit is no reason to raise it.
    idle = GradientLimit(initial=20)
    for _ in range(50):
        idle.update(0.002, 2)
    assert idle.limit == 20


def test_overload_backs_off_and_state_reports_shedding() -> None:
    admission = Admission(GradientLimit(initial=10, min_limit=4), critical_floor=4)
    assert admission.state(0.0) is LoadState.NORMAL
    for _ in range(6):
        assert admission.try_acquire(Criticality.BACKGROUND, 0.0)
    assert not admission.try_acquire(Criticality.BACKGROUND, 0.0)
    assert admission.state(0.1) is LoadState.WARN
    for _ in range(3):
        assert admission.try_acquire(Criticality.INTERACTIVE, 0.1)
    assert not admission.try_acquire(Criticality.INTERACTIVE, 0.1)
    assert admission.state(0.2) is LoadState.THROTTLE
    assert admission.state(5.0) is LoadState.THROTTLE  # still 9 of 10 in flight
    # Critical competes only with critical: nine lower-class requests do not starve it.
    for _ in range(10):
        assert admission.try_acquire(Criticality.CRITICAL, 5.0)
    assert not admission.try_acquire(Criticality.CRITICAL, 5.0)
    admission.release(Criticality.CRITICAL, 0.01, 5.0, overloaded=True)
    assert admission.limit == 9


def test_critical_requests_keep_a_floor_when_the_limit_has_shrunk() -> None:
    admission = Admission(GradientLimit(initial=4, min_limit=4), critical_floor=8)
    for _ in range(8):
        assert admission.try_acquire(Criticality.CRITICAL, 0.0)
    assert not admission.try_acquire(Criticality.CRITICAL, 0.0)
    assert not admission.try_acquire(Criticality.INTERACTIVE, 0.0)  # 8 in flight > 3.4


def test_slow_critical_requests_make_room_by_shrinking_the_limit() -> None:
    admission = Admission(limiter=GradientLimit(initial=20, min_limit=4))
    assert admission.try_acquire(Criticality.CRITICAL, 0.0)
    admission.release(Criticality.CRITICAL, 0.01, 0.01)  # within the objective
    assert admission.limit == 20
    for _ in range(3):
        assert admission.try_acquire(Criticality.CRITICAL, 0.0)
        admission.release(Criticality.CRITICAL, 0.2, 0.2)  # four times the objective
    assert admission.limit < 15
    # A slow interactive request alone does not count as an overload signal.
    before = admission.limit
    assert admission.try_acquire(Criticality.INTERACTIVE, 1.0)
    admission.release(Criticality.INTERACTIVE, 0.2, 1.2)
    assert admission.limit == before


def test_criticality_parsing() -> None:
    assert Criticality.parse(None) is Criticality.INTERACTIVE
    assert Criticality.parse("critical") is Criticality.CRITICAL
    with pytest.raises(ValueError, match="criticality"):
        Criticality.parse("urgent")


def test_history_percentiles_and_series() -> None:
    history = LoadHistory(seconds=120)
    for i in range(100):
        history.record(Criticality.INTERACTIVE, 0.001 if i < 98 else 0.2, 200, 1000.5)
    history.record(Criticality.CRITICAL, 0.004, 503, 1001.0)
    history.record_shed(Criticality.BACKGROUND, 1001.0)
    history.record_lag(7, 1001.0)
    points = history.series(1001.9, span=60, bucket=30)
    assert len(points) == 2
    last = points[-1]
    assert last.admitted == [0, 100, 1] and last.shed == [1, 0, 0] and last.errors == [0, 0, 1]
    assert last.p50[Criticality.INTERACTIVE] == 0.001
    assert last.p99[Criticality.INTERACTIVE] == 0.25
    assert last.lag == 7
    assert percentile([0, 0], 0.5) is None
    # A slot a full ring later is a new second, not an addition to the old one.
    history.record(Criticality.CRITICAL, 0.004, 200, 1121.0)
    assert history.series(1121.5, span=1, bucket=1)[0].admitted == [0, 0, 1]


# -- HTTP: pressure on a real ASGI stack --------------------------------------------------------

INFLIGHT = {"n": 0}


async def _work() -> dict[str, int]:
    # Latency grows with concurrency, as on a saturated CPU or database.
    INFLIGHT["n"] += 1
    try:
        await asyncio.sleep(0.002 * INFLIGHT["n"])
    finally:
        INFLIGHT["n"] -= 1
    return {"ok": 1}


@post("/checkout", opt={"public": True, "criticality": "critical"})
async def checkout() -> dict[str, int]:
    return await _work()


@get("/profile", opt={"public": True})
async def profile() -> dict[str, int]:
    return await _work()


@get("/report", opt={"public": True, "criticality": "background"})
async def report() -> dict[str, int]:
    return await _work()


@post("/v1/batch", opt={"public": True, "criticality": "background"})
async def batch() -> dict[str, int]:
    return await _work()


def _pressure_app(metrics: Metrics) -> Litestar:
    return Litestar([checkout, profile, report, batch], middleware=[front_door(metrics, False)])


async def test_pressure_sheds_background_first_and_critical_last() -> None:
    metrics = Metrics()
    app = _pressure_app(metrics)
    calls = [("POST", "/checkout"), ("GET", "/profile"), ("GET", "/report"),
             ("POST", "/v1/batch")] * 60
    # httpx's ASGI transport runs requests concurrently in this loop (the test client queues).
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        responses = await asyncio.gather(*[client.request(m, p) for m, p in calls])
    by_path: dict[str, list[Any]] = {}
    for (_, path), r in zip(calls, responses, strict=True):
        by_path.setdefault(path, []).append(r)

    def ok_rate(path: str) -> float:
        return sum(r.status_code < 300 for r in by_path[path]) / len(by_path[path])

    assert ok_rate("/checkout") > ok_rate("/profile") > ok_rate("/report")
    shed = [r for r in by_path["/report"] if r.status_code >= 300]
    assert shed and all(r.status_code == 503 for r in shed)
    body = shed[0].json()
    assert shed[0].headers["content-type"] == "application/problem+json"
    assert body["code"] == "service.overloaded" and body["status"] == 503
    assert int(shed[0].headers["retry-after"]) >= 1
    ingest = [r for r in by_path["/v1/batch"] if r.status_code >= 300]
    assert ingest and all(r.status_code == 429 for r in ingest)
    assert ingest[0].json()["code"] == "rate.limited"
    states = {r.headers["x-kunde-load"] for r in responses}
    assert states <= {"normal", "warn", "throttle"} and "throttle" in states
    h = metrics.history
    assert h.total_shed[Criticality.BACKGROUND] == len(shed) + len(ingest)
    assert sum(h.total_admitted) == sum(r.status_code < 300 for r in responses)
    assert metrics.admission.inflight == 0

    # Pressure gone: everything is admitted again and the state is back to normal.
    metrics.admission.recent_seconds = 0.2
    await asyncio.sleep(0.25)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/report")
    assert r.status_code == 200 and r.headers["x-kunde-load"] == "normal"


def test_route_class_reads_the_declaration() -> None:
    assert route_class(checkout) == (Criticality.CRITICAL, 503)
    assert route_class(profile) == (Criticality.INTERACTIVE, 503)
    assert route_class(batch) == (Criticality.BACKGROUND, 429)


async def _the_app_reports_load_and_exports_the_figures(
    ops_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    r = await ops_client.get("/health/live")
    assert r.status_code == 200 and r.headers["x-kunde-load"] == "normal"
    text = (await ops_client.get("/metrics", headers=admin_headers)).text
    assert 'kunde_admission_requests_total{criticality="critical",outcome="admitted"}' in text
    assert "kunde_admission_limit" in text and "kunde_database_up 1.0" in text


async def test_the_app_reports_load_and_exports_the_figures(
    kernel: Kernel, admin_headers: dict[str, str]
) -> None:
    async with in_loop_client(kernel) as ops_client:
        await _the_app_reports_load_and_exports_the_figures(ops_client, admin_headers)
