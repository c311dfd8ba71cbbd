"""Privacy API: data-subject requests (staff and self-service), signed downloads, audit, retention.

Self-service routes live under ``/v1/me/privacy`` and act only on the caller's own
customer id (taken from the token, never from the request). Staff routes take the
customer id in the path and need ``privacy:request``. Neither reveals whether a
customer exists: an export for an unknown id is accepted and yields an empty bundle.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from kunde.access.guard import current_principal
from kunde.access.models import Principal
from kunde.core.errors import Forbidden, NotFound
from kunde.kernel import Kernel
from kunde.privacy.audit import AuditService, actor_of
from kunde.privacy.erasure import ErasureService
from kunde.privacy.export import ExportService
from kunde.privacy.exports_store import FORMATS, link_is_valid
from kunde.privacy.processing import processing_record
from kunde.privacy.requests import request_queue
from kunde.privacy.retention import RetentionService
from kunde.web.deps import KernelDep


class ErasureCreate(msgspec.Struct, forbid_unknown_fields=True):
    # Identifiers the requester gave (e.g. the email of the request letter), suppressed too.
    identifiers: dict[str, str] = msgspec.field(default_factory=dict)


class HoldCreate(msgspec.Struct, forbid_unknown_fields=True):
    data_class: str
    reason: str
    customer_id: str | None = None


def _principal(request: Request[Any, Any, Any]) -> Principal:
    p = current_principal(request)
    if p is None:
        raise Forbidden("no principal")
    return p


def _own_customer(request: Request[Any, Any, Any]) -> str:
    p = _principal(request)
    if p.kind != "customer" or not p.customer_id:
        raise Forbidden("self-service privacy requests need a customer token",
                        code="privacy.customers_only")
    return p.customer_id


def _exports(request: Request[Any, Any, Any], kernel: Kernel) -> ExportService:
    """Bound to the app's features (the composition root decides which are installed)."""
    return ExportService(kernel, request.app.state.features)


def _erasures(request: Request[Any, Any, Any], kernel: Kernel) -> ErasureService:
    return ErasureService(kernel, request.app.state.features)


def export_view(kernel: Kernel, row: dict[str, Any]) -> dict[str, Any]:
    svc = kernel.service(ExportService)
    return {"id": row["id"], "state": row["state"], "progress": row["progress"],
            "total": row["total"], "requested_at": row["requested_at"],
            "due_at": row["due_at"], "expires_at": row["expires_at"],
            "links": svc.links(row)}


def erasure_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "state": row["state"], "requested_at": row["requested_at"],
            "due_at": row["due_at"], "completed_at": row["completed_at"],
            "receipt": row["receipt"]}


# -- staff ------------------------------------------------------------------------
@post("/v1/privacy/customers/{customer_id:str}/exports", status_code=202, tags=["privacy"],
      opt={"permission": "privacy:request", "criticality": "background"},
      summary="Request an export (Art. 15/20) of everything about a customer")
async def staff_export(request: Request[Any, Any, Any], kernel: KernelDep,
                       customer_id: FromPath[str]) -> dict[str, Any]:
    rid = await _exports(request, kernel).request(
        customer_id, requested_by=actor_of(_principal(request)), channel="staff")
    return {"id": rid, "state": "queued"}


@get("/v1/privacy/exports/{request_id:str}", tags=["privacy"],
     opt={"permission": "privacy:read"}, summary="Progress and download links of an export")
async def staff_export_status(kernel: KernelDep, request_id: FromPath[str]) -> dict[str, Any]:
    return export_view(kernel, await kernel.service(ExportService).get(request_id))


@post("/v1/privacy/customers/{customer_id:str}/erasures", status_code=200, tags=["privacy"],
      opt={"permission": "privacy:request"},
      summary="Erase a customer (Art. 17) across every feature; returns the receipt")
async def staff_erase(request: Request[Any, Any, Any], kernel: KernelDep,
                      customer_id: FromPath[str], data: JSONBody[ErasureCreate]
                      ) -> dict[str, Any]:
    svc = _erasures(request, kernel)
    rid = await svc.request(customer_id, requested_by=actor_of(_principal(request)),
                            channel="staff", identifiers=data.identifiers)
    await svc.run(rid)
    return erasure_view(await svc.get(rid))


@get("/v1/privacy/erasures/{request_id:str}", tags=["privacy"],
     opt={"permission": "privacy:read"}, summary="State and receipt of an erasure request")
async def staff_erasure_status(kernel: KernelDep, request_id: FromPath[str]) -> dict[str, Any]:
    return erasure_view(await kernel.service(ErasureService).get(request_id))


@get("/v1/privacy/requests", tags=["privacy"], opt={"permission": "privacy:read"},
     summary="Open and recent data-subject requests with their deadlines")
async def requests_list(kernel: KernelDep, show: FromQuery[str | None] = None
                        ) -> list[dict[str, Any]]:
    """``show``: ``open``, a state name, or nothing for all."""
    return await request_queue(kernel, state=show)


# -- self-service -------------------------------------------------------------------
@post("/v1/me/privacy/exports", status_code=202, tags=["privacy"],
      opt={"permission": "self", "criticality": "background"},
      summary="Request a copy of my data")
async def my_export(request: Request[Any, Any, Any], kernel: KernelDep) -> dict[str, Any]:
    cid = _own_customer(request)
    rid = await _exports(request, kernel).request(cid, requested_by=f"customer:{cid}",
                                                      channel="portal")
    return {"id": rid, "state": "queued"}


@get("/v1/me/privacy/exports/{request_id:str}", tags=["privacy"], opt={"permission": "self"},
     summary="Progress and download links of my export")
async def my_export_status(request: Request[Any, Any, Any], kernel: KernelDep,
                           request_id: FromPath[str]) -> dict[str, Any]:
    cid = _own_customer(request)
    try:
        row = await _exports(request, kernel).get(request_id)
    except NotFound:
        row = None
    if row is None or row["customer_id"] != cid:
        raise NotFound("no export with that id", code="privacy.request_not_found")
    return export_view(kernel, row)


@post("/v1/me/privacy/erasure", status_code=200, tags=["privacy"], opt={"permission": "self"},
      summary="Delete my account and everything about me; returns the receipt")
async def my_erasure(request: Request[Any, Any, Any], kernel: KernelDep) -> dict[str, Any]:
    cid = _own_customer(request)
    svc = _erasures(request, kernel)
    rid = await svc.request(cid, requested_by=f"customer:{cid}", channel="portal")
    await svc.run(rid)
    return erasure_view(await svc.get(rid))


# -- signed download ------------------------------------------------------------------
@get("/privacy/exports/{request_id:str}/{fmt:str}", opt={"public": True},
     include_in_schema=False)
async def download(kernel: KernelDep, request_id: FromPath[str], fmt: FromPath[str],
                   expires: FromQuery[int] = 0, sig: FromQuery[str] = "") -> Response[bytes]:
    now = kernel.clock.now().timestamp()
    gone = NotFound("this link is invalid or has expired; request a new export",
                    code="privacy.link_invalid")
    if not link_is_valid(kernel, request_id, fmt, expires, sig, now):
        raise gone
    svc = kernel.service(ExportService)
    body = await svc.open_bundle(request_id, fmt)
    if body is None:
        raise gone
    row = await svc.get(request_id)
    async with kernel.db.transaction() as uow:
        await svc.record_download(uow, row, fmt)
    name = f"kunde-export-{request_id}.{fmt}"
    return Response(body, media_type=FORMATS[fmt], headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


# -- audit and accountability -----------------------------------------------------------
@get("/v1/privacy/audit", tags=["privacy"], opt={"permission": "privacy:audit"},
     summary="Search the audit log (newest first)")
async def audit_search(kernel: KernelDep, actor: FromQuery[str | None] = None,
                       action: FromQuery[str | None] = None,
                       subject: FromQuery[str | None] = None,
                       limit: FromQuery[int] = 100) -> list[dict[str, Any]]:
    return await kernel.service(AuditService).search(actor=actor, action=action,
                                                     subject=subject, limit=limit)


@get("/v1/privacy/audit/verify", tags=["privacy"], opt={"permission": "privacy:audit"},
     summary="Recompute the audit hash chain")
async def audit_verify(kernel: KernelDep) -> dict[str, Any]:
    r = await kernel.service(AuditService).verify()
    return {"ok": r.ok, "checked": r.checked, "first_bad_seq": r.first_bad_seq,
            "problem": r.problem}


@get("/v1/privacy/processing-record", tags=["privacy"], opt={"permission": "privacy:audit"},
     summary="Record of processing activities (Art. 30), generated from configuration")
async def ropa(request: Request[Any, Any, Any], kernel: KernelDep) -> dict[str, Any]:
    return processing_record(request.app.state.features, kernel.settings)


# -- retention ------------------------------------------------------------------------
@get("/v1/privacy/retention", tags=["privacy"], opt={"permission": "privacy:retention"},
     summary="Retention policies, legal holds and the last purge reports")
async def retention_report(kernel: KernelDep) -> dict[str, Any]:
    from kunde.privacy.retention import policies

    svc = kernel.service(RetentionService)
    return {"policies": [p.__dict__ for p in policies(kernel.settings)],
            "holds": await svc.holds(), "runs": await svc.last_runs()}


@post("/v1/privacy/retention/run", tags=["privacy"], status_code=200,
      opt={"permission": "privacy:retention", "criticality": "background"},
      summary="Purge now what is past its retention period")
async def retention_run(request: Request[Any, Any, Any], kernel: KernelDep) -> dict[str, Any]:
    return await kernel.service(RetentionService).run(actor=actor_of(_principal(request)))


@post("/v1/privacy/holds", tags=["privacy"], status_code=201,
      opt={"permission": "privacy:retention"}, summary="Place a legal hold")
async def hold_create(request: Request[Any, Any, Any], kernel: KernelDep,
                      data: JSONBody[HoldCreate]) -> dict[str, str]:
    hid = await kernel.service(RetentionService).place_hold(
        data.data_class, data.customer_id, data.reason, actor_of(_principal(request)))
    return {"id": hid}


@delete("/v1/privacy/holds/{hold_id:str}", tags=["privacy"], status_code=204,
        opt={"permission": "privacy:retention"}, summary="Release a legal hold")
async def hold_release(request: Request[Any, Any, Any], kernel: KernelDep,
                       hold_id: FromPath[str]) -> None:
    if not await kernel.service(RetentionService).release_hold(hold_id,
                                                               actor_of(_principal(request))):
        raise NotFound("no active hold with that id", code="privacy.hold_not_found")


ROUTES = [staff_export, staff_export_status, staff_erase, staff_erasure_status, requests_list,
          my_export, my_export_status, my_erasure, download, audit_search, audit_verify, ropa,
          retention_report, retention_run, hold_create, hold_release]
