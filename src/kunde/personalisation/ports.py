"""Ports to other features, each a Protocol with the real adapter and a fallback.

The real adapters call the other feature's service when it is installed; the fallbacks read
this feature's own projections of that feature's events, so personalisation works (and is
testable) on its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.personalisation.tables import consents, items, segment_members, tiers


class ConsentPort(Protocol):
    async def is_allowed(self, customer_id: str, purpose: str) -> bool: ...


class StockPort(Protocol):
    async def unavailable(self, skus: list[str] | None = None) -> set[str]:
        """Unavailable SKUs among ``skus``, or every one known when ``skus`` is None."""
        ...

class MembershipPort(Protocol):
    async def segments(self, customer_id: str) -> list[str]: ...
    async def tier(self, customer_id: str) -> str | None: ...


def _service(kernel: Kernel, module: str, name: str) -> Any | None:
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return kernel.service(cls)


class ProjectedConsent:
    """Consent from our projection of ``consent.changed``; no record means not granted."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def is_allowed(self, customer_id: str, purpose: str) -> bool:
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(consents.c.granted).where(
                consents.c.customer_id == customer_id, consents.c.purpose == purpose))).first()
        return bool(row and row[0])


class ProfilesConsent:
    def __init__(self, service: Any) -> None:
        self.service = service

    async def is_allowed(self, customer_id: str, purpose: str) -> bool:
        return bool(await self.service.is_allowed(customer_id, purpose))


def consent_port(kernel: Kernel) -> ConsentPort:
    svc = (_service(kernel, "kunde.profiles.service_consent", "ConsentService")
           or _service(kernel, "kunde.profiles.service", "ConsentService"))
    return ProfilesConsent(svc) if svc is not None else ProjectedConsent(kernel)


class ProjectedStock:
    """Availability from ``p13n_items.available`` (set by staff or a catalogue sync)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def unavailable(self, skus: list[str] | None = None) -> set[str]:
        if skus is not None and not skus:
            return set()
        q = sa.select(items.c.sku).where(items.c.available.is_(False))
        if skus is not None:
            q = q.where(items.c.sku.in_(skus))
        async with self.kernel.db.read() as conn:
            return {r[0] for r in await conn.execute(q)}


class CatalogStock:
    """Commerce's catalog (inactive variants, no free unit at any location) and the
    projection: a product is unavailable when either says so."""

    def __init__(self, kernel: Kernel, read: Callable[..., Awaitable[set[str]]]) -> None:
        self.kernel = kernel
        self.read = read
        self.projected = ProjectedStock(kernel)

    async def unavailable(self, skus: list[str] | None = None) -> set[str]:
        return await self.projected.unavailable(skus) | await self.read(self.kernel, skus)


def stock_port(kernel: Kernel) -> StockPort:
    try:
        read = importlib.import_module("kunde.commerce.availability").unavailable
    except (ImportError, AttributeError):
        return ProjectedStock(kernel)
    return CatalogStock(kernel, read)

class ProjectedMembership:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def segments(self, customer_id: str) -> list[str]:
        async with self.kernel.db.read() as conn:
            rows = await conn.execute(sa.select(segment_members.c.segment).where(
                segment_members.c.customer_id == customer_id).order_by(segment_members.c.segment))
            return [r[0] for r in rows]

    async def tier(self, customer_id: str) -> str | None:
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(tiers.c.tier).where(
                tiers.c.customer_id == customer_id))).first()
        return str(row[0]) if row else None
