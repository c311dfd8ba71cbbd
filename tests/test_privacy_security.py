"""Request hardening: security headers, size limits, rate limits, SSRF-safe outbound HTTP,
secrets never logged."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from threading import Thread
from typing import Any

import pytest

from conftest import AppClient, app_client
from kunde.features import Feature
from kunde.kernel import Kernel
from kunde.privacy.middleware import RateLimits, TokenBuckets, security_middleware
from kunde.privacy.ssrf import (
    OutboundPolicy,
    UnsafeDestination,
    check_url,
    is_public_address,
    safe_request,
)


def _features(limits: RateLimits | None = None) -> list[Feature]:
    from dataclasses import replace

    from kunde.access.feature import FEATURE as access
    from kunde.privacy.feature import FEATURE as privacy
    from kunde.web.feature import FEATURE as web

    if limits is not None:
        privacy = replace(privacy, middleware=[security_middleware(limits=limits)])
    return [access, web, privacy]


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[AppClient]:
    async with app_client(kernel, features=_features()) as c:
        c.follow_redirects = True  # as Litestar's test client does
        yield c


async def test_console_and_portal_pages_carry_strict_headers(client: AppClient
                                                             ) -> None:
    r = await client.get("/console/login")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    api = await client.get("/openapi.json")
    assert api.headers["x-content-type-options"] == "nosniff"


async def test_bodies_over_the_limit_are_refused_before_reading(
        client: AppClient, admin_headers: dict[str, str]) -> None:
    big = b"x" * (1_048_576 + 1)
    for path in ("/v1/admin/api-keys", "/v1/me/privacy/exports", "/console/login"):
        r = await client.post(path, content=big, headers={**admin_headers,
                                                          "content-type": "application/json"})
        assert r.status_code == 413, path
        assert r.json()["code"] == "request.too_large"


async def test_rate_limit_per_key_and_per_ip(kernel: Kernel) -> None:
    limits = RateLimits(per_key_rate=1, per_key_burst=3, per_ip_rate=1, per_ip_burst=5)
    async with app_client(kernel, features=_features(limits)) as c:
        key_a = {"Authorization": "Bearer kk_a_secret"}
        codes = [(await c.get("/openapi.json", headers=key_a)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = await c.get("/openapi.json", headers=key_a)
        assert limited.headers["retry-after"] and limited.json()["code"] == "rate.limited"
        # Another key still has its own bucket, but the address's bucket runs out too.
        key_b = {"Authorization": "Bearer kk_b_secret"}
        codes = [(await c.get("/openapi.json", headers=key_b)).status_code for _ in range(3)]
        assert 429 in codes


async def test_rate_limit_shared_through_redis_falls_back_when_redis_is_down(
        kernel: Kernel) -> None:
    import msgspec

    original = kernel.settings
    kernel.settings = msgspec.structs.replace(original, redis_url="redis://127.0.0.1:1/0")
    try:
        limits = RateLimits(per_key_rate=1, per_key_burst=2, per_ip_rate=100, per_ip_burst=200)
        async with app_client(kernel, features=_features(limits)) as c:
            h = {"Authorization": "Bearer kk_shared_secret"}
            codes = [(await c.get("/openapi.json", headers=h)).status_code for _ in range(6)]
        # Two per one-second window: six quick calls overflow a window even across a tick.
        assert codes[0] == 200 and 429 in codes
    finally:
        kernel.settings = original


def test_token_bucket_refills() -> None:
    b = TokenBuckets(rate=10, burst=2)
    assert b.take("k", 0.0) == 0 and b.take("k", 0.0) == 0
    assert b.take("k", 0.0) > 0
    assert b.take("k", 0.2) == 0


# -- SSRF -------------------------------------------------------------------------------
@pytest.mark.parametrize("addr", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1",
                                  "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1",  # noqa: S104
                                  "fe80::1", "fc00::1", "::ffff:127.0.0.1", "224.0.0.1"])
def test_non_public_addresses_are_refused(addr: str) -> None:
    assert not is_public_address(ipaddress.ip_address(addr))


def test_public_addresses_pass() -> None:
    assert is_public_address(ipaddress.ip_address("93.184.216.34"))
    assert is_public_address(ipaddress.ip_address("2606:4700::1111"))


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://localhost:8000/x",
                                 "http://169.254.169.254/latest/meta-data/",
                                 "http://[::1]/", "file:///etc/passwd", "gopher://x/",
                                 "http://2130706433/"])
async def test_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeDestination):
        await check_url(url, OutboundPolicy())


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        body = f"hello {self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def sink() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_loopback_sink_only_when_allow_listed(sink: str) -> None:
    with pytest.raises(UnsafeDestination):
        await safe_request("GET", f"http://{sink}/hook")
    policy = OutboundPolicy(allow_networks=("127.0.0.0/8",))
    r = await safe_request("GET", f"http://{sink}/hook", policy=policy)
    assert r.status_code == 200 and r.text == f"hello {sink}"


async def test_redirect_to_metadata_is_refused(sink: str) -> None:
    policy = OutboundPolicy(allow_networks=("127.0.0.0/8",))
    with pytest.raises(UnsafeDestination):
        await safe_request("GET", f"http://{sink}/redirect", policy=policy)


# -- secrets in logs --------------------------------------------------------------------
async def test_secrets_never_reach_the_logs(kernel: Kernel, client: AppClient,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, key = await kernel.access.create_api_key("log-test", ["*"])
    _, write_key = await kernel.access.create_source("log-src", "web")
    token = kernel.access.issue_customer_token("c-log")
    for cred in (key, token, write_key, "kk_wrong_secretsecret"):
        await client.get("/v1/me", headers={"Authorization": f"Bearer {cred}"})
        await client.post("/v1/admin/api-keys", json={"name": "x", "scopes": ["nope"]},
                          headers={"Authorization": f"Bearer {cred}"})
    await client.post("/console/login", data={"email": "a@b.c", "password": "hunter2-secret!"})
    await asyncio.sleep(0)
    text = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    for secret in (key.split("_", 2)[2], token, write_key, "hunter2-secret!",
                   kernel.settings.secret_key):
        assert secret not in text


async def test_rate_limits_come_from_settings(kernel: Kernel) -> None:
    import msgspec

    from kunde.settings import load_settings

    s = load_settings(environ={"KUNDE_RATE_LIMIT_PER_KEY": "3", "KUNDE_RATE_LIMIT_PER_IP": "50"})
    assert RateLimits.from_settings(s) == RateLimits(per_key_rate=3, per_key_burst=6,
                                                     per_ip_rate=50, per_ip_burst=100)
    original = kernel.settings
    kernel.settings = msgspec.structs.replace(original, rate_limit_per_key=1.0,
                                              rate_limit_per_ip=100.0)
    try:
        async with app_client(kernel, features=_features()) as c:
            h = {"Authorization": "Bearer kk_from_settings"}
            codes = [(await c.get("/openapi.json", headers=h)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]  # burst of two from KUNDE_RATE_LIMIT_PER_KEY=1
    finally:
        kernel.settings = original
