"""Console (request queue, audit search, retention) and portal (privacy centre) pages."""

from __future__ import annotations

import importlib
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromQuery, URLEncodedBody
from litestar.response import Redirect, Template

from kunde.access.guard import CUSTOMER_COOKIE, current_principal
from kunde.core.errors import Forbidden, KundeError
from kunde.kernel import Kernel
from kunde.privacy.audit import AuditService, actor_of
from kunde.privacy.requests import request_queue
from kunde.privacy.retention import RetentionService, policies
from kunde.privacy.routes import _erasures, _exports, export_view
from kunde.privacy.tables import export_requests
from kunde.web.deps import KernelDep
from kunde.web.pages import page, portal_page

PURPOSES = ("analytics", "personalisation", "marketing_email", "marketing_sms", "marketing_push")


# -- console ----------------------------------------------------------------------------
@get("/console/privacy", opt={"permission": "privacy:read"}, include_in_schema=False)
async def queue_page(request: Request[Any, Any, Any], kernel: KernelDep,
                     show: FromQuery[str] = "open") -> Template:
    rows = await request_queue(kernel, state=None if show == "all" else show)
    principal = current_principal(request)
    return page(request, "privacy/templates/queue.html", rows=rows, show=show,
                can_request=bool(principal and principal.can("privacy:request")),
                message=request.query_params.get("done"))


@post("/console/privacy/requests", opt={"permission": "privacy:request"},
      include_in_schema=False)
async def queue_create(request: Request[Any, Any, Any], kernel: KernelDep,
                       data: URLEncodedBody[dict[str, str]]) -> Redirect:
    cid = (data.get("customer_id") or "").strip()
    kind = data.get("kind", "export")
    actor = actor_of(current_principal(request))
    if not cid:
        return Redirect("/console/privacy?done=missing", status_code=303)
    if kind == "erasure":
        svc = _erasures(request, kernel)
        email = (data.get("email") or "").strip()
        rid = await svc.request(cid, requested_by=actor, channel="staff",
                                identifiers={"email": email} if email else None)
        await svc.run(rid)
    else:
        await _exports(request, kernel).request(cid, requested_by=actor, channel="staff")
    return Redirect(f"/console/privacy?done={kind}", status_code=303)


@get("/console/privacy/audit", opt={"permission": "privacy:audit"}, include_in_schema=False)
async def audit_page(request: Request[Any, Any, Any], kernel: KernelDep,
                     actor: FromQuery[str] = "", action: FromQuery[str] = "",
                     subject: FromQuery[str] = "") -> Template:
    audit = kernel.service(AuditService)
    entries = await audit.search(actor=actor or None, action=action or None,
                                 subject=subject or None, limit=200)
    report = await audit.verify() if request.query_params.get("verify") else None
    return page(request, "privacy/templates/audit.html", entries=entries, actor=actor,
                action=action, subject=subject, report=report)


@get("/console/privacy/retention", opt={"permission": "privacy:retention"},
     include_in_schema=False)
async def retention_page(request: Request[Any, Any, Any], kernel: KernelDep) -> Template:
    svc = kernel.service(RetentionService)
    return page(request, "privacy/templates/retention.html", policies=policies(kernel.settings),
                holds=await svc.holds(), runs=await svc.last_runs(5))


@post("/console/privacy/retention/run", opt={"permission": "privacy:retention"},
      include_in_schema=False)
async def retention_run_page(request: Request[Any, Any, Any], kernel: KernelDep) -> Redirect:
    await kernel.service(RetentionService).run(actor=actor_of(current_principal(request)))
    return Redirect("/console/privacy/retention", status_code=303)


# -- portal -----------------------------------------------------------------------------
# The wording shown beside each switch; recorded with every decision made here.
CONSENT_TEXT_VERSION = "privacy-centre-2026-11"
PURPOSE_TEXT = {
    "analytics": "Measure how our shop is used to improve it",
    "personalisation": "Recommend products based on what you viewed and bought",
    "marketing_email": "Send offers and news by email",
    "marketing_sms": "Send offers by text message",
    "marketing_push": "Send offers as app notifications",
}


def consent_service(kernel: Kernel) -> Any | None:
    """Profiles' ConsentService, or None while profiles does not offer one."""
    cls = None
    for module in ("kunde.profiles.service_consent", "kunde.profiles.service"):
        try:
            cls = getattr(importlib.import_module(module), "ConsentService", None)
        except ImportError:
            continue
        if cls is not None:
            break
    return kernel.service(cls) if cls is not None else None


async def consents_of(kernel: Kernel, customer_id: str) -> list[dict[str, Any]]:
    """Each purpose, its wording and whether it is allowed."""
    svc = consent_service(kernel)
    if svc is None:
        return []
    return [{"purpose": p, "text": PURPOSE_TEXT[p],
             "granted": bool(await svc.is_allowed(customer_id, p))} for p in PURPOSES]


def _customer(request: Request[Any, Any, Any]) -> str:
    p = current_principal(request)
    if p is None or p.kind != "customer" or not p.customer_id:
        raise Forbidden("the privacy centre is for customers", code="portal.customers_only")
    return p.customer_id


@get("/portal/privacy", opt={"permission": "self"}, include_in_schema=False)
async def privacy_centre(request: Request[Any, Any, Any], kernel: KernelDep) -> Template:
    import sqlalchemy as sa

    cid = _customer(request)
    async with kernel.db.read() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(
            sa.select(export_requests).where(export_requests.c.customer_id == cid)
            .order_by(export_requests.c.requested_at.desc()).limit(5))]
    exports = [export_view(kernel, r) for r in rows]
    busy = any(e["state"] in ("queued", "running") for e in exports)
    return portal_page(request, "privacy/templates/portal_privacy.html",
                       consents=await consents_of(kernel, cid), exports=exports, busy=busy)


@post("/portal/privacy/consents", opt={"permission": "self"}, include_in_schema=False)
async def portal_consent(request: Request[Any, Any, Any], kernel: KernelDep,
                         data: URLEncodedBody[dict[str, str]]) -> Redirect:
    """Grant or withdraw one purpose; the record says who, when, how and which wording."""
    cid = _customer(request)
    purpose = data.get("purpose", "")
    svc = consent_service(kernel)
    if svc is None or purpose not in PURPOSES:
        return Redirect("/portal/privacy", status_code=303)
    await svc.record(cid, purpose, data.get("granted") == "yes", method="privacy_centre",
                     channel="web", text_version=CONSENT_TEXT_VERSION,
                     actor=f"customer:{cid}")
    return Redirect("/portal/privacy#consents", status_code=303)


@post("/portal/privacy/export", opt={"permission": "self"}, include_in_schema=False)
async def portal_export(request: Request[Any, Any, Any], kernel: KernelDep) -> Redirect:
    cid = _customer(request)
    await _exports(request, kernel).request(cid, requested_by=f"customer:{cid}",
                                                channel="portal")
    return Redirect("/portal/privacy", status_code=303)


@post("/portal/privacy/delete", opt={"permission": "self"}, include_in_schema=False)
async def portal_delete(request: Request[Any, Any, Any], kernel: KernelDep,
                        data: URLEncodedBody[dict[str, str]]) -> Response[Any]:
    cid = _customer(request)
    if data.get("confirm") != "yes":
        return Redirect("/portal/privacy?confirm=missing", status_code=303)
    svc = _erasures(request, kernel)
    try:
        rid = await svc.request(cid, requested_by=f"customer:{cid}", channel="portal")
        await svc.run(rid)
        row = await svc.get(rid)
    except KundeError as exc:
        return Template("privacy/templates/portal_deleted.html",
                        context={"receipt": None, "error": exc.detail}, status_code=500)
    response: Response[Any] = Template("privacy/templates/portal_deleted.html",
                                       context={"receipt": row["receipt"], "error": None,
                                                "request_id": rid})
    response.delete_cookie(CUSTOMER_COOKIE)
    return response


ROUTES = [queue_page, queue_create, audit_page, retention_page, retention_run_page,
          privacy_centre, portal_consent, portal_export, portal_delete]
