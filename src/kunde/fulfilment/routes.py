"""Fulfilment API: carrier webhooks, shipments, promises, returns, policy, public tracking.

Mutating POSTs accept ``Idempotency-Key`` (commerce's shared helper, Stripe semantics).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from kunde.access.guard import current_principal
from kunde.access.models import Principal
from kunde.commerce.idempotency import idempotent
from kunde.core.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from kunde.fulfilment import promises
from kunde.fulfilment.config import FulfilmentConfig
from kunde.fulfilment.service import FulfilmentService
from kunde.fulfilment.service_care import CareService
from kunde.fulfilment.service_returns import ReturnService
from kunde.kernel import Kernel
from kunde.web.deps import KernelDep


class ShipmentCreate(msgspec.Struct, forbid_unknown_fields=True):
    order_id: str
    carrier: str
    tracking_number: str
    lines: dict[str, int]
    service: str = "parcel"
    country: str = "DK"


class ReturnLine(msgspec.Struct, forbid_unknown_fields=True):
    line_id: str
    quantity: int
    reason: str


class ReturnCreate(msgspec.Struct, forbid_unknown_fields=True):
    order_id: str
    lines: list[ReturnLine]


class Decision(msgspec.Struct, forbid_unknown_fields=True):
    reason: str = ""


class CarrierSecret(msgspec.Struct, forbid_unknown_fields=True):
    secret: str


def _principal(request: Request[Any, Any, Any]) -> Principal:
    p = current_principal(request)
    if p is None:
        raise Unauthenticated("log in first")
    return p


def _actor(p: Principal) -> str:
    return f"{p.kind}:{p.id}"


# -- carriers ----------------------------------------------------------------------------
@post("/webhooks/carriers/{carrier:str}", opt={"public": True, "criticality": "interactive"},
      tags=["fulfilment"], status_code=202,
      summary="Tracking updates from a carrier, signed per Standard Webhooks")
async def carrier_webhook(request: Request[Any, Any, Any], kernel: KernelDep,
                          carrier: FromPath[str]) -> dict[str, int]:
    body = await request.body()
    n = await kernel.service(FulfilmentService).accept(carrier, request.headers, body)
    return {"accepted": n}


@post("/v1/fulfilment/carriers/{carrier:str}/secrets", opt={"permission": "fulfilment:admin"},
      tags=["fulfilment"], status_code=204,
      summary="Set a carrier's webhook secret (the previous one stays valid)")
async def carrier_secret(kernel: KernelDep, carrier: FromPath[str],
                         data: JSONBody[CarrierSecret]) -> None:
    await kernel.service(FulfilmentConfig).add_carrier_secret(carrier, data.secret)


# -- shipments -----------------------------------------------------------------------------
@post("/v1/shipments", opt={"permission": "fulfilment:write"}, tags=["fulfilment"],
      summary="Ship lines of an order with a carrier and tracking number")
async def create_shipment(request: Request[Any, Any, Any], kernel: KernelDep,
                          data: JSONBody[ShipmentCreate]) -> Response[bytes]:
    return await idempotent(request, kernel, "fulfilment.shipments", lambda: kernel.service(
        FulfilmentService).create_shipment(
        order_id=data.order_id, carrier=data.carrier, service=data.service,
        tracking_number=data.tracking_number, lines=data.lines, country=data.country),
        status_code=201)


@get("/v1/shipments", opt={"permission": "fulfilment:read"}, tags=["fulfilment"],
     summary="Shipments, newest first, filtered by status, promise risk, kind or order")
async def list_shipments(kernel: KernelDep, status: FromQuery[str | None] = None,
                         risk: FromQuery[str | None] = None, kind: FromQuery[str | None] = None,
                         order_id: FromQuery[str | None] = None, limit: FromQuery[int] = 50,
                         offset: FromQuery[int] = 0) -> list[dict[str, Any]]:
    return await kernel.service(FulfilmentService).search(
        status=status, risk=risk, kind=kind, order_id=order_id, limit=limit, offset=offset)


@get("/v1/shipments/{shipment_id:str}", opt={"permission": "fulfilment:read"},
     tags=["fulfilment"], summary="One shipment with its checkpoints")
async def get_shipment(kernel: KernelDep, shipment_id: FromPath[str]) -> dict[str, Any]:
    return await kernel.service(FulfilmentService).get_shipment(shipment_id)


@get("/v1/customers/{customer_id:str}/shipments", opt={"permission": "self"},
     tags=["fulfilment"], summary="A customer's shipments")
async def customer_shipments(request: Request[Any, Any, Any], kernel: KernelDep,
                             customer_id: FromPath[str]) -> list[dict[str, Any]]:
    p = _principal(request)
    if not p.may_access_customer(customer_id) or (
            p.kind != "customer" and not p.can("fulfilment:read")):
        raise Forbidden("not your shipments", code="fulfilment.forbidden")
    return await kernel.service(FulfilmentService).search(customer_ids=[customer_id])


@get("/v1/fulfilment/unknown-tracking", opt={"permission": "fulfilment:read"},
     tags=["fulfilment"], summary="Tracking numbers carriers sent that match no shipment")
async def unknown_tracking(kernel: KernelDep) -> list[dict[str, Any]]:
    return await kernel.service(FulfilmentService).unknown()


@post("/v1/fulfilment/sweep", opt={"permission": "fulfilment:write",
                                    "criticality": "background"},
      tags=["fulfilment"], summary="Run the promise-risk sweep now")
async def run_sweep(kernel: KernelDep) -> dict[str, str]:
    return {"result": await kernel.service(CareService).sweep()}


# Public: a shop shows the promise on product and cart pages before anyone logs in.
@get("/v1/promises", opt={"public": True}, tags=["fulfilment"],
     summary="The delivery date promised for a shipping method, country and order time")
async def promise(method: FromQuery[str] = "standard", country: FromQuery[str] = "DK",
                  at: FromQuery[str | None] = None) -> dict[str, Any]:
    try:
        when = datetime.fromisoformat(at) if at else datetime.now().astimezone()
    except ValueError as exc:
        raise InvalidInput("at must be an ISO 8601 time with offset") from exc
    if when.tzinfo is None:
        raise InvalidInput("at needs a UTC offset")
    if method not in promises.METHODS:
        raise InvalidInput(f"method is one of {', '.join(promises.METHODS)}",
                           code="fulfilment.unknown_method")
    day = promises.promise(method, country, when)
    return {"method": method, "country": country.upper(), "promised_date": day.isoformat(),
            "cutoff": promises.METHODS[method].cutoff.isoformat(timespec="minutes")}


# -- policy ----------------------------------------------------------------------------------
@get("/v1/fulfilment/policy", opt={"permission": "fulfilment:read"}, tags=["fulfilment"],
     summary="The delay-care and returns policy")
async def get_policy(kernel: KernelDep) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(await kernel.service(FulfilmentConfig).policy())


@put("/v1/fulfilment/policy", opt={"permission": "fulfilment:admin"}, tags=["fulfilment"],
     summary="Change fields of the delay-care and returns policy")
async def put_policy(kernel: KernelDep, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(await kernel.service(FulfilmentConfig).set_policy(data))


# -- returns -----------------------------------------------------------------------------------
@post("/v1/returns", opt={"permission": "self"}, tags=["fulfilment"], status_code=201,
      summary="Start a return for lines of an order (customers: their own orders)")
async def create_return(request: Request[Any, Any, Any], kernel: KernelDep,
                        data: JSONBody[ReturnCreate]) -> Response[bytes]:
    p = _principal(request)
    if p.kind != "customer" and not p.can("fulfilment:write"):
        raise Forbidden("needs fulfilment:write", code="auth.missing_permission")
    return await idempotent(request, kernel, "fulfilment.returns", lambda: kernel.service(
        ReturnService).request(
        order_id=data.order_id, lines=[msgspec.structs.asdict(ln) for ln in data.lines],
        actor=_actor(p), customer_id=p.customer_id if p.kind == "customer" else None),
        status_code=201)


@get("/v1/returns", opt={"permission": "fulfilment:read"}, tags=["fulfilment"],
     summary="Returns, newest first; status=open for the work queue")
async def list_returns(kernel: KernelDep, status: FromQuery[str | None] = None,
                       order_id: FromQuery[str | None] = None, limit: FromQuery[int] = 50,
                       offset: FromQuery[int] = 0) -> list[dict[str, Any]]:
    return await kernel.service(ReturnService).search(status=status, order_id=order_id,
                                                      limit=limit, offset=offset)


@get("/v1/returns/{return_id:str}", opt={"permission": "self"}, tags=["fulfilment"],
     summary="One return with its refund SLA")
async def get_return(request: Request[Any, Any, Any], kernel: KernelDep,
                     return_id: FromPath[str]) -> dict[str, Any]:
    p = _principal(request)
    found = await kernel.service(ReturnService).get(return_id)
    if p.kind == "customer" and found["customer_id"] != p.customer_id:
        raise NotFound("no such return", code="fulfilment.return_not_found")
    if p.kind != "customer" and not p.can("fulfilment:read"):
        raise Forbidden("needs fulfilment:read", code="auth.missing_permission")
    return found


async def _decide(kernel: Kernel, request: Request[Any, Any, Any], return_id: str,
                  action: str, reason: str = "") -> dict[str, Any]:
    service = kernel.service(ReturnService)
    actor = _actor(_principal(request))
    if action == "approve":
        return await service.approve(return_id, actor)
    if action == "reject":
        return await service.reject(return_id, actor, reason)
    if action == "inspect":
        return await service.mark_inspected(return_id, actor)
    return await service.refund_now(return_id, actor)


@post("/v1/returns/{return_id:str}/{action:str}",
      opt={"permission": "fulfilment:write", "criticality": "critical"}, tags=["fulfilment"],
      status_code=200, summary="approve | reject | inspect | refund a return")
async def decide_return(request: Request[Any, Any, Any], kernel: KernelDep,
                        return_id: FromPath[str], action: FromPath[str],
                        data: JSONBody[Decision | None] = None) -> Response[bytes]:
    if action not in ("approve", "reject", "inspect", "refund"):
        raise NotFound("unknown action", code="fulfilment.unknown_action")
    return await idempotent(request, kernel, "fulfilment.return_decisions", lambda: _decide(
        kernel, request, return_id, action, data.reason if data else ""))


# -- public tracking --------------------------------------------------------------------------
@get("/v1/track/{token:str}", opt={"public": True}, tags=["fulfilment"],
     summary="Public tracking data behind an unguessable link")
async def track_json(kernel: KernelDep, token: FromPath[str]) -> Response[Any]:
    view = await kernel.service(FulfilmentService).tracking_view(token)
    if view is None:
        raise NotFound("no parcel behind this link", code="fulfilment.unknown_link")
    return Response(view, headers={"Cache-Control": "private, max-age=30"})


ROUTES = [carrier_webhook, carrier_secret, create_shipment, list_shipments, get_shipment,
          customer_shipments, unknown_tracking, run_sweep, promise, get_policy, put_policy,
          create_return, list_returns, get_return, decide_return, track_json]
