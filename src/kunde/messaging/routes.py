"""Messaging API and console page: send, archive per customer, outbox, webhook endpoints."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Template

from kunde.access.guard import current_principal
from kunde.core.errors import Forbidden, NotFound
from kunde.kernel import Kernel
from kunde.messaging.service import MessagingService
from kunde.web.deps import KernelDep
from kunde.web.pages import page


class MessageRequest(msgspec.Struct, forbid_unknown_fields=True):
    customer_id: str
    template: str
    idempotency_key: str
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    channel: str = "email"
    purpose: str = "transactional"
    locale: str | None = None


class EndpointCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    url: str
    secret: str


def _service(kernel: Kernel) -> MessagingService:
    return kernel.service(MessagingService)


@post("/v1/messages", opt={"permission": "messaging:send"}, tags=["messaging"],
      summary="Queue a message to a customer (consent and quiet hours apply)")
async def send_message(kernel: KernelDep, data: JSONBody[MessageRequest]) -> dict[str, Any]:
    async with kernel.db.transaction() as uow:
        message_id = await _service(kernel).enqueue(
            uow, customer_id=data.customer_id, template=data.template, context=data.context,
            channel=data.channel, purpose=data.purpose, locale=data.locale,
            idempotency_key=data.idempotency_key)
    return {"message_id": message_id, "suppressed": message_id is None}


@get("/v1/customers/{customer_id:str}/messages", opt={"permission": "self"},
     tags=["messaging"], summary="The communication archive of a customer")
async def customer_messages(request: Request[Any, Any, Any], kernel: KernelDep,
                            customer_id: FromPath[str]) -> list[dict[str, Any]]:
    principal = current_principal(request)
    if principal is None or not principal.may_access_customer(customer_id) or (
            principal.kind != "customer" and not principal.can("messaging:read")):
        raise Forbidden("not your archive", code="messaging.forbidden")
    return await _service(kernel).archive([customer_id])


@get("/v1/messages/{message_id:str}", opt={"permission": "messaging:read"},
     tags=["messaging"], summary="One message with its delivery state")
async def get_message(kernel: KernelDep, message_id: FromPath[str]) -> dict[str, Any]:
    found = await _service(kernel).get(message_id)
    if found is None:
        raise NotFound("no such message", code="messaging.message_not_found")
    return found


@get("/v1/messaging/outbox", opt={"permission": "messaging:read"}, tags=["messaging"],
     summary="Outbox counts by status and the state of each circuit breaker")
async def outbox(kernel: KernelDep) -> dict[str, Any]:
    return await _service(kernel).outbox_summary()


@post("/v1/messaging/endpoints", opt={"permission": "messaging:admin"}, tags=["messaging"],
      summary="Register a webhook endpoint for the webhook channel")
async def add_endpoint(kernel: KernelDep, data: JSONBody[EndpointCreate]) -> dict[str, str]:
    return {"id": await _service(kernel).add_endpoint(data.name, data.url, data.secret)}


@get("/console/messages", opt={"permission": "messaging:read"}, include_in_schema=False)
async def console_messages(request: Request[Any, Any, Any], kernel: KernelDep,
                           customer_id: FromQuery[str | None] = None) -> Template:
    service = _service(kernel)
    archive = await service.archive([customer_id]) if customer_id else []
    return page(request, "messaging/templates/console_messages.html",
                summary=await service.outbox_summary(), archive=archive,
                customer_id=customer_id or "")


ROUTES = [send_message, customer_messages, get_message, outbox, add_endpoint,
          console_messages]
