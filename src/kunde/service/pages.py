"""Console pages of customer service: queues, the agent workspace, reports, review, macros."""

from __future__ import annotations

import contextlib
from typing import Any

from litestar import Request, get, post
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template

from kunde.core.errors import KundeError
from kunde.core.ids import new_id
from kunde.service import models
from kunde.service.inbound import InboundMailService
from kunde.service.macros import MacroService
from kunde.service.reports import report_charts, service_report
from kunde.service.routes import actor_of, principal_of
from kunde.service.service import CaseService, NewCase
from kunde.service.workspace import Workspace
from kunde.web.deps import KernelDep
from kunde.web.pages import page

T = "service/templates/"
OPT = {"permission": "service:cases"}


@get("/console/service", opt=OPT, include_in_schema=False)
async def queues_page(request: Request[Any, Any, Any], kernel: KernelDep,
                      queue: FromQuery[str | None] = None,
                      status: FromQuery[str | None] = None,
                      mine: FromQuery[bool] = False) -> Template:
    p = principal_of(request)
    cases = await kernel.service(CaseService).list_cases(
        queue=queue or None, status=status or None, open_only=not status,
        assignee_id=p.id if mine else None, limit=200)
    counts: dict[str, int] = {}
    for c in await kernel.service(CaseService).list_cases(open_only=True, limit=500):
        counts[c["queue"]] = counts.get(c["queue"], 0) + 1
    return page(request, T + "queues.html", cases=cases, queues=models.QUEUES, counts=counts,
                queue=queue, status=status, statuses=models.STATUSES, mine=mine,
                now=kernel.clock.now())


@get("/console/service/cases/{case_id:str}", opt=OPT, include_in_schema=False)
async def case_page(request: Request[Any, Any, Any], kernel: KernelDep,
                    case_id: FromPath[str], error: FromQuery[str | None] = None,
                    macro: FromQuery[str | None] = None) -> Template:
    p = principal_of(request)
    view = await kernel.service(Workspace).view(case_id, p)
    case = view["case"]
    macros = await kernel.service(MacroService).suggest_for_case(case, view["panels"], p.name)
    chosen = next((m for m in macros if m["id"] == macro), None) if macro else None
    draft = chosen["text"] if chosen else ""
    return page(request, T + "case.html", v=view, case=case, macros=macros[:6], draft=draft,
                chosen=chosen, error=error, statuses=models.STATUSES, priorities=models.PRIORITIES,
                categories=sorted(models.CATEGORY_QUEUE),
                queues=models.QUEUES, can_write=p.can("service:write"),
                idem=new_id(), now=kernel.clock.now())


def _back(case_id: str, error: str | None = None) -> Redirect:
    url = f"/console/service/cases/{case_id}"
    if error:
        from urllib.parse import quote

        url += "?error=" + quote(error)
    return Redirect(url, status_code=303)


@post("/console/service/cases/{case_id:str}/messages", opt={"permission": "service:write"},
      include_in_schema=False)
async def case_message(request: Request[Any, Any, Any], kernel: KernelDep,
                       case_id: FromPath[str], data: URLEncodedBody[dict[str, str]]
                       ) -> Redirect:
    body = (data.get("body") or "").strip()
    if not body:
        return _back(case_id, "write a message first")
    actor = actor_of(principal_of(request))
    cases = kernel.service(CaseService)
    try:
        if data.get("mode") == "note":
            await cases.note(case_id, actor, body)
        else:
            await cases.reply(case_id, actor, body)
    except KundeError as exc:
        return _back(case_id, exc.detail)
    return _back(case_id)


@post("/console/service/cases/{case_id:str}/update", opt={"permission": "service:write"},
      include_in_schema=False)
async def case_update(request: Request[Any, Any, Any], kernel: KernelDep,
                      case_id: FromPath[str], data: URLEncodedBody[dict[str, str]]) -> Redirect:
    p = principal_of(request)
    assignee = data.get("assign")
    try:
        await kernel.service(CaseService).update(
            case_id, actor_of(p), status=data.get("status") or None,
            priority=data.get("priority") or None, queue=data.get("queue") or None,
            assignee_id=p.id if assignee == "me" else ("" if assignee == "none" else None),
            assignee_name=p.name if assignee == "me" else None,
            tags=[t for t in (data.get("tags") or "").split(",")] if "tags" in data else None,
            category=data.get("category") or None)
    except KundeError as exc:
        return _back(case_id, exc.detail)
    return _back(case_id)


@post("/console/service/cases/{case_id:str}/action", opt={"permission": "service:write"},
      include_in_schema=False)
async def case_act(request: Request[Any, Any, Any], kernel: KernelDep,
                   case_id: FromPath[str], data: URLEncodedBody[dict[str, str]]) -> Redirect:
    params: dict[str, Any] = {k: v for k, v in data.items()
                              if k not in ("_csrf_token", "action") and v != ""}
    try:
        await kernel.service(Workspace).act(case_id, principal_of(request),
                                            data.get("action", ""), params)
    except (KundeError, KeyError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, KundeError) else f"missing or bad field: {exc}"
        return _back(case_id, detail)
    return _back(case_id)


@get("/console/service/new", opt={"permission": "service:write"}, include_in_schema=False)
async def new_case_form(request: Request[Any, Any, Any],
                        customer_id: FromQuery[str | None] = None) -> Template:
    return page(request, T + "new_case.html", customer_id=customer_id or "",
                priorities=models.PRIORITIES, categories=sorted(models.CATEGORY_QUEUE),
                error=None)


@post("/console/service/new", opt={"permission": "service:write"}, include_in_schema=False)
async def new_case(request: Request[Any, Any, Any], kernel: KernelDep,
                   data: URLEncodedBody[dict[str, str]]) -> Any:
    try:
        case_id = await kernel.service(CaseService).open_case(NewCase(
            channel="staff", subject=data.get("subject") or "(no subject)",
            customer_id=data.get("customer_id") or None,
            contact_email=data.get("contact_email") or None,
            category=data.get("category") or "general",
            priority=data.get("priority") or "normal",
            order_id=data.get("order_id") or None), actor_of(principal_of(request)),
            body=data.get("body") or None)
    except KundeError as exc:
        return page(request, T + "new_case.html", customer_id=data.get("customer_id", ""),
                    priorities=models.PRIORITIES, categories=sorted(models.CATEGORY_QUEUE),
                    error=exc.detail)
    return Redirect(f"/console/service/cases/{case_id}", status_code=303)


@get("/console/service/reports", opt={"permission": "service:read",
                                      "criticality": "background"}, include_in_schema=False)
async def reports_page(request: Request[Any, Any, Any], kernel: KernelDep,
                       days: FromQuery[int] = 90) -> Template:
    r = await service_report(kernel, days)
    return page(request, T + "reports.html", r=r, charts=report_charts(r))


@get("/console/service/review", opt=OPT, include_in_schema=False)
async def review_page(request: Request[Any, Any, Any], kernel: KernelDep) -> Template:
    items = await kernel.service(InboundMailService).review_items()
    return page(request, T + "review.html", items=items)


@get("/console/service/review/{review_id:str}", opt={"permission": "service:write"},
     include_in_schema=False)
async def review_item(request: Request[Any, Any, Any], kernel: KernelDep,
                      review_id: FromPath[str]) -> Template:
    raw = await kernel.service(InboundMailService).review_raw(review_id)
    text = ""
    if raw is not None:
        with contextlib.suppress(Exception):
            text = raw[:200_000].decode("utf-8", "replace")
    return page(request, T + "review_item.html", review_id=review_id, text=text,
                missing=raw is None)


@get("/console/service/macros", opt=OPT, include_in_schema=False)
async def macros_page(request: Request[Any, Any, Any], kernel: KernelDep,
                      edit: FromQuery[str | None] = None,
                      error: FromQuery[str | None] = None) -> Template:
    macros = await kernel.service(MacroService).list_all()
    editing = next((m for m in macros if m["id"] == edit), None) if edit else None
    return page(request, T + "macros.html", macros=macros, editing=editing, error=error,
                can_edit=principal_of(request).can("service:macros"),
                categories=sorted(models.CATEGORY_QUEUE),
                variables=sorted(models.MACRO_VARIABLES))


@post("/console/service/macros", opt={"permission": "service:macros"},
      include_in_schema=False)
async def macro_save(kernel: KernelDep, data: URLEncodedBody[dict[str, str]]) -> Redirect:
    from urllib.parse import quote

    try:
        macro_id = await kernel.service(MacroService).save(
            (data.get("key") or "").strip(), (data.get("locale") or "").strip(),
            data.get("category") or "", (data.get("title") or "").strip(),
            (data.get("body") or "").replace("\r\n", "\n"))
    except KundeError as exc:
        return Redirect("/console/service/macros?error=" + quote(exc.detail), status_code=303)
    return Redirect(f"/console/service/macros?edit={macro_id}", status_code=303)


PAGE_ROUTES = [queues_page, case_page, case_message, case_update, case_act, new_case_form,
               new_case, reports_page, review_page, review_item, macros_page, macro_save]
