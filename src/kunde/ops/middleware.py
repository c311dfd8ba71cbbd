"""The ASGI layer every request meets first: request id, admission, latency histogram, access log.

``front_door`` is request id + admission control (`kunde.ops.admission`) + latency
histogram in one plain-ASGI layer: one coroutine frame, one ``send`` wrapper and one
copy of the response headers per request instead of two of each.
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
from kunde.ops.admission import SAFE_METHODS, STATE_HEADERS, refuse, route_class
from kunde.ops.metrics import Metrics
from kunde.ops.models import RETRY_AFTER
from kunde.store.priority import write_priority

access_log = logging.getLogger("kunde.access")


def _route_of(scope: Scope) -> str:
    handler = scope.get("route_handler")
    if handler is None:
        return "unmatched"
    paths = getattr(handler, "paths", None)
    return next(iter(paths)) if paths else "unmatched"


def front_door(metrics: Metrics, log_requests: bool) -> Any:
    """Request id, admission control and latency histogram as one middleware factory.

    The request id is known before a refusal is written, refusals are counted in the
    histogram, and every response carries ``X-Kunde-Load`` and ``X-Request-Id``.
    """
    prefix = f"{new_id()[:18]}{os.urandom(3).hex()}"
    sequence = itertools.count(1)
    observers: dict[tuple[str, str, int], Any] = {}
    histogram = metrics.http_latency
    admission = metrics.admission
    history = metrics.history
    database = metrics.database
    classes: dict[int, tuple[Any, int]] = {}
    perf = time.perf_counter
    wall = time.time
    http = ScopeType.HTTP

    def observe(scope: Scope, method: str, status: int, elapsed: float, request_id: str) -> None:
        route = _route_of(scope)
        key = (route, method, status // 100)
        observer = observers.get(key)
        if observer is None:
            observer = observers[key] = histogram.labels(route, method, f"{status // 100}xx")
        observer.observe(elapsed)
        if log_requests:
            access_log.info(
                "request",
                extra={"request_id": request_id, "method": method, "path": scope["path"],
                       "status": status, "ms": round(elapsed * 1000, 2)},
            )

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != http:
                await app(scope, receive, send)
                return
            request_id = ""
            for name, value in scope["headers"]:
                if name == b"x-request-id":
                    request_id = value.decode("latin-1")[:64]
                    break
            if not request_id:
                request_id = f"{prefix}{next(sequence):012x}"
            state = scope.get("state")
            if state is None:
                scope["state"] = {"request_id": request_id}
            else:
                state["request_id"] = request_id
            method = str(scope.get("method", "GET"))
            started = perf()
            id_header = (b"x-request-id", request_id.encode("latin-1"))
            handler = scope.get("route_handler")
            found = classes.get(id(handler))
            if found is None:
                found = classes[id(handler)] = route_class(handler)
            cls, shed_status = found

            async def send_refusal(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), id_header]
                await send(message)

            refused = 0
            if not database.up and method not in SAFE_METHODS:
                refused = 503
                await refuse(scope, send_refusal, 503, "service.database_unavailable",
                             "Database unavailable",
                             "the database is unreachable; nothing was stored, retry shortly",
                             2, admission.state(started))
            elif not admission.try_acquire(cls, started):
                refused = shed_status
                retry = RETRY_AFTER[cls]
                await refuse(scope, send_refusal, shed_status,
                             "rate.limited" if shed_status == 429 else "service.overloaded",
                             "Overloaded",
                             f"the server is shedding {cls.label} requests under load; "
                             f"nothing was done, retry after {retry} s",
                             retry, admission.state(started))
            if refused:
                history.record_shed(cls, wall())
                observe(scope, method, refused, perf() - started, request_id)
                return
            load_header = STATE_HEADERS[admission.state(started)]
            status = 500

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", []), load_header, id_header]
                await send(message)

            priority = write_priority.set(cls)
            try:
                await app(scope, receive, send_wrapper)
            finally:
                write_priority.reset(priority)
                now = perf()
                overloaded = status == 503
                admission.release(cls, now - started, now, overloaded=overloaded)
                history.record(cls, now - started, status, wall())
                if overloaded:
                    database.suspect()
                observe(scope, method, status, now - started, request_id)

        return middleware

    return factory
