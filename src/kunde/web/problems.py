"""Every error leaves Kunde as RFC 9457 ``application/problem+json`` with a stable ``code``.

This is the one place where exceptions become HTTP responses.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.response import Redirect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from kunde.core import jsonutil
from kunde.core.errors import KundeError
from kunde.core.ids import new_id

log = logging.getLogger("kunde.errors")
PROBLEM = "application/problem+json"

_HTTP_CODES = {
    400: "request.invalid",
    401: "auth.unauthenticated",
    403: "auth.forbidden",
    404: "http.not_found",
    405: "http.method_not_allowed",
    413: "request.too_large",
    415: "request.unsupported_media_type",
    429: "rate.limited",
}


def problem(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[bytes]:
    headers = dict(headers or {})
    request_id = request.scope.get("state", {}).get("request_id")
    if request_id is None:
        # No route matched, so the per-route middleware did not run: mint the id here.
        request_id = request.headers.get("x-request-id", "")[:64] or new_id()
        headers["X-Request-Id"] = request_id
    body: dict[str, Any] = {
        "type": f"urn:kunde:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path,
        "request_id": request_id,
    }
    body.update({k: v for k, v in extra.items() if k not in body})
    return Response(jsonutil.dumps(body), status_code=status, media_type=PROBLEM,
                    headers=headers)


def _wants_html(request: Request[Any, Any, Any]) -> bool:
    return "text/html" in request.headers.get("accept", "")


def kunde_error(request: Request[Any, Any, Any], exc: KundeError) -> Response[Any]:
    status = exc.http_status
    if status == 401 and request.url.path.startswith("/console") and _wants_html(request):
        return Redirect(f"/console/login?next={request.url.path}")
    headers = {}
    if status in (429, 503):
        headers["Retry-After"] = str(exc.extra.pop("retry_after", 1))
    title = type(exc).__name__ if type(exc) is not KundeError else "Request failed"
    return problem(request, status, exc.code, _title(title), exc.detail, headers, **exc.extra)


def _title(name: str) -> str:
    out = "".join(" " + c.lower() if c.isupper() else c for c in name).strip()
    return out[:1].upper() + out[1:]


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    code = _HTTP_CODES.get(status, f"http.{status}")
    extra: dict[str, Any] = {}
    detail = exc.detail
    if isinstance(exc, ValidationException):
        code = "request.invalid"
        extra["errors"] = exc.extra if isinstance(exc.extra, list) else [exc.extra]
    elif isinstance(exc, NotFoundException):
        detail = f"no route or resource at {request.url.path}"
    elif isinstance(exc, MethodNotAllowedException):
        detail = f"{request.method} is not allowed on {request.url.path}"
    if status == 401 and request.url.path.startswith("/console") and _wants_html(request):
        return Redirect(f"/console/login?next={request.url.path}")
    return problem(request, status, code, _title(type(exc).__name__), detail,
                   dict(exc.headers or {}), **extra)


def database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.warning("database unavailable: %r", exc)
    return problem(request, 503, "service.database_unavailable", "Database unavailable",
                   "the database did not answer in time; retry shortly", {"Retry-After": "2"})


_TRANSIENT = ("locked", "connect", "timeout", "timed out", "closed", "shutting down",
              "terminat", "recovery", "too many clients", "starting up")


def _causes(exc: BaseException | None) -> list[BaseException]:
    """An exception and what it was raised from: SQLAlchemy's asyncpg adapter wraps the
    driver's error in an adapter error of its own."""
    chain: list[BaseException] = []
    while exc is not None and len(chain) < 8:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def is_unavailable(exc: BaseException) -> bool:
    """True for failures of reaching the database, as opposed to bugs in a statement."""
    if isinstance(exc, (InterfaceError, PoolTimeout, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, DBAPIError) and any(
            "connect" in type(cause).__name__.lower() for cause in _causes(exc.orig)):
        return True  # e.g. asyncpg's CannotConnectNowError while PostgreSQL starts up
    if isinstance(exc, OperationalError):
        text = str(exc.orig).lower()
        return any(word in text for word in _TRANSIENT)
    return False


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if is_unavailable(exc):
        return database_error(request, exc)
    log.exception("unhandled error", exc_info=exc,
                  extra={"request_id": request.scope.get("state", {}).get("request_id")})
    return problem(request, 500, "internal.error", "Internal error",
                   "something went wrong on our side; the request id helps support find it")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    KundeError: kunde_error,
    HTTPException: http_error,
    Exception: internal_error,
}
