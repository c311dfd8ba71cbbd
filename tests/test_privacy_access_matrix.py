"""Least privilege across every installed route, so the tests grow with the features.

* Route by role: every route is called as every kind of caller (anonymous, a customer,
  an API key with an unrelated scope, and each staff role's permission set). A caller
  without the route's permission is refused (401/403): default deny. A caller with it
  is never refused by the guard.
* Object level: a customer token calling any route with a customer id in the path gets
  another customer's id refused.
* Mass assignment: every JSON body is a msgspec Struct that forbids unknown fields, and
  none exposes a protected field (balance, tier, role, …) outside admin routes.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from litestar import Litestar

from conftest import AppClient
from conftest import app_client as running_app
from kunde.access.models import ROLE_PERMISSIONS, grants
from kunde.app import create_app
from kunde.core.ids import new_id
from kunde.kernel import Kernel

GUARD_CODES = {"auth.unauthenticated", "auth.missing_permission", "auth.undeclared_route"}
CUSTOMER_PARAMS = {"customer_id", "cid", "survivor_id", "member_id"}
PROTECTED_FIELDS = {"balance", "points_balance", "tier", "role", "is_admin", "permissions",
                    "lifetime_points", "erased", "scopes", "password_hash", "verified"}
# Routes whose body legitimately names a protected field, with the reason.
MASS_ASSIGNMENT_WAIVERS = {
    "/v1/admin/api-keys": "admins choose the scopes of a new API key",
}
SKIP_PREFIXES = ("/static", "/schema")


@dataclass(frozen=True)
class Route:
    path: str
    method: str
    permission: str | None
    public: bool
    auth_in_body: bool
    params: tuple[str, ...]


def routes_of(app: Litestar) -> list[Route]:
    out = []
    for route in app.routes:
        if route.path.startswith(SKIP_PREFIXES):
            continue
        for h in getattr(route, "route_handlers", []):
            if h.handler_name == "options_handler":
                continue
            for method in sorted(getattr(h, "http_methods", ()) or ()):
                if method in ("OPTIONS", "HEAD"):
                    continue
                out.append(Route(
                    path=route.path, method=method, permission=h.opt.get("permission"),
                    public=bool(h.opt.get("public")), auth_in_body=bool(h.opt.get("auth_in_body")),
                    params=tuple(re.findall(r"{(\w+)(?::\w+)?}", route.path))))
    return out


def fill(path: str, customer_id: str) -> str:
    def value(m: re.Match[str]) -> str:
        name, kind = m.group(1), m.group(2) or "str"
        if kind == "int":
            return "1"
        return customer_id if name in CUSTOMER_PARAMS else new_id()
    return re.sub(r"{(\w+)(?::(\w+))?}", value, path)


@pytest.fixture
async def app_client(kernel: Kernel) -> AsyncIterator[tuple[Litestar, AppClient]]:
    async with running_app(kernel) as c:
        c.follow_redirects = True  # as Litestar's test client does
        yield c.app, c


async def _callers(kernel: Kernel) -> dict[str, tuple[dict[str, str], frozenset[str] | None]]:
    """name -> (headers, scopes); scopes None means a customer."""
    callers: dict[str, tuple[dict[str, str], frozenset[str] | None]] = {
        "anonymous": ({}, frozenset()),
        "customer": ({"Authorization": "Bearer "
                      + kernel.access.issue_customer_token(new_id())}, None),
    }
    _, unrelated = await kernel.access.create_api_key("unrelated", ["ops:read"])
    callers["key:ops:read"] = ({"Authorization": f"Bearer {unrelated}"}, frozenset({"ops:read"}))
    for role, perms in ROLE_PERMISSIONS.items():
        _, key = await kernel.access.create_api_key(f"role-{role}", sorted(perms))
        callers[f"role:{role}"] = ({"Authorization": f"Bearer {key}"}, frozenset(perms))
    return callers


async def _call(client: AppClient, route: Route, url: str,
                headers: dict[str, str]) -> tuple[int, str]:
    h = {**headers, "accept": "application/json"}
    kwargs: dict[str, Any] = {"headers": h}
    if route.method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    r = await client.request(route.method, url, **kwargs)
    code = ""
    if r.headers.get("content-type", "").startswith("application/problem+json"):
        code = str(r.json().get("code", ""))
    return r.status_code, code


def _allowed(scopes: frozenset[str] | None, permission: str) -> bool:
    if permission == "self":
        return True
    return scopes is not None and grants(scopes, permission)


async def test_every_route_denies_by_default(kernel: Kernel, app_client: Any) -> None:
    app, client = app_client
    routes = [r for r in routes_of(app) if not r.public]
    assert routes, "no protected routes found"
    callers = await _callers(kernel)
    failures = []
    for route in routes:
        assert route.permission, f"{route.method} {route.path} declares no access"
        url = fill(route.path, new_id())
        allow_checked = False
        for name, (headers, scopes) in callers.items():
            if name == "anonymous" and route.auth_in_body:
                status, code = await _call(client, route, url, headers)
                if status < 300:
                    failures.append(f"{name} {route.method} {route.path} -> {status}")
                continue
            allowed = name != "anonymous" and _allowed(scopes, route.permission)
            if allowed and allow_checked:
                continue  # one granted caller per route shows the guard lets it through
            allow_checked |= allowed
            status, code = await _call(client, route, url, headers)
            if not allowed and status not in (401, 403):
                failures.append(f"{name} {route.method} {route.path} -> {status} (deny expected)")
            # A "self" route lets every caller past the guard and decides in the handler
            # (staff may need a feature permission there), so only its denials are checked.
            if allowed and route.permission != "self" and code in GUARD_CODES:
                failures.append(f"{name} {route.method} {route.path} -> {code} (allow expected)")
    assert not failures, "\n".join(failures)


async def test_a_customer_never_reaches_another_customers_data(kernel: Kernel,
                                                               app_client: Any) -> None:
    app, client = app_client
    me, other = new_id(), new_id()
    headers = {"Authorization": f"Bearer {kernel.access.issue_customer_token(me)}"}
    checked = []
    for route in routes_of(app):
        if route.public or not CUSTOMER_PARAMS & set(route.params):
            continue
        status, _ = await _call(client, route, fill(route.path, other), headers)
        checked.append(route.path)
        # A write may fail body validation (400/422) before any object is looked at.
        refused = (401, 403, 404) if route.method == "GET" else (400, 401, 403, 404, 422)
        assert status in refused, f"{route.method} {route.path} gave {status}"
    assert checked, "no routes with a customer id in the path"


def _structs(kind: Any) -> list[type[msgspec.Struct]] | None:
    """The Struct types a body annotation accepts (list[T], T | None), or None if not Structs."""
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return [kind]
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (list, typing.Union, types.UnionType) and args:
        found = [_structs(a) for a in args]
        if all(f is not None for f in found):
            return [t for f in found if f for t in f]
    return None


def test_no_json_body_accepts_unknown_or_protected_fields(kernel: Kernel) -> None:
    """Staff routes may take a free-form dict (their handlers pick keys per action); a body
    that a customer, a public caller or a write key can send must be a strict Struct
    without protected fields."""
    app = create_app(kernel=kernel)
    problems = []
    for route in app.routes:
        for h in getattr(route, "route_handlers", []):
            data = h.parsed_fn_signature.parameters.get("data")
            if data is None:
                continue
            media = getattr(getattr(data.kwarg_definition, "media_type", None), "value", "")
            if media != "application/json":
                if route.path.startswith("/v1/"):
                    problems.append(f"{route.path}: API bodies must be JSON")
                continue
            outside = bool(h.opt.get("public") or h.opt.get("auth_in_body")
                           or h.opt.get("permission") == "self")
            structs = _structs(data.annotation)
            if structs is None:
                if outside:
                    problems.append(f"{route.path}: body {data.annotation!r} is not a Struct")
                continue
            for kind in structs:
                if not kind.__struct_config__.forbid_unknown_fields:
                    problems.append(f"{route.path}: {kind.__name__} accepts unknown fields")
                exposed = PROTECTED_FIELDS & set(kind.__struct_fields__)
                if outside and exposed and route.path not in MASS_ASSIGNMENT_WAIVERS:
                    problems.append(f"{route.path}: {kind.__name__} exposes {sorted(exposed)}")
    assert not problems, "\n".join(problems)
