"""The Segment HTTP Tracking API: ``POST /v1/{track,identify,page,screen,group,alias,batch}``.

Authentication as Segment accepts it: the write key as HTTP Basic user name (the guard
resolves it to a ``source`` principal), or ``writeKey`` in the JSON body, checked here.
The answer is 200 only after the events are committed.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, post

from kunde.access.guard import current_principal
from kunde.access.models import Principal
from kunde.ingest.errors import UnknownWriteKey
from kunde.ingest.models import (
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    decompress,
    normalise,
    normalise_batch,
    parse_body,
)
from kunde.ingest.service import IngestService
from kunde.kernel import Kernel
from kunde.web.deps import KernelDep

_OPT = {"permission": "ingest:write", "auth_in_body": True}


async def _source(request: Request[Any, Any, Any], kernel: Kernel, body: dict[str, Any]
                  ) -> Principal:
    principal = current_principal(request)
    if principal is not None:
        return principal
    if request.headers.get("authorization"):
        raise UnknownWriteKey("the write key (or API key) is not known or was disabled")
    write_key = body.get("writeKey")
    if not isinstance(write_key, str) or not write_key:
        raise UnknownWriteKey("send the source's write key as HTTP Basic user name or as "
                              "writeKey in the body", code="ingest.missing_write_key")
    principal = await kernel.access.verify_write_key(write_key)
    if principal is None:
        raise UnknownWriteKey("the write key is not known or was disabled")
    return principal


async def ingest(request: Request[Any, Any, Any], kernel: Kernel, kind: str | None
                 ) -> dict[str, Any]:
    raw = decompress(await request.body(), request.headers.get("content-encoding"))
    body = parse_body(raw, limit=MAX_BATCH_BYTES if kind is None else MAX_EVENT_BYTES)
    source = await _source(request, kernel, body)
    channel = source.channel or "server"
    now = kernel.clock.now()
    if kind is None:
        messages = normalise_batch(body, received_at=now, channel=channel, raw_size=len(raw))
    else:
        messages = [normalise(body, index=None, kind=kind, received_at=now, batch_sent_at=None,
                              channel=channel, check_size=False)]
    counts = await kernel.service(IngestService).accept(source.id, channel, messages)
    return {"success": True, **counts}


@post("/v1/batch", opt={**_OPT, "criticality": "background"}, status_code=200,
      tags=["ingest"], summary="Send up to 500 KB of Spec events at once (Segment batch)")
async def batch(request: Request[Any, Any, Any], kernel: KernelDep) -> dict[str, Any]:
    return await ingest(request, kernel, None)


@post("/v1/track", opt=_OPT, status_code=200, tags=["ingest"], summary="Record an action")
async def track(request: Request[Any, Any, Any], kernel: KernelDep) -> dict[str, Any]:
    return await ingest(request, kernel, "track")


@post("/v1/identify", opt=_OPT, status_code=200, tags=["ingest"],
      summary="Tie a user to their traits and anonymous history")
async def identify(request: Request[Any, Any, Any], kernel: KernelDep) -> dict[str, Any]:
    return await ingest(request, kernel, "identify")


@post("/v1/page", opt=_OPT, status_code=200, tags=["ingest"], summary="Record a page view")
async def page(request: Request[Any, Any, Any], kernel: KernelDep) -> dict[str, Any]:
    return await ingest(request, kernel, "page")


@post("/v1/screen", opt=_OPT, status_code=200, tags=["ingest"],
      summary="Record an app screen view")
async def screen(request: Request[Any, Any, Any], kernel: KernelDep) -> dict[str, Any]:
    return await ingest(request, kernel, "screen")


@post("/v1/group", opt=_OPT, status_code=200, tags=["ingest"],
      summary="Associate a user with a group (household, company)")
async def group(request: Request[Any, Any, Any], kernel: KernelDep) -> dict[str, Any]:
    return await ingest(request, kernel, "group")


@post("/v1/alias", opt=_OPT, status_code=200, tags=["ingest"],
      summary="Merge a previous identity into a user")
async def alias(request: Request[Any, Any, Any], kernel: KernelDep) -> dict[str, Any]:
    return await ingest(request, kernel, "alias")


ROUTES = [batch, track, identify, page, screen, group, alias]
