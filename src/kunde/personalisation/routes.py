"""Personalisation API: recommendations, next-best-offers, experiments, flags, model health."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from kunde.access.guard import current_principal
from kunde.core.errors import Forbidden
from kunde.personalisation.service import RecommendationService
from kunde.personalisation.service_experiments import ExperimentService
from kunde.personalisation.service_offers import OfferService
from kunde.personalisation.service_scores import ScoresService
from kunde.web.deps import KernelDep

TAGS = ["personalisation"]


def _check_customer(request: Request[Any, Any, Any], customer_id: str | None) -> None:
    principal = current_principal(request)
    if principal is None:
        raise Forbidden("not allowed", code="auth.forbidden")
    if principal.kind == "customer" and customer_id != principal.customer_id:
        raise Forbidden("a customer may only ask for their own data",
                        code="auth.not_your_customer")
    if customer_id and not principal.may_access_customer(customer_id):
        raise Forbidden("a customer may only ask for their own data",
                        code="auth.not_your_customer")


@get("/v1/recommendations", opt={"permission": "self", "criticality": "interactive"}, tags=TAGS,
     summary="Recommendations for a customer and context, each with a reason code")
async def recommendations(
    request: Request[Any, Any, Any], kernel: KernelDep,
    context: FromQuery[str] = "home", customer: FromQuery[str | None] = None,
    limit: FromQuery[int] = 10, category: FromQuery[str | None] = None,
    cart: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """``context`` is ``home``, ``cart`` or ``product:<SKU>``; ``cart=SKU,SKU`` gives the cart
    explicitly; ``category=a,b`` keeps only those categories. Unknown customers or products
    get non-personal fallbacks, never an error."""
    _check_customer(request, customer)
    svc = kernel.service(RecommendationService)
    return await svc.recommend(
        customer, context, limit,
        categories=[c for c in (category or "").split(",") if c],
        cart=[c for c in (cart or "").split(",") if c])


@get("/health/personalisation", opt={"public": True, "criticality": "critical"}, tags=["ops"],
     summary="Which recommendation model is served and whether it is degraded")
async def model_health(kernel: KernelDep) -> Response[dict[str, Any]]:
    svc = kernel.service(RecommendationService)
    await svc.ensure_fresh()
    status = svc.status()
    ok = status["status"] == "trained"
    return Response({"status": "ok" if ok else "degraded", "model": status},
                    status_code=200)


@get("/v1/customers/{customer_id:str}/scores", opt={"permission": "personalisation:read"},
     tags=TAGS, summary="CLV, P(alive) and churn-risk band of a customer")
async def customer_scores(kernel: KernelDep, customer_id: FromPath[str]) -> dict[str, Any]:
    return await kernel.service(ScoresService).scores(customer_id) or {
        "customer_id": customer_id, "scores": None}


@get("/v1/customers/{customer_id:str}/next-best-offers",
     opt={"permission": "personalisation:read"}, tags=TAGS,
     summary="The best offers for a customer on a channel, with the reasons of the decision")
async def next_best_offers(kernel: KernelDep, customer_id: FromPath[str],
                           channel: FromQuery[str] = "web", limit: FromQuery[int] = 3
                           ) -> dict[str, Any]:
    return await kernel.service(OfferService).next_best_offers(customer_id, channel,
                                                               max(1, min(limit, 20)))


class ExperimentIn(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    name: str
    variants: list[tuple[str, float]]


@post("/v1/experiments", opt={"permission": "experiments:write"}, tags=TAGS,
      summary="Create or update an experiment", status_code=201)
async def create_experiment(kernel: KernelDep, data: JSONBody[ExperimentIn]) -> dict[str, str]:
    await kernel.service(ExperimentService).create(data.key, data.name, data.variants)
    return {"key": data.key}


@post("/v1/experiments/{key:str}/exposures/{customer_id:str}", opt={"permission": "self"},
      tags=TAGS, summary="Assign a customer to a variant and log the exposure", status_code=200)
async def expose(request: Request[Any, Any, Any], kernel: KernelDep, key: FromPath[str],
                 customer_id: FromPath[str]) -> dict[str, str]:
    _check_customer(request, customer_id)
    variant = await kernel.service(ExperimentService).expose(key, customer_id)
    return {"experiment": key, "customer_id": customer_id, "variant": variant}


@get("/v1/experiments/{key:str}/results", opt={"permission": "experiments:read"}, tags=TAGS,
     summary="Conversion and revenue per customer per variant, with 95% intervals")
async def experiment_results(kernel: KernelDep, key: FromPath[str]) -> dict[str, Any]:
    return await kernel.service(ExperimentService).results(key)


class FlagIn(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool
    rollout_percent: float = 0.0
    beta: bool = False
    cohorts: list[str] = []
    tiers: list[str] = []
    description: str = ""


@post("/v1/flags/{key:str}", opt={"permission": "experiments:write"}, tags=TAGS,
      summary="Create or change a feature flag", status_code=200)
async def set_flag(kernel: KernelDep, key: FromPath[str], data: JSONBody[FlagIn]
                   ) -> dict[str, str]:
    await kernel.service(ExperimentService).set_flag(
        key, enabled=data.enabled, rollout_percent=data.rollout_percent, beta=data.beta,
        cohorts=data.cohorts, tiers=data.tiers, description=data.description)
    return {"key": key}


@get("/v1/flags", opt={"permission": "self", "criticality": "critical"}, tags=TAGS,
     summary="Every flag's state for a customer (fast, cacheable; send If-None-Match)")
async def flags(request: Request[Any, Any, Any], kernel: KernelDep,
                customer: FromQuery[str | None] = None) -> Response[Any]:
    _check_customer(request, customer)
    state = await kernel.service(ExperimentService).flags_for(customer)
    body = json.dumps(state, sort_keys=True).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=30",
               "Vary": "Authorization"}
    if request.headers.get("if-none-match") == etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@post("/v1/customers/{customer_id:str}/beta/{key:str}", opt={"permission": "self"},
      tags=TAGS, summary="Join a beta programme", status_code=200)
async def join_beta(request: Request[Any, Any, Any], kernel: KernelDep,
                    customer_id: FromPath[str], key: FromPath[str]) -> dict[str, Any]:
    _check_customer(request, customer_id)
    await kernel.service(ExperimentService).opt_in(customer_id, key, True)
    return {"customer_id": customer_id, "flag": key, "opted_in": True}


@delete("/v1/customers/{customer_id:str}/beta/{key:str}", opt={"permission": "self"},
        tags=TAGS, summary="Leave a beta programme", status_code=204)
async def leave_beta(request: Request[Any, Any, Any], kernel: KernelDep,
                     customer_id: FromPath[str], key: FromPath[str]) -> None:
    _check_customer(request, customer_id)
    await kernel.service(ExperimentService).opt_in(customer_id, key, False)


ROUTES = [recommendations, model_health, customer_scores, next_best_offers, create_experiment,
          expose, experiment_results, set_flag, flags, join_beta, leave_beta]
