"""Access API: who am I, and API-key administration for admins."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from litestar import Request, delete, get, post
from litestar.params import FromPath, JSONBody

from kunde.access.guard import current_principal
from kunde.access.tables import api_keys
from kunde.core.errors import NotFound, Unauthenticated
from kunde.web.deps import KernelDep


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    scopes: list[str]


class ApiKeyCreated(msgspec.Struct):
    id: str
    name: str
    scopes: list[str]
    key: str


@get("/v1/me", opt={"permission": "self"}, tags=["access"], summary="The calling principal",
     include_in_schema=True)
async def me(request: Request[Any, Any, Any]) -> dict[str, Any]:
    p = current_principal(request)
    if p is None:
        raise Unauthenticated("not logged in")
    return {"kind": p.kind, "id": p.id, "name": p.name, "role": p.role,
            "scopes": sorted(p.scopes), "customer_id": p.customer_id}


@post("/v1/admin/api-keys", opt={"permission": "admin:keys"}, tags=["access"],
      summary="Create an API key; the key is shown once")
async def create_key(kernel: KernelDep, data: JSONBody[ApiKeyCreate]) -> ApiKeyCreated:
    key_id, key = await kernel.access.create_api_key(data.name, data.scopes)
    return ApiKeyCreated(id=key_id, name=data.name, scopes=sorted(set(data.scopes)), key=key)


@get("/v1/admin/api-keys", opt={"permission": "admin:keys"}, tags=["access"],
     summary="List API keys (never their secrets)")
async def list_keys(kernel: KernelDep) -> list[dict[str, Any]]:
    async with kernel.db.read() as conn:
        rows = await conn.execute(sa.select(
            api_keys.c.id, api_keys.c.name, api_keys.c.scopes, api_keys.c.created_at,
            api_keys.c.revoked_at).order_by(api_keys.c.created_at))
        return [{"id": r.id, "name": r.name, "scopes": r.scopes.split(),
                 "created_at": r.created_at, "revoked_at": r.revoked_at} for r in rows]


@delete("/v1/admin/api-keys/{key_id:str}", opt={"permission": "admin:keys"}, tags=["access"],
        summary="Revoke an API key", status_code=204)
async def revoke_key(kernel: KernelDep, key_id: FromPath[str]) -> None:
    if not await kernel.access.revoke_api_key(key_id):
        raise NotFound("no active API key with that id", code="access.key_not_found")
