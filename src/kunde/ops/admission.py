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

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

from kunde.core import jsonutil
from kunde.ops.metrics import Metrics
from kunde.ops.models import RETRY_AFTER, Criticality, LoadState

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


def admission_control(metrics: Metrics) -> Any:
    """Litestar middleware factory (listed in ``create_app``)."""
    admission = metrics.admission
    history = metrics.history
    database = metrics.database
    classes: dict[int, tuple[Criticality, int]] = {}
    perf = time.perf_counter
    wall = time.time

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            handler = scope.get("route_handler")
            key = id(handler)
            found = classes.get(key)
            if found is None:
                found = classes[key] = route_class(handler)
            cls, shed_status = found
            started = perf()
            if not database.up and scope.get("method") not in SAFE_METHODS:
                await refuse(scope, send, 503, "service.database_unavailable",
                              "Database unavailable",
                              "the database is unreachable; nothing was stored, retry shortly",
                              2, admission.state(started))
                history.record_shed(cls, wall())
                return
            if not admission.try_acquire(cls, started):
                retry = RETRY_AFTER[cls]
                await refuse(scope, send, shed_status,
                              "rate.limited" if shed_status == 429 else "service.overloaded",
                              "Overloaded",
                              f"the server is shedding {cls.label} requests under load; "
                              f"nothing was done, retry after {retry} s",
                              retry, admission.state(started))
                history.record_shed(cls, wall())
                return
            header = STATE_HEADERS[admission.state(started)]
            status = 500

            async def send_with_state(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", []), header]
                await send(message)

            try:
                await app(scope, receive, send_with_state)
            finally:
                now = perf()
                overloaded = status == 503
                admission.release(cls, now - started, now, overloaded=overloaded)
                history.record(cls, now - started, status, wall())
                if overloaded:
                    database.suspect()

        return middleware

    return factory
