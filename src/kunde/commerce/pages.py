"""Console and portal pages of commerce: order list and order page; "My orders"."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template

from kunde.access.guard import current_principal
from kunde.commerce.errors import OrderNotFound
from kunde.commerce.models import STATUSES
from kunde.commerce.service_orders import OrderService
from kunde.core.errors import InvalidInput, KundeError
from kunde.web.deps import KernelDep
from kunde.web.pages import page, portal_page

AnyRequest = Request[Any, Any, Any]
CSS = Path(__file__).parent / "static" / "commerce.css"
_EXPONENT = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "BHD": 3, "KWD": 3}
_SYMBOL = {"EUR": "€", "GBP": "£", "USD": "$"}


def money(minor: int | None, currency: str) -> str:
    """Minor units as a human amount: 1999 EUR → €19.99."""
    if minor is None:
        return "–"
    exp = _EXPONENT.get(currency, 2)
    sign = "-" if minor < 0 else ""
    value = f"{abs(minor) / 10**exp:,.{exp}f}"
    symbol = _SYMBOL.get(currency)
    return f"{sign}{symbol}{value}" if symbol else f"{sign}{value} {currency}"


def label(status: str) -> str:
    return status.replace("_", " ")


HELPERS = {"money": money, "label": label}


@get("/commerce/assets/commerce.css", opt={"public": True}, include_in_schema=False)
async def css() -> Response[bytes]:
    return Response(CSS.read_bytes(), media_type="text/css",
                    headers={"Cache-Control": "public, max-age=3600"})


# -- console ------------------------------------------------------------------------------
@get("/console/orders", opt={"permission": "commerce:read"}, include_in_schema=False)
async def console_orders(request: AnyRequest, kernel: KernelDep,
                         status: FromQuery[str | None] = None,
                         source: FromQuery[str | None] = None,
                         number: FromQuery[str | None] = None,
                         page_no: FromQuery[int] = 1) -> Template:
    external = {"external": True, "native": False}.get(source or "")
    size = 50
    rows = await kernel.service(OrderService).search(
        status=status or None, external=external, number=number or None, limit=size + 1,
        offset=(max(page_no, 1) - 1) * size)
    return page(request, "commerce/templates/console_orders.html", orders=rows[:size],
                more=len(rows) > size, page_no=max(page_no, 1), statuses=STATUSES,
                f={"status": status or "", "source": source or "", "number": number or ""},
                **HELPERS)


@get("/console/orders/{order_id:str}", opt={"permission": "commerce:read"},
     include_in_schema=False)
async def console_order(request: AnyRequest, kernel: KernelDep, order_id: FromPath[str],
                        notice: FromQuery[str | None] = None,
                        error: FromQuery[str | None] = None) -> Template:
    order = await kernel.service(OrderService).get_order(order_id)
    principal = current_principal(request)
    return page(request, "commerce/templates/console_order.html", o=order,
                can_refund=bool(principal and principal.can("commerce:write")),
                notice=notice, error=error, **HELPERS)


@post("/console/orders/{order_id:str}/refund", opt={"permission": "commerce:write",
                                                    "criticality": "critical"},
      include_in_schema=False)
async def console_refund(kernel: KernelDep, order_id: FromPath[str],
                         data: URLEncodedBody[dict[str, str]]) -> Redirect:
    """A staff refund; the form's one-time key makes a double submit harmless."""
    base = f"/console/orders/{order_id}"
    try:
        amount = _minor(data.get("amount", ""))
        result = await kernel.service(OrderService).refund(
            order_id, amount, reason=data.get("reason") or "staff refund",
            method=data.get("method", "original"), idempotency_key=data.get("form_key", ""))
    except KundeError as exc:
        return Redirect(f"{base}?error={quote(exc.detail)}", status_code=303)
    return Redirect(f"{base}?notice={quote('Refund ' + result['status'])}", status_code=303)


def _minor(text: str) -> int:
    try:
        return round(float(text.replace(",", ".")) * 100)
    except ValueError as exc:
        raise InvalidInput("the amount is a number like 12.50",
                           code="commerce.invalid_amount") from exc


# -- portal -------------------------------------------------------------------------------
async def _customer_ids(request: AnyRequest, kernel: Any) -> list[str]:
    principal = current_principal(request)
    if principal is None or principal.customer_id is None:
        return []
    try:
        from kunde.profiles.service import ProfileService

        ids = list(await kernel.service(ProfileService).member_ids(principal.customer_id))
    except KundeError:
        ids = []
    return ids or [principal.customer_id]


@get("/portal/orders", opt={"permission": "self"}, include_in_schema=False)
async def portal_orders(request: AnyRequest, kernel: KernelDep) -> Template:
    svc = kernel.service(OrderService)
    rows: list[dict[str, Any]] = []
    for cid in await _customer_ids(request, kernel):
        rows.extend(await svc.list_orders(cid))
    rows.sort(key=lambda o: o["placed_at"], reverse=True)
    return portal_page(request, "commerce/templates/portal_orders.html", orders=rows,
                       **HELPERS)


@get("/portal/orders/{order_id:str}", opt={"permission": "self"}, include_in_schema=False)
async def portal_order(request: AnyRequest, kernel: KernelDep,
                       order_id: FromPath[str]) -> Template:
    order = await kernel.service(OrderService).get_order(order_id)
    if order["customer_id"] not in await _customer_ids(request, kernel):
        # Same answer as for a missing order: ids of other people's orders reveal nothing.
        raise OrderNotFound(f"no order {order_id}")
    return portal_page(request, "commerce/templates/portal_order.html", o=order, **HELPERS)


PAGES = [css, console_orders, console_order, console_refund, portal_orders, portal_order]
