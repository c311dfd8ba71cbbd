"""One ASGI middleware for every request: request id, latency histogram, optional access log.

Kept as plain ASGI (no per-request objects beyond what is needed) because it
sits on every hot path.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from kunde.core.ids import new_id
from kunde.ops.metrics import Metrics

access_log = logging.getLogger("kunde.access")


def _route_of(scope: Scope) -> str:
    handler = scope.get("route_handler")
    if handler is None:
        return "unmatched"
    paths = getattr(handler, "paths", None)
    return next(iter(paths)) if paths else "unmatched"


def request_context(metrics: Metrics, log_requests: bool) -> Any:
    # Request ids: a random prefix per app instance plus a counter. Unique like a UUID for
    # correlating logs, without a random-number syscall on every request.
    prefix = f"{new_id()[:18]}{os.urandom(3).hex()}"
    sequence = itertools.count(1)
    # Labelled histogram children, looked up once per (route, method, status class).
    observers: dict[tuple[str, str, int], Any] = {}
    histogram = metrics.http_latency

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            request_id = ""
            for name, value in scope["headers"]:
                if name == b"x-request-id":
                    request_id = value.decode("latin-1")[:64]
                    break
            if not request_id:
                request_id = f"{prefix}{next(sequence):012x}"
            scope.setdefault("state", {})["request_id"] = request_id
            method = str(scope.get("method", "GET"))
            started = time.perf_counter()
            status = 500
            header = (b"x-request-id", request_id.encode("latin-1"))

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", []), header]
                await send(message)

            try:
                await app(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - started
                route = _route_of(scope)
                key = (route, method, status // 100)
                observer = observers.get(key)
                if observer is None:
                    observer = observers[key] = histogram.labels(route, method,
                                                                 f"{status // 100}xx")
                observer.observe(elapsed)
                if log_requests:
                    access_log.info(
                        "request",
                        extra={"request_id": request_id, "method": method,
                               "path": scope["path"], "status": status,
                               "ms": round(elapsed * 1000, 2)},
                    )

        return middleware

    return factory
