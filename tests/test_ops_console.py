"""The operations page: live figures and SVG charts from the same history as /metrics."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from kunde.app import create_app
from kunde.kernel import Kernel
from kunde.ops.charts import Series, line_chart
from kunde.ops.models import Criticality
from kunde.ops.pages import CHARTS


@asynccontextmanager
async def in_loop_client(kernel: Kernel) -> AsyncIterator[httpx.AsyncClient]:
    """The app served in this test's own event loop (the database pool is bound to it)."""
    app = create_app(kernel=kernel)
    async with app.lifespan(), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as c:
        yield c



async def _ops_page_figures_and_charts(ops_client: httpx.AsyncClient, kernel: Kernel,
                                           admin_headers: dict[str, str]) -> None:
    for _ in range(5):
        assert (await ops_client.get("/health/live")).status_code == 200
    kernel.metrics.history.record_shed(Criticality.BACKGROUND, time.time())
    kernel.metrics.history.record_lag(3, time.time())

    r = await ops_client.get("/console/ops?span=300", headers=admin_headers)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    for name in CHARTS:
        assert f"/console/ops/charts/{name}.svg?span=300" in r.text
    assert 'data-live="/console/ops/figures?span=300"' in r.text

    figures = (await ops_client.get("/console/ops/figures?span=300", headers=admin_headers)).json()
    assert figures["load"] in ("normal", "warn", "throttle")
    assert figures["database"] == "up" and figures["shed_total"] == 1
    assert figures["admitted_total"] >= 5

    for name in CHARTS:
        r = await ops_client.get(figures[f"chart_{name}"], headers=admin_headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
        svg = ET.fromstring(r.text)  # noqa: S314 - our own SVG
        assert svg.tag.endswith("svg")
        if name in ("throughput", "shed", "lag"):
            assert svg.findall(".//{http://www.w3.org/2000/svg}path"), name
    r = await ops_client.get("/console/ops/charts/nope.svg", headers=admin_headers)
    assert r.status_code == 404 and r.json()["code"] == "ops.unknown_chart"
    assert (await ops_client.get("/console/ops/figures")).status_code == 401


def test_chart_draws_gaps_and_escapes_labels() -> None:
    svg = line_chart("<b>t</b>", "ms", [0, 60, 120],
                     [Series("a&b", [1.0, None, 3.0], "#000")])
    root = ET.fromstring(svg)  # noqa: S314 - our own SVG
    path = root.find(".//{http://www.w3.org/2000/svg}path")
    assert path is not None and path.get("d", "").count("M") == 2
    assert "<b>" not in svg and "a&amp;b" in svg


async def test_ops_page_figures_and_charts(kernel: Kernel, admin_headers: dict[str, str]) -> None:
    async with in_loop_client(kernel) as ops_client:
        await _ops_page_figures_and_charts(ops_client, kernel, admin_headers)
