"""SSRF-safe outbound HTTP for webhooks and any URL a user or partner can configure.

Use it instead of a bare ``httpx`` client whenever the destination comes from data::

    from kunde.privacy.ssrf import OutboundPolicy, safe_request

    response = await safe_request("POST", url, content=body, headers=headers,
                                  policy=OutboundPolicy(allow_hosts=frozenset()))

What callers may rely on:

* The host name is resolved once; **every** address it resolves to must be public,
  else `UnsafeDestination` is raised before any connection is made. Loopback, private
  (RFC 1918, fc00::/7), link-local (169.254/16, fe80::/10, including the cloud metadata
  address 169.254.169.254), CGNAT, multicast, reserved, unspecified and IPv4-mapped
  forms of those are refused.
* The connection goes to the address that was checked (the request carries the
  original Host header and TLS server name), so DNS rebinding between check and
  connect cannot redirect it.
* Redirects are followed by hand (at most ``max_redirects``), and each hop is checked
  the same way; only http and https are allowed.
* ``OutboundPolicy.allow_hosts`` (exact host names) and ``allow_networks`` (CIDR) let
  an operator permit a known internal receiver, e.g. a test sink on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from kunde.core.errors import KundeError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_EXTRA_BLOCKED = [ipaddress.ip_network(n) for n in (
    "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "0.0.0.0/8", "fd00:ec2::/32")]


class UnsafeDestination(KundeError):
    status = 422
    code = "outbound.unsafe_destination"


@dataclass(frozen=True)
class OutboundPolicy:
    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[str, ...] = ()
    max_redirects: int = 3
    timeout: float = 10.0
    schemes: frozenset[str] = field(default_factory=lambda: frozenset({"http", "https"}))

    def allows_address(self, addr: IPAddress) -> bool:
        return any(addr in ipaddress.ip_network(n, strict=False) for n in self.allow_networks)


def is_public_address(addr: IPAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return is_public_address(addr.ipv4_mapped)
    if (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
            or addr.is_reserved or addr.is_unspecified or not addr.is_global):
        return False
    return not any(addr in net for net in _EXTRA_BLOCKED)


async def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeDestination(f"cannot resolve {host}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


async def check_url(url: str, policy: OutboundPolicy) -> tuple[str, IPAddress]:
    """(host, checked address to connect to), or `UnsafeDestination`."""
    parts = urlsplit(url)
    if parts.scheme not in policy.schemes or not parts.hostname:
        raise UnsafeDestination("only http and https URLs with a host are allowed")
    host = parts.hostname.lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(host, port)
    if not addresses:
        raise UnsafeDestination(f"{host} has no address")
    if host in policy.allow_hosts:
        return host, addresses[0]
    for addr in addresses:
        if not (is_public_address(addr) or policy.allows_address(addr)):
            raise UnsafeDestination(
                f"{host} resolves to a non-public address ({addr}); refused",
                host=host)
    return host, addresses[0]


def _pinned(url: str, addr: IPAddress) -> str:
    parts = urlsplit(url)
    ip = f"[{addr}]" if isinstance(addr, ipaddress.IPv6Address) else str(addr)
    netloc = ip if parts.port is None else f"{ip}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


async def safe_request(method: str, url: str, *, policy: OutboundPolicy | None = None,
                       client: httpx.AsyncClient | None = None, **kwargs: Any) -> httpx.Response:
    """Send one request (following safe redirects); raises `UnsafeDestination` if refused."""
    policy = policy or OutboundPolicy()
    own = client is None
    http = client or httpx.AsyncClient(timeout=policy.timeout, follow_redirects=False)
    try:
        for _ in range(policy.max_redirects + 1):
            host, addr = await check_url(url, policy)
            headers = dict(kwargs.pop("headers", None) or {})
            headers["Host"] = urlsplit(url).netloc.rsplit("@", 1)[-1]
            extensions = {"sni_hostname": host} if url.startswith("https") else {}
            request = http.build_request(method, _pinned(url, addr), headers=headers,
                                         extensions=extensions, **kwargs)
            response = await http.send(request, follow_redirects=False)
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = response.headers.get("location")
            await response.aclose()
            if not location:
                return response
            url = urljoin(url, location)
            if response.status_code == 303:
                method, kwargs = "GET", {}
            kwargs["headers"] = {k: v for k, v in headers.items() if k.lower() != "host"}
        raise UnsafeDestination("too many redirects")
    finally:
        if own:
            await http.aclose()
