"""Console, portal and public pages of fulfilment (server-rendered, phone first)."""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template

from kunde.access.guard import current_principal
from kunde.commerce.service_orders import OrderService
from kunde.core.errors import KundeError, NotFound
from kunde.fulfilment.config import FulfilmentConfig
from kunde.fulfilment.models import RETURN_REASONS, STATUSES, return_window_open
from kunde.fulfilment.service import FulfilmentService
from kunde.fulfilment.service_returns import ReturnService
from kunde.kernel import Kernel
from kunde.messaging.render import money
from kunde.web.deps import KernelDep
from kunde.web.pages import page, portal_page

T = "fulfilment/templates/"
LABELS = {
    "pending": "Being prepared", "info_received": "Label created", "in_transit": "On its way",
    "out_for_delivery": "Out for delivery", "attempt_failed": "Delivery attempt failed",
    "available_for_pickup": "Ready for pick-up", "delivered": "Delivered",
    "exception": "Held up", "expired": "No longer tracked",
}
CSS = (Path(__file__).parent / "static" / "fulfilment.css").read_bytes


@get("/fulfilment/assets/fulfilment.css", opt={"public": True}, include_in_schema=False)
async def stylesheet() -> Response[bytes]:
    return Response(CSS(), media_type="text/css",
                    headers={"Cache-Control": "public, max-age=3600"})


class TrackingPages:
    """Rendered tracking pages, kept one second: a popular link costs one query a second."""

    TTL = 1.0

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def html(self, request: Request[Any, Any, Any], token: str) -> bytes | None:
        now = time.monotonic()
        hit = self._items.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        view = await self.kernel.service(FulfilmentService).tracking_view(token)
        if view is None:
            return None
        engine: Any = request.app.template_engine
        body: bytes = engine.get_template(T + "track.html").render(v=view, labels=LABELS).encode()
        self._items[token] = (now + self.TTL, body)
        self._items.move_to_end(token)
        if len(self._items) > 10_000:
            self._items.popitem(last=False)
        return body


@get("/track/{token:str}", opt={"public": True}, include_in_schema=False)
async def tracking_page(request: Request[Any, Any, Any], kernel: KernelDep,
                        token: FromPath[str]) -> Response[bytes]:
    body = await kernel.service(TrackingPages).html(request, token)
    if body is None:
        raise NotFound("there is no parcel behind this link", code="fulfilment.unknown_link")
    return Response(body, media_type="text/html; charset=utf-8",
                    headers={"X-Robots-Tag": "noindex"})


# -- console --------------------------------------------------------------------------------
@get("/console/shipments", opt={"permission": "fulfilment:read"}, include_in_schema=False)
async def console_shipments(request: Request[Any, Any, Any], kernel: KernelDep,
                            status: FromQuery[str | None] = None,
                            risk: FromQuery[str | None] = None,
                            kind: FromQuery[str | None] = None) -> Template:
    rows = await kernel.service(FulfilmentService).search(
        status=status or None, risk=risk or None, kind=kind or None, limit=200)
    return page(request, T + "console_shipments.html", rows=rows, statuses=STATUSES,
                labels=LABELS, status=status or "", risk=risk or "", kind=kind or "")


@get("/console/shipments/unknown", opt={"permission": "fulfilment:read"},
     include_in_schema=False)
async def console_unknown(request: Request[Any, Any, Any], kernel: KernelDep) -> Template:
    return page(request, T + "console_unknown.html",
                rows=await kernel.service(FulfilmentService).unknown())


@get("/console/shipments/{shipment_id:str}", opt={"permission": "fulfilment:read"},
     include_in_schema=False)
async def console_shipment(request: Request[Any, Any, Any], kernel: KernelDep,
                           shipment_id: FromPath[str]) -> Template:
    s = await kernel.service(FulfilmentService).get_shipment(shipment_id)
    return page(request, T + "console_shipment.html", s=s, labels=LABELS)


async def _returns_page(request: Request[Any, Any, Any], kernel: Kernel, status: str,
                        error: str | None = None) -> Template:
    rows = await kernel.service(ReturnService).search(status=status or None, limit=200)
    policy = await kernel.service(FulfilmentConfig).policy()
    return page(request, T + "console_returns.html", rows=rows, status=status,
                policy=policy, error=error, money=money)


@get("/console/returns", opt={"permission": "fulfilment:read"}, include_in_schema=False)
async def console_returns(request: Request[Any, Any, Any], kernel: KernelDep,
                          status: FromQuery[str] = "open") -> Template:
    return await _returns_page(request, kernel, status)


@post("/console/returns/{return_id:str}/{action:str}",
      opt={"permission": "fulfilment:write", "criticality": "critical"},
      include_in_schema=False)
async def console_decide(request: Request[Any, Any, Any], kernel: KernelDep,
                         return_id: FromPath[str], action: FromPath[str],
                         data: URLEncodedBody[dict[str, str]]) -> Response[Any]:
    from kunde.fulfilment.routes import _decide

    if action not in ("approve", "reject", "inspect", "refund"):
        raise NotFound("unknown action", code="fulfilment.unknown_action")
    try:
        await _decide(kernel, request, return_id, action, data.get("reason", ""))
    except KundeError as exc:
        return await _returns_page(request, kernel, "open", error=exc.detail)
    return Redirect("/console/returns", status_code=303)


# -- portal ---------------------------------------------------------------------------------
def _customer(request: Request[Any, Any, Any]) -> str:
    p = current_principal(request)
    if p is None or p.kind != "customer" or not p.customer_id:
        raise NotFound("the portal is for customers", code="portal.customers_only")
    return p.customer_id


@get("/portal/shipments", opt={"permission": "self"}, include_in_schema=False)
async def portal_shipments(request: Request[Any, Any, Any], kernel: KernelDep) -> Template:
    cid = _customer(request)
    rows = await kernel.service(FulfilmentService).search(customer_ids=[cid], limit=100)
    for r in rows:
        r["tracking_path"] = f"/track/{r['token']}"
    return portal_page(request, T + "portal_shipments.html", rows=rows, labels=LABELS)


async def _returnable(kernel: Kernel, cid: str) -> list[dict[str, Any]]:
    """The customer's orders with lines still returnable inside the window."""
    orders = kernel.service(OrderService)
    returns_svc = kernel.service(ReturnService)
    policy = await kernel.service(FulfilmentConfig).policy()
    now = kernel.clock.now()
    out = []
    for summary in await orders.list_orders(cid, limit=20):
        if summary["status"] in ("placed", "cancelled"):
            continue
        order = await orders.get_order(summary["order_id"])
        delivered = await returns_svc._delivered_at(order["order_id"])
        from datetime import datetime

        if not return_window_open(delivered, datetime.fromisoformat(order["placed_at"]), now,
                                  policy.return_window_days):
            continue
        pending = await returns_svc._pending_quantities(order["order_id"])
        lines = []
        for ln in order["lines"]:
            n = int(ln["shipped"]) - int(ln["returned"]) - pending.get(ln["line_id"], 0)
            if n > 0:
                lines.append({**ln, "returnable": n})
        if lines:
            out.append({"order_id": order["order_id"], "number": order["number"],
                        "lines": lines})
    return out


async def _portal_returns(request: Request[Any, Any, Any], kernel: Kernel, *,
                          error: str | None = None, created: dict[str, Any] | None = None
                          ) -> Template:
    cid = _customer(request)
    mine = await kernel.service(ReturnService).search(customer_ids=[cid], limit=50)
    ships = {s["id"]: s for s in await kernel.service(FulfilmentService).search(
        customer_ids=[cid], kind="return", limit=100)}
    for r in mine:
        s = ships.get(r["shipment_id"] or "")
        r["tracking_path"] = f"/track/{s['token']}" if s else None
    policy = await kernel.service(FulfilmentConfig).policy()
    return portal_page(request, T + "portal_returns.html",
                       orders=await _returnable(kernel, cid), returns=mine,
                       reasons=RETURN_REASONS, policy=dataclasses.asdict(policy),
                       error=error, created=created, money=money)


@get("/portal/returns", opt={"permission": "self"}, include_in_schema=False)
async def portal_returns(request: Request[Any, Any, Any], kernel: KernelDep) -> Template:
    return await _portal_returns(request, kernel)


@post("/portal/returns", opt={"permission": "self"}, include_in_schema=False)
async def portal_start_return(request: Request[Any, Any, Any], kernel: KernelDep,
                              data: URLEncodedBody[dict[str, str]]) -> Template:
    cid = _customer(request)
    lines = []
    for key, value in data.items():
        if key.startswith("qty_") and value.isdigit() and int(value) > 0:
            line_id = key[4:]
            lines.append({"line_id": line_id, "quantity": int(value),
                          "reason": data.get(f"reason_{line_id}", "other")})
    try:
        if not lines:
            raise KundeError("choose how many of which item you send back")
        created = await kernel.service(ReturnService).request(
            order_id=data.get("order_id", ""), lines=lines, actor=f"customer:{cid}",
            customer_id=cid)
    except KundeError as exc:
        return await _portal_returns(request, kernel, error=exc.detail)
    return await _portal_returns(request, kernel, created=created)


PAGES = [stylesheet, tracking_page, console_shipments, console_unknown, console_shipment,
         console_returns, console_decide, portal_shipments, portal_returns,
         portal_start_return]
