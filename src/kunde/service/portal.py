"""The customer's side: cases in the portal, and the feedback page reached by a link."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.params import FromPath, URLEncodedBody
from litestar.response import Redirect, Template

from kunde.core.errors import KundeError
from kunde.service.errors import CaseNotFound
from kunde.service.feedback import FeedbackService
from kunde.service.routes import principal_of
from kunde.service.service import Actor, CaseService, NewCase
from kunde.web.deps import KernelDep
from kunde.web.pages import portal_page

T = "service/templates/"
SELF = {"permission": "self"}


def _customer(request: Request[Any, Any, Any]) -> str:
    p = principal_of(request)
    if p.kind != "customer" or not p.customer_id:
        raise CaseNotFound("the portal shows a customer's own cases")
    return p.customer_id


@get("/portal/service", opt=SELF, include_in_schema=False)
async def my_cases(request: Request[Any, Any, Any], kernel: KernelDep) -> Template:
    cid = _customer(request)
    cases = await kernel.service(CaseService).list_cases(customer_id=cid, limit=50)
    return portal_page(request, T + "portal_cases.html", cases=cases)


@post("/portal/service", opt=SELF, include_in_schema=False)
async def open_my_case(request: Request[Any, Any, Any], kernel: KernelDep,
                       data: URLEncodedBody[dict[str, str]]) -> Redirect:
    cid = _customer(request)
    body = (data.get("body") or "").strip()
    if not body:
        return Redirect("/portal/service", status_code=303)
    case_id = await kernel.service(CaseService).open_case(
        NewCase(channel="portal", subject=(data.get("subject") or body[:80]).strip(),
                customer_id=cid, order_id=data.get("order_id") or None),
        Actor("customer", cid, "customer"), body=body)
    return Redirect(f"/portal/service/cases/{case_id}", status_code=303)


@get("/portal/service/cases/{case_id:str}", opt=SELF, include_in_schema=False)
async def my_case(request: Request[Any, Any, Any], kernel: KernelDep, case_id: FromPath[str]
                  ) -> Template:
    cid = _customer(request)
    cases = kernel.service(CaseService)
    case = await cases.get_case(case_id)
    if case["customer_id"] != cid:
        raise CaseNotFound("no such case")
    thread = [m for m in await cases.thread(case_id) if m["direction"] != "note"]
    return portal_page(request, T + "portal_case.html", case=case, thread=thread)


@post("/portal/service/cases/{case_id:str}", opt=SELF, include_in_schema=False)
async def write_on_my_case(request: Request[Any, Any, Any], kernel: KernelDep,
                           case_id: FromPath[str], data: URLEncodedBody[dict[str, str]]
                           ) -> Redirect:
    cid = _customer(request)
    body = (data.get("body") or "").strip()
    if body:
        await kernel.service(CaseService).customer_message(case_id, cid, body, "portal")
    return Redirect(f"/portal/service/cases/{case_id}", status_code=303)


@get("/feedback/{token:str}", opt={"public": True}, include_in_schema=False)
async def feedback_form(kernel: KernelDep, token: FromPath[str]) -> Template:
    try:
        q = await kernel.service(FeedbackService).lookup(token)
    except KundeError as exc:
        return Template(T + "feedback.html", context={"q": None, "message": exc.detail},
                        status_code=exc.http_status)
    return Template(T + "feedback.html", context={"q": q, "token": token, "message": None})


@post("/feedback/{token:str}", opt={"public": True}, include_in_schema=False)
async def feedback_submit(kernel: KernelDep, token: FromPath[str],
                          data: URLEncodedBody[dict[str, str]]) -> Template:
    try:
        await kernel.service(FeedbackService).answer(
            token, int(data.get("score", "-1")), data.get("comment", ""))
    except (KundeError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, KundeError) else "choose a score"
        status = exc.http_status if isinstance(exc, KundeError) else 422
        return Template(T + "feedback.html", context={"q": None, "message": detail},
                        status_code=status)
    return Template(T + "feedback.html",
                    context={"q": None, "message": "Thank you for your feedback!"})


PORTAL_ROUTES = [my_cases, open_my_case, my_case, write_on_my_case, feedback_form,
                 feedback_submit]
