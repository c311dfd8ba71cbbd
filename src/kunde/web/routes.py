"""Console shell: log-in, home with live figures, API docs rendered from the OpenAPI schema."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from litestar import Request, Response, get, post
from litestar.params import FromQuery, URLEncodedBody
from litestar.response import Redirect, Template

from kunde.access.guard import CUSTOMER_COOKIE, SESSION_USER
from kunde.core.errors import KundeError
from kunde.kernel import Kernel
from kunde.ops.routes import readiness
from kunde.store.consumers import consumer_lag
from kunde.web.deps import KernelDep
from kunde.web.pages import page, portal_page


def _safe_next(target: str | None) -> str:
    # Only same-site paths: never redirect a freshly logged-in user elsewhere.
    if target and target.startswith("/console") and "//" not in target:
        return target
    return "/console/"


@get("/console/login", opt={"public": True}, include_in_schema=False)
async def login_form(
    request: Request[Any, Any, Any], next: FromQuery[str | None] = None
) -> Template:
    return Template("web/templates/login.html", context={"next": _safe_next(next), "error": None})


@post("/console/login", opt={"public": True}, include_in_schema=False)
async def login(
    request: Request[Any, Any, Any],
    kernel: KernelDep,
    data: URLEncodedBody[dict[str, str]],
) -> Response[Any]:
    ip = request.client.host if request.client else "unknown"
    try:
        principal = await kernel.access.authenticate(
            data.get("email", ""), data.get("password", ""), ip)
    except KundeError as exc:
        return Template(
            "web/templates/login.html",
            context={"next": _safe_next(data.get("next")), "error": exc.detail},
            status_code=exc.http_status,
        )
    request.set_session({SESSION_USER: principal.id})
    return Redirect(_safe_next(data.get("next")), status_code=303)


@post("/console/logout", opt={"public": True}, include_in_schema=False)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    request.clear_session()
    return Redirect("/console/login", status_code=303)


@get("/", opt={"public": True}, include_in_schema=False)
async def root() -> Redirect:
    return Redirect("/console/")


@get("/console/", opt={"permission": "console:view"}, include_in_schema=False)
async def home(request: Request[Any, Any, Any], kernel: KernelDep) -> Template:
    return page(request, "web/templates/home.html", figures=await live_figures(kernel))


@get("/console/figures", opt={"permission": "console:view"}, tags=["console"],
     summary="Live figures for the console home page")
async def figures(kernel: KernelDep) -> dict[str, Any]:
    return await live_figures(kernel)


async def live_figures(kernel: Kernel) -> dict[str, Any]:
    from kunde.store.tables import events

    async with kernel.db.read() as conn:
        head = await kernel.log.head(conn)
        today = (await conn.execute(
            sa.select(sa.func.count()).select_from(events)
            .where(events.c.received_at > kernel.clock.now().replace(
                hour=0, minute=0, second=0, microsecond=0))
        )).scalar_one()
    lag = await consumer_lag(kernel.db)
    ok, checks = await readiness(kernel)
    return {"events_total": head, "events_today": int(today),
            "consumer_lag": sum(lag.values()), "lag_by_consumer": lag,
            "ready": ok, "checks": checks}


@get("/openapi.json", opt={"public": True}, include_in_schema=False)
async def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi_schema.to_schema()
    return schema


@get("/docs", opt={"public": True}, include_in_schema=False)
async def docs(request: Request[Any, Any, Any]) -> Template:
    schema = request.app.openapi_schema.to_schema()
    ops = []
    for path, item in sorted(schema.get("paths", {}).items()):
        for method, op in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                ops.append({"path": path, "method": method.upper(), "op": op,
                            "tag": (op.get("tags") or ["other"])[0]})
    ops.sort(key=lambda o: (o["tag"], o["path"], o["method"]))
    return Template("web/templates/docs.html",
                    context={"ops": ops, "info": schema.get("info", {})})


# -- customer portal shell --------------------------------------------------------
@get("/portal/enter", opt={"public": True}, include_in_schema=False)
async def portal_enter(kernel: KernelDep, token: FromQuery[str]) -> Response[Any]:
    """Exchange a signed link's customer token for a portal cookie, then drop it from the URL."""
    principal = kernel.access.verify_customer_token(token)
    if principal is None:
        return Template("web/templates/portal_expired.html", status_code=401)
    response: Response[Any] = Redirect("/portal/", status_code=303)
    response.set_cookie(CUSTOMER_COOKIE, token, httponly=True, samesite="lax",
                        secure=kernel.settings.secure_cookies, max_age=3600)
    return response


@get("/portal/", opt={"permission": "self"}, include_in_schema=False)
async def portal_home(request: Request[Any, Any, Any]) -> Template:
    return portal_page(request, "web/templates/portal_home.html")
