"""Console pages: recommendation and next-best-offer preview, evaluation report, customer
value, experiments."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from litestar import Request, get
from litestar.params import FromQuery
from litestar.response import Template
from markupsafe import Markup

from kunde.personalisation import charts
from kunde.personalisation.service import RecommendationService
from kunde.personalisation.service_evaluation import chart
from kunde.personalisation.service_experiments import ExperimentService
from kunde.personalisation.service_offers import OfferService
from kunde.personalisation.service_scores import ScoresService
from kunde.personalisation.tables import evaluations, model_versions
from kunde.web.deps import KernelDep
from kunde.web.pages import page

T = "personalisation/templates/"


@get("/console/personalisation/", opt={"permission": "personalisation:read"},
     include_in_schema=False)
async def preview(request: Request[Any, Any, Any], kernel: KernelDep,
                  customer: FromQuery[str | None] = None, context: FromQuery[str] = "home",
                  limit: FromQuery[int] = 10, channel: FromQuery[str] = "web") -> Template:
    svc = kernel.service(RecommendationService)
    result = None
    offers = None
    channel = channel.strip() or "web"
    if customer is not None:
        result = await svc.recommend(customer.strip() or None, context.strip() or "home",
                                     limit)
        if customer.strip():
            offers = await kernel.service(OfferService).preview(customer.strip(), channel)
    async with kernel.db.read() as conn:
        latest = (await conn.execute(sa.select(model_versions).order_by(
            model_versions.c.created_at.desc()).limit(1))).first()
        report = (await conn.execute(sa.select(evaluations).order_by(
            evaluations.c.created_at.desc()).limit(1))).first()
    return page(request, T + "preview.html", result=result, customer=customer or "",
                context=context, status=svc.status(), offers=offers, channel=channel,
                latest=latest.summary if latest else None,
                report=report.report if report else None,
                chart=Markup(chart(report.report)) if report else None)  # noqa: S704


@get("/console/personalisation/value", opt={"permission": "personalisation:read"},
     include_in_schema=False)
async def value(request: Request[Any, Any, Any], kernel: KernelDep) -> Template:
    svc = kernel.service(ScoresService)
    dist = await svc.distribution()
    svg = charts.histogram("Customer lifetime value (next 12 months, minor units)",
                           [float(v) for v in dist["values"]])
    return page(request, T + "value.html", bands=dist["bands"], fit=dist["fit"],
                at_risk=await svc.at_risk(), chart=Markup(svg))  # noqa: S704


@get("/console/personalisation/experiments", opt={"permission": "experiments:read"},
     include_in_schema=False)
async def experiments_page(request: Request[Any, Any, Any], kernel: KernelDep) -> Template:
    svc = kernel.service(ExperimentService)
    results = []
    for exp in await svc.all():
        r = await svc.results(exp["key"])
        labels = [v["variant"] for v in r["variants"]]
        r["chart"] = Markup(charts.bars(  # noqa: S704
            f"{r['name']}: conversion", labels,
            {"conversion": [v["conversion_rate"] for v in r["variants"]]}, width=480,
            height=220))
        results.append(r)
    return page(request, T + "experiments.html", results=results,
                flags=await svc._all_flags())


PAGES = [preview, value, experiments_page]
