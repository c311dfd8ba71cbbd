"""Profiles REST API: profile by id or identifier, timeline, identities, consent, segments,
and staff merge/unmerge."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from litestar import Request, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from kunde.access.guard import current_principal
from kunde.core.errors import InvalidInput, NotFound
from kunde.kernel import Kernel
from kunde.profiles.models import CONSENT_METHODS, PURPOSES
from kunde.profiles.service import ProfileService, timeline
from kunde.profiles.service_consent import ConsentService
from kunde.profiles.service_segments import SegmentService
from kunde.profiles.tables import identity_links, merges
from kunde.web.deps import KernelDep

READ = {"permission": "profiles:read"}


class ConsentChange(msgspec.Struct, forbid_unknown_fields=True):
    purpose: str
    granted: bool
    method: str = "api"
    channel: str = "web"
    text_version: str = ""


class MergeRequest(msgspec.Struct, forbid_unknown_fields=True):
    customer_ids: list[str]
    reason: str


class UnmergeRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


class SegmentCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    rules: dict[str, Any]
    description: str = ""


def actor(request: Request[Any, Any, Any]) -> str:
    p = current_principal(request)
    return f"{p.kind}:{p.id}" if p else "unknown"


async def _live(kernel: Kernel, customer_id: str) -> str:
    profiles = kernel.service(ProfileService)
    if not await profiles.member_ids(customer_id):
        raise NotFound("no customer with that id", code="profiles.customer_not_found")
    return await profiles.canonical_id(customer_id)


@get("/v1/profiles/lookup", opt=READ, tags=["profiles"],
     summary="Find a profile by an identifier (email, phone, user_id, anonymous_id, custom)")
async def lookup(kernel: KernelDep, kind: FromQuery[str], value: FromQuery[str]
                 ) -> dict[str, Any]:
    return await kernel.service(ProfileService).profile_by_identifier(kind, value)


@get("/v1/profiles/{customer_id:str}", opt=READ, tags=["profiles"],
     summary="A customer's 360° profile: traits, computed traits, merged records")
async def profile(kernel: KernelDep, customer_id: FromPath[str]) -> dict[str, Any]:
    return await kernel.service(ProfileService).get_profile(customer_id)


@get("/v1/profiles/{customer_id:str}/timeline", opt=READ, tags=["profiles"],
     summary="Every event of the customer, newest first, paged by cursor")
async def profile_timeline(
    kernel: KernelDep, customer_id: FromPath[str], cursor: FromQuery[int | None] = None,
    type: FromQuery[str | None] = None, channel: FromQuery[str | None] = None,
    limit: FromQuery[int] = 50,
) -> dict[str, Any]:
    return await timeline(kernel, customer_id, before=cursor,
                          types=type.split(",") if type else None,
                          channels=channel.split(",") if channel else None, limit=limit)


@get("/v1/profiles/{customer_id:str}/identities", opt=READ, tags=["profiles"],
     summary="Identifiers with provenance, the audit trail of links, and merges")
async def profile_identities(kernel: KernelDep, customer_id: FromPath[str]) -> dict[str, Any]:
    return await identity_report(kernel, customer_id)


async def identity_report(kernel: Kernel, customer_id: str) -> dict[str, Any]:
    profiles = kernel.service(ProfileService)
    ids = await profiles.member_ids(customer_id)
    if not ids:
        raise NotFound("no customer with that id", code="profiles.customer_not_found")
    async with kernel.db.read() as conn:
        links = (await conn.execute(sa.select(identity_links)
                                    .where(identity_links.c.customer_id.in_(ids))
                                    .order_by(identity_links.c.at))).all()
        merge_rows = (await conn.execute(sa.select(merges).where(sa.or_(
            merges.c.survivor_id.in_(ids), merges.c.merged_id.in_(ids)))
            .order_by(merges.c.created_at))).all()
    return {
        "customer_id": ids[0], "records": ids,
        "identities": await profiles.identities(customer_id),
        "links": [{"kind": r.kind, "customer_record": r.customer_id, "outcome": r.outcome,
                   "reason": r.reason, "source": r.source, "event_id": r.event_id, "at": r.at}
                  for r in links],
        "merges": [{"id": r.id, "survivor_id": r.survivor_id, "merged_id": r.merged_id,
                    "kind": r.kind, "reason": r.reason, "actor": r.actor,
                    "event_id": r.event_id, "at": r.created_at, "undone_at": r.undone_at,
                    "undone_by": r.undone_by, "undo_reason": r.undo_reason}
                   for r in merge_rows],
    }


@get("/v1/profiles/{customer_id:str}/consent", opt={"permission": "consent:read"},
     tags=["profiles"], summary="Consent per purpose and its full history")
async def get_consent(kernel: KernelDep, customer_id: FromPath[str]) -> dict[str, Any]:
    cid = await _live(kernel, customer_id)
    consent = kernel.service(ConsentService)
    return {"customer_id": cid, "purposes": await consent.state(cid),
            "history": await consent.history(cid)}


@post("/v1/profiles/{customer_id:str}/consent", opt={"permission": "consent:write"},
      tags=["profiles"], status_code=200, summary="Grant or withdraw consent for a purpose")
async def change_consent(request: Request[Any, Any, Any], kernel: KernelDep,
                         customer_id: FromPath[str], data: JSONBody[ConsentChange]
                         ) -> dict[str, Any]:
    if data.method not in CONSENT_METHODS:
        raise InvalidInput(f"method must be one of {', '.join(CONSENT_METHODS)}",
                           code="consent.unknown_method")
    if data.purpose not in PURPOSES:
        raise InvalidInput(f"purpose must be one of {', '.join(PURPOSES)}",
                           code="consent.unknown_purpose")
    cid = await _live(kernel, customer_id)
    changed = await kernel.service(ConsentService).record(
        cid, data.purpose, data.granted, method=data.method, channel=data.channel,
        text_version=data.text_version, actor=actor(request))
    return {"customer_id": cid, "purpose": data.purpose, "granted": data.granted,
            "changed": changed}


@get("/v1/profiles/{customer_id:str}/segments", opt={"permission": "segments:read"},
     tags=["profiles"], summary="Segments the customer is in")
async def profile_segments(kernel: KernelDep, customer_id: FromPath[str]
                           ) -> list[dict[str, Any]]:
    await _live(kernel, customer_id)
    return await kernel.service(SegmentService).of_customer(customer_id)


@post("/v1/profiles/merge", opt={"permission": "profiles:write"}, tags=["profiles"],
      status_code=200, summary="Staff: merge customers known to be one person")
async def merge(request: Request[Any, Any, Any], kernel: KernelDep,
                data: JSONBody[MergeRequest]) -> dict[str, Any]:
    if len(data.customer_ids) != 2 or not data.reason.strip():
        raise InvalidInput("give two customer_ids and a reason", code="profiles.invalid_merge")
    a, b = data.customer_ids
    profiles = kernel.service(ProfileService)
    async with kernel.db.transaction() as uow:
        survivor, refusal = await profiles.graph.merge(
            uow, a, b, kind="staff", reason=data.reason, actor=actor(request), event_id=None,
            now=kernel.clock.now(), force=True)
    if refusal:
        raise InvalidInput(refusal, code="profiles.merge_refused", status=409)
    return {"survivor_id": survivor}


@post("/v1/profiles/{customer_id:str}/unmerge", opt={"permission": "profiles:write"},
      tags=["profiles"], status_code=200,
      summary="Staff: split a merged customer record off again (audited)")
async def unmerge(request: Request[Any, Any, Any], kernel: KernelDep,
                  customer_id: FromPath[str], data: JSONBody[UnmergeRequest]) -> dict[str, Any]:
    if not data.reason.strip():
        raise InvalidInput("say why the records are separated", code="profiles.invalid_unmerge")
    async with kernel.db.transaction() as uow:
        survivor, restored = await kernel.service(ProfileService).graph.unmerge(
            uow, customer_id, actor=actor(request), reason=data.reason, now=kernel.clock.now())
    return {"survivor_id": survivor, "restored_id": restored}


@get("/v1/segments", opt={"permission": "segments:read"}, tags=["segments"],
     summary="Segments with their member counts")
async def list_segments(kernel: KernelDep) -> list[dict[str, Any]]:
    return await kernel.service(SegmentService).all_segments()


@post("/v1/segments", opt={"permission": "segments:write"}, tags=["segments"],
      summary="Create a rule-based segment (members are computed at once)")
async def create_segment(kernel: KernelDep, data: JSONBody[SegmentCreate]) -> dict[str, Any]:
    service = kernel.service(SegmentService)
    return await service.get(await service.create(data.name, data.rules, data.description))


@get("/v1/segments/{segment_id:str}", opt={"permission": "segments:read"}, tags=["segments"],
     summary="One segment")
async def get_segment(kernel: KernelDep, segment_id: FromPath[str]) -> dict[str, Any]:
    return await kernel.service(SegmentService).get(segment_id)


@get("/v1/segments/{segment_id:str}/members", opt={"permission": "segments:read"},
     tags=["segments"], summary="Member customer ids, paged by cursor")
async def segment_members(kernel: KernelDep, segment_id: FromPath[str],
                          cursor: FromQuery[str | None] = None, limit: FromQuery[int] = 100
                          ) -> dict[str, Any]:
    return await kernel.service(SegmentService).members(segment_id, after=cursor, limit=limit)


@delete("/v1/segments/{segment_id:str}", opt={"permission": "segments:write"},
        tags=["segments"], status_code=204, summary="Delete a segment")
async def delete_segment(kernel: KernelDep, segment_id: FromPath[str]) -> None:
    await kernel.service(SegmentService).delete(segment_id)


ROUTES = [lookup, profile, profile_timeline, profile_identities, get_consent, change_consent,
          profile_segments, merge, unmerge, list_segments, create_segment, get_segment,
          segment_members, delete_segment]
