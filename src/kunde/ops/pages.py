"""The operations console page: live load figures and charts for the last hour.

Charts are SVG rendered here from the in-process `LoadHistory` (the same figures
``/metrics`` exports); ``console.js`` refreshes the page's figures and chart URLs
from ``/console/ops/figures`` every five seconds.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from kunde.core.errors import NotFound
from kunde.kernel import Kernel
from kunde.ops.charts import COLOURS, Series, line_chart
from kunde.ops.history import Point
from kunde.ops.models import CLASSES
from kunde.store.consumers import consumer_lag
from kunde.web.deps import KernelDep
from kunde.web.pages import page

SPANS = {3600: 60, 900: 15, 300: 5}  # seconds shown -> seconds per point
OPT = {"permission": "ops:read", "criticality": "background"}


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def chart(name: str, points: list[Point]) -> str:
    starts = [p.start for p in points]
    per_s = [p.seconds for p in points]
    if name == "throughput":
        return line_chart("Admitted requests per second", "req/s", starts, [
            Series(c.label, [p.admitted[c] / s for p, s in zip(points, per_s, strict=True)],
                   COLOURS[c.label]) for c in reversed(CLASSES)])
    if name == "latency":
        series = []
        for c in reversed(CLASSES):
            series.append(Series(f"{c.label} p99", [_ms(p.p99[c]) for p in points],
                                 COLOURS[c.label]))
            series.append(Series("p50", [_ms(p.p50[c]) for p in points], COLOURS[c.label],
                                 dashed=True))
        return line_chart("Latency of admitted requests (p99 solid, p50 dashed)", "ms", starts,
                          series)
    if name == "shed":
        return line_chart("Shed requests per second", "req/s", starts, [
            Series(c.label, [p.shed[c] / s for p, s in zip(points, per_s, strict=True)],
                   COLOURS[c.label]) for c in reversed(CLASSES)])
    if name == "errors":
        rates: list[float | None] = []
        for p in points:
            total = sum(p.admitted)
            rates.append(100 * sum(p.errors) / total if total else None)
        return line_chart("Error rate (5xx of admitted)", "%", starts,
                          [Series("all", rates, COLOURS["all"])])
    if name == "lag":
        return line_chart("Consumer lag", "events", starts, [
            Series("all consumers", [None if p.lag is None else float(p.lag) for p in points],
                   COLOURS["all"])])
    raise NotFound(f"no chart called {name!r}", code="ops.unknown_chart")


CHARTS = ("throughput", "latency", "shed", "errors", "lag")


async def figures(kernel: Kernel, span: int) -> dict[str, Any]:
    m = kernel.metrics
    now = time.time()
    if m.database.up:
        with contextlib.suppress(Exception):  # the page must render during an outage
            m.history.record_lag(sum((await consumer_lag(kernel.db)).values()), now)
    state = m.admission.state(time.perf_counter()).label
    stamp = int(now)
    return {
        "limit": round(m.admission.limit, 1),
        "inflight": m.admission.inflight,
        "load": state,
        "database": "up" if m.database.up else "down",
        "admitted_total": sum(m.history.total_admitted),
        "shed_total": sum(m.history.total_shed),
        **{f"chart_{c}": f"/console/ops/charts/{c}.svg?span={span}&t={stamp}" for c in CHARTS},
    }


def _span(span: int) -> int:
    return span if span in SPANS else 3600


@get("/console/ops", opt=OPT, include_in_schema=False)
async def ops_page(request: Request[Any, Any, Any], kernel: KernelDep,
                   span: FromQuery[int] = 3600) -> Template:
    span = _span(span)
    return page(request, "ops/templates/ops.html", figures=await figures(kernel, span), span=span,
                spans=sorted(SPANS, reverse=True), charts=CHARTS)


@get("/console/ops/figures", opt=OPT, tags=["ops"],
     summary="Live load figures and chart URLs for the operations page")
async def ops_figures(kernel: KernelDep, span: FromQuery[int] = 3600) -> dict[str, Any]:
    return await figures(kernel, _span(span))


@get("/console/ops/charts/{name:str}", opt=OPT, tags=["ops"],
     summary="One operations chart as SVG (throughput, latency, shed, errors, lag)")
async def ops_chart(kernel: KernelDep, name: FromPath[str],
                    span: FromQuery[int] = 3600) -> Response[str]:
    span = _span(span)
    points = kernel.metrics.history.series(time.time(), span=span, bucket=SPANS[span])
    svg = chart(name.removesuffix(".svg"), points)
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})
