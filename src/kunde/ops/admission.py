"""Admission control as a pure ASGI middleware: the first thing a routed request meets.

Per request it costs a dictionary look-up, two clock reads and a few integer
updates. A refused request is answered here, without entering the framework:
``503`` (``429`` on ingestion paths) ``application/problem+json`` with
``Retry-After``. Every response carries ``X-Kunde-Load: normal|warn|throttle``.

While the database is known to be down (`kunde.ops.degradation`), writes are
refused at once with ``503 service.database_unavailable`` instead of waiting
for a connection that will not come.
"""

from __future__ import annotations

from typing import Any

from litestar.types import (
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Scope,
    Send,
)

from kunde.core import jsonutil
from kunde.ops.models import Criticality, LoadState

# Paths where a client is asked to slow down (429) rather than told we are unavailable.
INGESTION_PREFIXES = ("/v1/batch", "/v1/import", "/v1/track", "/v1/identify", "/v1/page",
                      "/v1/screen", "/v1/group", "/v1/alias")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PROBLEM = b"application/problem+json"
STATE_HEADERS = {s: (b"x-kunde-load", s.label.encode()) for s in LoadState}


def route_class(handler: Any) -> tuple[Criticality, int]:
    """The load class a route declared and the status its refusals use."""
    opt = getattr(handler, "opt", None) or {}
    cls = Criticality.parse(opt.get("criticality"))
    paths = getattr(handler, "paths", None) or ()
    ingestion = any(p.startswith(INGESTION_PREFIXES) for p in paths)
    return cls, int(opt.get("shed_status", 429 if ingestion else 503))


def check_routes_declare_criticality(handlers: Any) -> None:
    """Fail fast on a misspelt class (the app refuses to start rather than guess)."""
    for handler in handlers:
        route_class(handler)


async def refuse(scope: Scope, send: Send, status: int, code: str, title: str, detail: str,
                  retry_after: int, state: LoadState) -> None:
    request_id = scope.get("state", {}).get("request_id", "")
    body = jsonutil.dumps({
        "type": f"urn:kunde:problem:{code}", "title": title, "status": status,
        "detail": detail, "code": code, "instance": scope.get("path", ""),
        "request_id": request_id, "retry_after": retry_after,
    })
    start: HTTPResponseStartEvent = {
        "type": "http.response.start", "status": status, "headers": [
            (b"content-type", PROBLEM), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after).encode()), STATE_HEADERS[state],
        ]}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body,
                                  "more_body": False}
    await send(end)
