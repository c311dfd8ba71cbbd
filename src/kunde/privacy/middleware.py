"""Request hardening around every route: size limit, rate limits, security headers, access audit.

One plain ASGI middleware (it sits on every hot path):

* **Size**: a declared ``Content-Length`` over ``KUNDE_MAX_BODY_BYTES`` is refused with
  413 before the body is read; a chunked body is counted and cut off at the same limit.
* **Rate limits**: per credential (the SHA-256 of the Authorization header or customer
  cookie) and per client address (`RateLimits`): token buckets in process, or one-second
  windows shared through Redis when ``KUNDE_REDIS_URL`` is set (ops' `RateLimiter`, which
  counts in process while Redis is down); 429 with ``Retry-After``.
* **Headers**: ``Content-Security-Policy`` (no inline script, nothing from other
  origins), ``X-Content-Type-Options``, ``Referrer-Policy``, ``X-Frame-Options``,
  ``Permissions-Policy``, COOP/CORP; ``Cache-Control: no-store`` on console and portal
  pages; HSTS when cookies are secure (served over TLS).
* **Audit**: a staff user's successful read of a route about one customer
  (``{customer_id}`` in the path) is recorded as ``privacy.personal_data_viewed``;
  a successful mutating call to an ``admin:*`` route as ``access.permissions_changed``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseStartEvent,
    Message,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from kunde.core import jsonutil

log = logging.getLogger("kunde.privacy")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
BASE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
CSP_HEADER = (b"content-security-policy", CSP.encode())
NO_STORE = (b"cache-control", b"no-store")
PAGE_PREFIXES = ("/console", "/portal", "/privacy/", "/docs")
CUSTOMER_PARAMS = ("customer_id", "cid")


@dataclass(frozen=True)
class RateLimits:
    """Requests per second and burst, per credential and per client address."""

    per_key_rate: float = 2000.0
    per_key_burst: float = 4000.0
    per_ip_rate: float = 1000.0
    per_ip_burst: float = 2000.0

    @classmethod
    def from_settings(cls, settings: Any) -> RateLimits:
        """``KUNDE_RATE_LIMIT_PER_KEY`` / ``_PER_IP`` (requests/s) from `Settings`; burst 2x."""
        per_key, per_ip = float(settings.rate_limit_per_key), float(settings.rate_limit_per_ip)
        return cls(per_key_rate=per_key, per_key_burst=per_key * 2,
                   per_ip_rate=per_ip, per_ip_burst=per_ip * 2)


class TokenBuckets:
    """In-process token buckets; a bucket idle long enough to be full again is dropped."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._b: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float) -> float:
        """0 when allowed, else seconds until a token is available."""
        tokens, last = self._b.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._b[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self._b[key] = (tokens - 1, now)
        if len(self._b) > self.max_keys:
            self._sweep(now)
        return 0.0

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._b = {k: v for k, v in self._b.items() if now - v[1] < full_after}


def _credential(auth: bytes | None, cookie: bytes | None) -> str | None:
    """The rate-limit key of a request: its Authorization header, else its login cookie."""
    if not auth:
        cookie = cookie or b""
        if b"kunde_customer=" in cookie or b"kunde_session=" in cookie:
            auth = cookie
    return hashlib.sha256(auth).hexdigest()[:24] if auth else None


async def _reply(send: Send, status: int, code: str, detail: str,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = jsonutil.dumps({"type": f"urn:kunde:problem:{code}", "title": detail,
                           "status": status, "detail": detail, "code": code})
    headers = [(b"content-type", b"application/problem+json"),
               (b"content-length", str(len(body)).encode()), *BASE_HEADERS, *(extra or [])]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status,
                                     "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


def security_middleware(max_body: int | None = None, limits: RateLimits | None = None) -> Any:
    """The middleware factory; ``None`` values come from the app's settings at first use."""

    def factory(app: ASGIApp) -> ASGIApp:
        conf: dict[str, Any] = {}

        def configure(scope: Scope) -> None:
            settings = scope["app"].state.settings
            rate = limits or RateLimits.from_settings(settings)
            conf["rate"] = rate
            conf["by_key"] = TokenBuckets(rate.per_key_rate, rate.per_key_burst)
            conf["by_ip"] = TokenBuckets(rate.per_ip_rate, rate.per_ip_burst)
            conf["max_body"] = max_body if max_body is not None else settings.max_body_bytes
            # With Redis configured, limits are shared by every process (ops' RateLimiter,
            # which falls back to in-process counting while Redis is down).
            conf["shared"] = None
            if settings.redis_url:
                from kunde.ops.cache import CacheService

                conf["shared"] = scope["app"].state.kernel.service(CacheService).rate_limiter
            extra = ([(b"strict-transport-security", b"max-age=63072000; includeSubDomains")]
                     if settings.secure_cookies else [])
            # The headers added to a response, built once per kind of path.
            conf["api_headers"] = [*BASE_HEADERS, *extra]
            conf["other_headers"] = [*BASE_HEADERS, *extra, CSP_HEADER]
            conf["page_headers"] = [*BASE_HEADERS, *extra, CSP_HEADER, NO_STORE]

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            if not conf:
                configure(scope)
            limit: int = conf["max_body"]
            length: bytes | None = None
            auth: bytes | None = None
            cookie: bytes | None = None
            for name, value in scope["headers"]:
                if name == b"content-length" and length is None:
                    length = value
                elif name == b"authorization" and auth is None:
                    auth = value
                elif name == b"cookie" and cookie is None:
                    cookie = value
            if length is not None and (not length.isdigit() or int(length) > limit):
                await _reply(send, 413, "request.too_large",
                             f"request bodies are limited to {limit} bytes")
                return
            now = time.monotonic()
            cred = _credential(auth, cookie)
            client = scope.get("client")
            ip = client[0] if client else "unknown"
            if conf["shared"] is not None:
                wait = await _shared_wait(conf["shared"], conf["rate"], cred, ip)
            else:
                wait = conf["by_key"].take(cred, now) if cred else 0.0
                wait = wait or conf["by_ip"].take(ip, now)
            if wait:
                await _reply(send, 429, "rate.limited", "too many requests; slow down",
                             [(b"retry-after", str(max(1, round(wait))).encode())])
                return
            path: str = scope["path"]
            added: list[tuple[bytes, bytes]] = (
                conf["page_headers"] if path.startswith(PAGE_PREFIXES)
                else conf["api_headers"] if path.startswith("/v1/")
                else conf["other_headers"])
            status = 0

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", []), *added]
                await send(message)

            received = 0

            async def receive_limited() -> ReceiveMessage:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise _TooLarge()
                return message

            try:
                await app(scope, receive_limited, send_wrapper)
            except _TooLarge:
                if status == 0:
                    await _reply(send, 413, "request.too_large",
                                 f"request bodies are limited to {limit} bytes")
                return
            if 200 <= status < 300:
                await _audit_access(scope)

        return middleware

    return factory


async def _shared_wait(limiter: Any, rate: RateLimits, cred: str | None, ip: str) -> float:
    """Seconds to wait, from one-second windows shared through Redis (0 when allowed)."""
    if cred:
        ok, retry = await limiter.allow(f"key:{cred}", int(rate.per_key_burst), 1.0)
        if not ok:
            return float(retry)
    ok, retry = await limiter.allow(f"ip:{ip}", int(rate.per_ip_burst), 1.0)
    return 0.0 if ok else float(retry)


class _TooLarge(Exception):
    pass


async def _audit_access(scope: Scope) -> None:
    state = scope.get("state") or {}
    principal = state.get("principal")
    if principal is None:
        return
    handler = scope.get("route_handler")
    permission = str((getattr(handler, "opt", None) or {}).get("permission", ""))
    method = scope.get("method", "GET")
    params = scope.get("path_params") or {}
    subject = next((str(params[p]) for p in CUSTOMER_PARAMS if p in params), None)
    details: dict[str, str] = {"path": str(scope["path"]), "method": str(method)}
    if method == "GET" and subject and principal.kind == "staff":
        action = "privacy.personal_data_viewed"
    elif method != "GET" and permission.startswith("admin:"):
        action = "access.permissions_changed"
    else:
        return
    from kunde.privacy.audit import AuditService

    kernel = scope["app"].state.kernel
    try:
        async with kernel.db.transaction() as uow:
            await kernel.service(AuditService).record(
                uow, f"{principal.kind}:{principal.id}", action, subject, details)
    except Exception:
        log.exception("could not record an audit entry for %s", scope["path"])
