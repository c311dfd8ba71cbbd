"""HTTP conventions: problem+json with stable codes, request ids, default deny, size limits."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, Router, get

from conftest import AppClient
from kunde.access.guard import authorize_request, check_routes_declare_access
from kunde.core.errors import ConfigurationError
from kunde.kernel import Kernel

PROBLEM = "application/problem+json"


async def test_unknown_route_is_a_problem(client: AppClient) -> None:
    r = await client.get("/v1/nowhere")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["code"] == "http.not_found" and body["status"] == 404
    assert body["request_id"] == r.headers["x-request-id"]


async def test_wrong_method_is_a_problem(client: AppClient) -> None:
    r = await client.delete("/health/live")
    assert r.status_code == 405
    assert r.json()["code"] == "http.method_not_allowed"


async def test_request_id_is_echoed(client: AppClient) -> None:
    r = await client.get("/health/live", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"


async def test_missing_and_bad_credentials(client: AppClient) -> None:
    r = await client.get("/v1/admin/api-keys")
    assert r.status_code == 401 and r.json()["code"] == "auth.unauthenticated"
    r = await client.get("/v1/admin/api-keys", headers={"Authorization": "Bearer kk_nope_nope"})
    assert r.status_code == 401
    r = await client.get("/v1/admin/api-keys", headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401


async def test_missing_scope_is_forbidden(client: AppClient, kernel: Kernel) -> None:
    _, key = await kernel.access.create_api_key("reader", ["profiles:read"])
    r = await client.get("/v1/admin/api-keys", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403
    assert r.json()["code"] == "auth.missing_permission"
    assert r.json()["permission"] == "admin:keys"


async def test_malformed_json_and_validation(client: AppClient,
                                             admin_headers: dict[str, str]) -> None:
    r = await client.post("/v1/admin/api-keys", content=b"{not json",
                          headers={**admin_headers, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "request.invalid"
    r = await client.post("/v1/admin/api-keys", json={"name": "x", "scopes": ["bogus:read"]},
                          headers=admin_headers)
    assert r.status_code == 422 and r.json()["code"] == "access.invalid_scopes"
    r = await client.post("/v1/admin/api-keys", json={"name": "x", "scopes": ["x"], "role": "a"},
                          headers=admin_headers)
    assert r.status_code == 400  # unknown fields are refused (no mass assignment)
    r = await client.get("/v1/admin/api-keys", headers=admin_headers)
    assert [k["name"] for k in r.json()] == ["test-admin"]  # nothing half-written


async def test_oversized_body_is_refused(client: AppClient,
                                         admin_headers: dict[str, str]) -> None:
    big = b'{"name": "' + b"x" * 2_000_000 + b'", "scopes": ["*"]}'
    r = await client.post("/v1/admin/api-keys", content=big,
                          headers={**admin_headers, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "request.too_large"


async def test_api_key_lifecycle(client: AppClient, admin_headers: dict[str, str]
                                 ) -> None:
    r = await client.post("/v1/admin/api-keys", json={"name": "shop", "scopes": ["profiles:*"]},
                          headers=admin_headers)
    assert r.status_code == 201
    created = r.json()
    h = {"Authorization": f"Bearer {created['key']}"}
    me = (await client.get("/v1/me", headers=h)).json()
    assert me["kind"] == "api_key" and me["scopes"] == ["profiles:*"]
    assert (await client.delete(f"/v1/admin/api-keys/{created['id']}",
                                headers=admin_headers)).status_code == 204
    assert (await client.get("/v1/me", headers=h)).status_code == 401


async def test_customer_token_reaches_only_self(client: AppClient, kernel: Kernel
                                                ) -> None:
    token = kernel.access.issue_customer_token("cust-9")
    me = (await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})).json()
    assert me["kind"] == "customer" and me["customer_id"] == "cust-9"
    r = await client.get("/v1/admin/api-keys", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {tampered}"})
    assert r.status_code == 401


def test_a_route_without_access_declaration_is_refused() -> None:
    @get("/undeclared")
    async def undeclared() -> str:
        return "x"

    with pytest.raises(ConfigurationError, match="undeclared"):
        check_routes_declare_access(Litestar([undeclared]))


def test_a_router_with_its_own_before_request_hook_is_refused() -> None:
    """Litestar runs only the closest hook: a router's own would skip authorisation."""
    @get("/hooked", opt={"permission": "profiles:read"})
    async def hooked() -> str:
        return "x"

    async def own_hook(request: Any) -> None:
        return None

    app = Litestar([Router("/r", route_handlers=[hooked], before_request=own_hook)],
                   before_request=authorize_request)
    with pytest.raises(ConfigurationError, match="before_request"):
        check_routes_declare_access(app)


async def test_every_route_declares_access(client: AppClient) -> None:
    app = client.app
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            declared = handler.opt.get("public") or handler.opt.get("permission")
            if not declared:
                # Undeclared generated routes are denied at run time.
                method = next(iter(handler.http_methods))
                r = await client.request(method, route.path.replace("{path:str}", "x"))
                assert r.status_code == 403, route.path


async def test_openapi_and_docs(client: AppClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert "/v1/admin/api-keys" in spec["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "/v1/admin/api-keys" in docs.text
    assert "cdn" not in docs.text.lower()


async def test_health_and_metrics(client: AppClient, admin_headers: dict[str, str]
                                  ) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["migrations"] == "current"
    assert (await client.get("/metrics")).status_code == 401
    text = (await client.get("/metrics", headers=admin_headers)).text
    assert "kunde_http_request_duration_seconds_bucket" in text
    assert 'route="/health/ready"' in text
