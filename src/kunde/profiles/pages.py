"""Console pages: customer search and the Customer 360."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from litestar import Request, get, post
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template

from kunde.core.errors import KundeError
from kunde.kernel import Kernel
from kunde.profiles.routes import actor, identity_report
from kunde.profiles.service import ProfileService, timeline
from kunde.profiles.service_consent import ConsentService
from kunde.profiles.service_segments import SegmentService
from kunde.web.deps import KernelDep
from kunde.web.pages import page

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def search(kernel: Kernel, q: str) -> list[str]:
    """Customer ids matching an email, phone, customer id or any other identifier."""
    q = q.strip()
    if not q:
        return []
    profiles = kernel.service(ProfileService)
    if UUID.match(q.lower()) and await profiles.member_ids(q.lower()):
        return [await profiles.canonical_id(q.lower())]
    if "@" in q:
        kinds: tuple[str, ...] = ("email", "user_id")
    elif re.fullmatch(r"[+\d][\d\s()/-]{5,}", q):
        kinds = ("phone", "user_id", *profiles.rules.custom_kinds)
    else:
        kinds = ("user_id", "anonymous_id", *profiles.rules.custom_kinds)
    found = [await profiles.resolve(k, q) for k in kinds]
    return list(dict.fromkeys(c for c in found if c))


@get("/console/customers", opt={"permission": "profiles:read"}, include_in_schema=False)
async def customers_page(request: Request[Any, Any, Any], kernel: KernelDep,
                         q: FromQuery[str] = "") -> Template | Redirect:
    ids = await search(kernel, q)
    if len(ids) == 1:
        return Redirect(f"/console/customers/{ids[0]}")
    results = [await kernel.service(ProfileService).get_profile(c) for c in ids]
    return page(request, "profiles/templates/customers.html", q=q, results=results,
                searched=bool(q.strip()))


@get("/console/customers/{customer_id:str}", opt={"permission": "profiles:read"},
     include_in_schema=False)
async def customer_page(request: Request[Any, Any, Any], kernel: KernelDep,
                        customer_id: FromPath[str], type: FromQuery[str] = "",
                        channel: FromQuery[str] = "", cursor: FromQuery[int | None] = None,
                        message: FromQuery[str] = "") -> Template:
    profiles = kernel.service(ProfileService)
    profile = await profiles.get_profile(customer_id)
    cid = profile["id"]
    events = await timeline(kernel, cid, before=cursor, types=[type] if type else None,
                            channels=[channel] if channel else None, limit=25)
    return page(request, "profiles/templates/customer.html", p=profile,
                ids=await identity_report(kernel, cid), timeline=events,
                consent=await kernel.service(ConsentService).state(cid),
                consent_history=await kernel.service(ConsentService).history(cid),
                segments=await kernel.service(SegmentService).of_customer(cid),
                filter_type=type, filter_channel=channel, message=message)


@post("/console/customers/{customer_id:str}/unmerge", opt={"permission": "profiles:write"},
      include_in_schema=False)
async def unmerge_form(request: Request[Any, Any, Any], kernel: KernelDep,
                       customer_id: FromPath[str], data: URLEncodedBody[dict[str, str]]
                       ) -> Redirect:
    record = data.get("record", "")
    reason = data.get("reason", "").strip() or "separated by staff"
    try:
        async with kernel.db.transaction() as uow:
            await kernel.service(ProfileService).graph.unmerge(
                uow, record, actor=actor(request), reason=reason, now=kernel.clock.now())
        message = "Records separated."
    except KundeError as exc:
        message = exc.detail
    return Redirect(f"/console/customers/{customer_id}?message={quote(message)}",
                    status_code=303)


PAGES = [customers_page, customer_page, unmerge_form]
