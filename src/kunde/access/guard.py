"""The one guard every route passes: default deny.

It runs as the app's before-request hook (`authorize_request`), ahead of
reading the body and resolving the handler's arguments. A route handler declares
either ``opt={"public": True}`` or ``opt={"permission": "feature:action"}``; the
app refuses to start with a route that declares neither
(`check_routes_declare_access`). A route whose handler authenticates from the
body (Segment's ``writeKey``) declares ``opt={"permission": ..., "auth_in_body":
True}`` and checks it itself.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from litestar import Litestar, Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from kunde.access.models import Principal
from kunde.core.errors import ConfigurationError, Forbidden, Unauthenticated
from kunde.kernel import Kernel

SESSION_USER = "uid"
CUSTOMER_COOKIE = "kunde_customer"


async def resolve_principal(kernel: Kernel, connection: ASGIConnection[Any, Any, Any, Any]
                            ) -> Principal | None:
    # Read from the raw ASGI headers: building the request's Headers object for one
    # value costs more than the look-up itself.
    auth = ""
    for name, value in connection.scope["headers"]:
        if name == b"authorization":
            auth = value.decode("latin-1")
            break
    access = kernel.access
    if auth.startswith("Bearer "):
        token = auth[7:].strip()
        if token.startswith("ct."):
            return access.verify_customer_token(token)
        return await access.verify_api_key(token)
    if auth.startswith("Basic "):
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        write_key = decoded.split(":", 1)[0]
        return await access.verify_write_key(write_key) if write_key else None
    if "session" in connection.scope:
        session = connection.scope.get("session") or {}
        uid = session.get(SESSION_USER) if isinstance(session, dict) else None
        if uid:
            return await access.staff_by_id(str(uid))
    cookie = connection.cookies.get(CUSTOMER_COOKIE)
    if cookie:
        return access.verify_customer_token(cookie)
    return None


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
                    ) -> None:
    opt = handler.opt
    if opt.get("public"):
        return
    permission = opt.get("permission")
    if not permission:
        raise Forbidden("this route declares no permission", code="auth.undeclared_route")
    kernel: Kernel = connection.app.state.kernel
    principal = await resolve_principal(kernel, connection)
    if principal is None:
        if opt.get("auth_in_body"):
            return
        raise Unauthenticated("credentials are missing or invalid; send an API key "
                              "(Authorization: Bearer kk_…), a write key or log in")
    if not principal.can(permission):
        raise Forbidden(f"this action needs the permission {permission!r}",
                        code="auth.missing_permission", permission=permission)
    # The scope's state dict directly: `connection.state` builds a State (and a lock).
    connection.scope.setdefault("state", {})["principal"] = principal


async def authorize_request(request: Request[Any, Any, Any]) -> None:
    """`authorize` as the app's before-request hook, which runs before the body is read.

    Litestar calls a guard with a fresh copy of the route handler on every request;
    the hook gets the request alone, and its route handler from the scope.
    """
    await authorize(request, request.route_handler)


def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    value = (connection.scope.get("state") or {}).get("principal")
    return value if isinstance(value, Principal) else None


def check_routes_declare_access(app: Litestar) -> None:
    """Refuse to build an app with a route that declares neither a permission nor public."""
    bad = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            # Litestar runs the closest layer's before-request hook only: a router or
            # handler with a hook of its own would skip `authorize_request`.
            if any(getattr(layer, "before_request", None) is not None
                   for layer in handler.ownership_layers[1:]):
                bad.append(f"{route.path} ({handler.handler_name}: its own before_request "
                           "would skip authorisation)")
                continue
            if handler.opt.get("public") or handler.opt.get("permission"):
                continue
            # Litestar's generated OPTIONS handlers and its own /schema routes declare
            # nothing, so the guard denies them at run time; they need no declaration.
            if handler.handler_name == "options_handler" or route.path.startswith("/schema"):
                continue
            bad.append(f"{route.path} ({handler.handler_name})")
    if bad:
        raise ConfigurationError(f"routes without an access declaration: {', '.join(bad)}")
