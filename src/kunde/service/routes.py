"""Service API: cases, the conversation, the workspace, macros, chat, feedback, reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from kunde.access.guard import current_principal
from kunde.access.models import Principal
from kunde.core.clock import as_utc
from kunde.core.errors import Unauthenticated
from kunde.service.errors import CaseNotFound, NotYourCase
from kunde.service.feedback import FeedbackService
from kunde.service.macros import MacroService
from kunde.service.reports import service_report
from kunde.service.service import Actor, CaseService, NewCase
from kunde.service.workspace import Workspace
from kunde.web.deps import KernelDep

TAGS = ["service"]


class CaseCreate(msgspec.Struct, forbid_unknown_fields=True):
    subject: str
    customer_id: str | None = None
    body: str | None = None
    category: str = "general"
    priority: str = "normal"
    queue: str | None = None
    order_id: str | None = None
    shipment_id: str | None = None
    return_id: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    contact_email: str | None = None


class CaseChange(msgspec.Struct, forbid_unknown_fields=True):
    status: str | None = None
    priority: str | None = None
    queue: str | None = None
    assignee_id: str | None = None
    assignee_name: str | None = None
    tags: list[str] | None = None
    category: str | None = None


class MessageIn(msgspec.Struct, forbid_unknown_fields=True):
    body: str


class ChatIn(msgspec.Struct, forbid_unknown_fields=True):
    body: str
    case_id: str | None = None
    subject: str | None = None


class LinkContact(msgspec.Struct, forbid_unknown_fields=True):
    customer_id: str


class MacroIn(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    locale: str
    category: str
    title: str
    body: str


class FeedbackIn(msgspec.Struct, forbid_unknown_fields=True):
    score: int
    comment: str = ""
    kind: str | None = None


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    p = current_principal(request)
    if p is None:
        raise Unauthenticated("not logged in")
    return p


def actor_of(p: Principal) -> Actor:
    return Actor("staff", p.id, p.name)


@post("/v1/service/cases", opt={"permission": "service:write"}, tags=TAGS,
      summary="Open a case for a customer (or an unverified contact)")
async def create_case(request: Request[Any, Any, Any], kernel: KernelDep,
                      data: JSONBody[CaseCreate]) -> dict[str, Any]:
    cases = kernel.service(CaseService)
    case_id = await cases.open_case(NewCase(
        channel="staff", subject=data.subject, customer_id=data.customer_id,
        category=data.category, priority=data.priority, queue=data.queue,
        order_id=data.order_id, shipment_id=data.shipment_id, return_id=data.return_id,
        tags=data.tags, contact_email=data.contact_email),
        actor_of(principal_of(request)), body=data.body)
    return await cases.get_case(case_id)


@get("/v1/service/cases", opt={"permission": "service:cases"}, tags=TAGS,
     summary="List cases by status, queue, customer or assignee")
async def list_cases(kernel: KernelDep, status: FromQuery[str | None] = None,
                     queue: FromQuery[str | None] = None,
                     customer_id: FromQuery[str | None] = None,
                     assignee_id: FromQuery[str | None] = None,
                     limit: FromQuery[int] = 100) -> list[dict[str, Any]]:
    return await kernel.service(CaseService).list_cases(
        status=status, queue=queue, customer_id=customer_id, assignee_id=assignee_id,
        limit=limit)


@get("/v1/service/cases/{case_id:str}", opt={"permission": "service:cases"}, tags=TAGS,
     summary="A case with its conversation")
async def get_case(kernel: KernelDep, case_id: FromPath[str]) -> dict[str, Any]:
    cases = kernel.service(CaseService)
    case = await cases.get_case(case_id)
    case["thread"] = await cases.thread(case_id)
    return case


@get("/v1/service/cases/{case_id:str}/workspace", opt={"permission": "service:cases"},
     tags=TAGS, summary="The agent workspace: case, thread and every panel your role allows")
async def workspace(request: Request[Any, Any, Any], kernel: KernelDep,
                    case_id: FromPath[str]) -> dict[str, Any]:
    return await kernel.service(Workspace).view(case_id, principal_of(request))


@patch("/v1/service/cases/{case_id:str}", opt={"permission": "service:write"}, tags=TAGS,
       summary="Change status, priority, queue, assignee or tags")
async def change_case(request: Request[Any, Any, Any], kernel: KernelDep,
                      case_id: FromPath[str], data: JSONBody[CaseChange]) -> dict[str, Any]:
    cases = kernel.service(CaseService)
    await cases.update(case_id, actor_of(principal_of(request)), status=data.status,
                       priority=data.priority, queue=data.queue, assignee_id=data.assignee_id,
                       assignee_name=data.assignee_name, tags=data.tags,
                       category=data.category)
    return await cases.get_case(case_id)


@post("/v1/service/cases/{case_id:str}/replies", opt={"permission": "service:write"},
      tags=TAGS, summary="Reply to the customer (sent through messaging)")
async def reply(request: Request[Any, Any, Any], kernel: KernelDep, case_id: FromPath[str],
                data: JSONBody[MessageIn]) -> dict[str, str]:
    mid = await kernel.service(CaseService).reply(case_id, actor_of(principal_of(request)),
                                                  data.body)
    return {"message_id": mid}


@post("/v1/service/cases/{case_id:str}/notes", opt={"permission": "service:write"},
      tags=TAGS, summary="Add an internal note")
async def note(request: Request[Any, Any, Any], kernel: KernelDep, case_id: FromPath[str],
               data: JSONBody[MessageIn]) -> dict[str, str]:
    mid = await kernel.service(CaseService).note(case_id, actor_of(principal_of(request)),
                                                 data.body)
    return {"message_id": mid}


@post("/v1/service/cases/{case_id:str}/contact", opt={"permission": "service:write"},
      tags=TAGS, summary="Verify an unverified contact as this customer")
async def link_contact(request: Request[Any, Any, Any], kernel: KernelDep,
                       case_id: FromPath[str], data: JSONBody[LinkContact]) -> dict[str, Any]:
    cases = kernel.service(CaseService)
    await cases.link_contact(case_id, data.customer_id, actor_of(principal_of(request)))
    return await cases.get_case(case_id)


@post("/v1/service/cases/{case_id:str}/actions/{action:str}",
      opt={"permission": "service:write", "criticality": "critical"}, tags=TAGS,
      summary="Act for the case's customer through the owning feature "
              "(refund, goodwill, start_return, resend_tracking)")
async def case_action(request: Request[Any, Any, Any], kernel: KernelDep,
                      case_id: FromPath[str], action: FromPath[str],
                      data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    params = dict(data)
    key = request.headers.get("idempotency-key")
    if key:
        params.setdefault("idempotency_key", key)
    return await kernel.service(Workspace).act(case_id, principal_of(request), action, params)


@get("/v1/service/macros", opt={"permission": "service:cases"}, tags=TAGS,
     summary="Macros; with category, suggested ones first in the best locale")
async def list_macros(kernel: KernelDep, category: FromQuery[str | None] = None,
                      locale: FromQuery[str | None] = None) -> list[dict[str, Any]]:
    macros = kernel.service(MacroService)
    if category:
        return await macros.suggest(category, locale)
    return await macros.list_all()


@get("/v1/service/cases/{case_id:str}/macros", opt={"permission": "service:cases"}, tags=TAGS,
     summary="The case's suggested macros (its category first, best locale), filled in")
async def case_macros(request: Request[Any, Any, Any], kernel: KernelDep,
                      case_id: FromPath[str]) -> list[dict[str, Any]]:
    p = principal_of(request)
    case = await kernel.service(CaseService).get_case(case_id)
    wanted: tuple[str, ...] = ("profile",)
    if case["order_id"] or case["shipment_id"]:
        wanted += ("orders", "shipments")
    panels = await kernel.service(Workspace).panels(case["customer_id"], p, wanted)
    return await kernel.service(MacroService).suggest_for_case(case, panels, p.name)


@put("/v1/service/macros", opt={"permission": "service:macros"}, tags=TAGS,
     summary="Create or replace a macro (key + locale)")
async def save_macro(kernel: KernelDep, data: JSONBody[MacroIn]) -> dict[str, str]:
    mid = await kernel.service(MacroService).save(data.key, data.locale, data.category,
                                                   data.title, data.body)
    return {"id": mid}


@get("/v1/service/reports", opt={"permission": "service:read", "criticality": "background"},
     tags=TAGS, summary="Cases, SLA compliance, response times, CSAT and NPS")
async def report(kernel: KernelDep, days: FromQuery[int] = 90) -> dict[str, Any]:
    return await service_report(kernel, days)


# -- the customer's side: chat-style endpoint ----------------------------------------------
async def _own_case(kernel: Any, p: Principal, case_id: str) -> dict[str, Any]:
    case: dict[str, Any] = await kernel.service(CaseService).get_case(case_id)
    if p.kind == "customer" and case["customer_id"] != p.customer_id:
        raise CaseNotFound("no such case")
    if p.kind != "customer" and not p.can("service:cases"):
        raise NotYourCase("only the customer or service staff may read this conversation")
    return case


@post("/v1/service/chat", opt={"permission": "self"}, tags=TAGS,
      summary="Customer chat: write on a case of yours, or start one")
async def chat_send(request: Request[Any, Any, Any], kernel: KernelDep,
                    data: JSONBody[ChatIn]) -> dict[str, str]:
    p = principal_of(request)
    if p.kind != "customer" or not p.customer_id:
        raise NotYourCase("the chat is for customers; agents reply on the case")
    cases = kernel.service(CaseService)
    if data.case_id:
        await _own_case(kernel, p, data.case_id)
        mid = await cases.customer_message(data.case_id, p.customer_id, data.body, "chat")
        return {"case_id": data.case_id, "message_id": mid}
    case_id = await cases.open_case(
        NewCase(channel="chat", subject=data.subject or data.body[:80],
                customer_id=p.customer_id),
        Actor("customer", p.customer_id, "customer"), body=data.body)
    return {"case_id": case_id}


@get("/v1/service/chat/{case_id:str}", opt={"permission": "self"}, tags=TAGS,
     summary="Customer chat: the conversation (notes excluded), newer than ?after")
async def chat_read(request: Request[Any, Any, Any], kernel: KernelDep, case_id: FromPath[str],
                    after: FromQuery[datetime | None] = None) -> dict[str, Any]:
    p = principal_of(request)
    case = await _own_case(kernel, p, case_id)
    since = as_utc(after) if after else None
    thread = [m for m in await kernel.service(CaseService).thread(case_id)
              if m["direction"] != "note" and (since is None or m["created_at"] > since)]
    return {"case_id": case_id, "status": case["status"], "messages": [
        {k: m[k] for k in ("id", "direction", "channel", "author_name", "body", "created_at")}
        for m in thread]}


@post("/v1/service/feedback/{token:str}", opt={"public": True}, tags=TAGS,
      summary="Answer a feedback link (once; no log-in)")
async def feedback_answer(kernel: KernelDep, token: FromPath[str],
                          data: JSONBody[FeedbackIn]) -> dict[str, Any]:
    return await kernel.service(FeedbackService).answer(token, data.score, data.comment,
                                                        kind=data.kind)


API_ROUTES = [create_case, list_cases, get_case, workspace, change_case, reply, note,
              link_contact, case_action, list_macros, case_macros, save_macro, report,
              chat_send, chat_read, feedback_answer]
