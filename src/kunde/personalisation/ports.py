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
from kunde.store.quick import Query, QuickSession

_customer = sa.bindparam("cid", type_=sa.String())


class ConsentPort(Protocol):
    async def is_allowed(self, customer_id: str, purpose: str) -> bool: ...

    async def is_allowed_in(self, q: QuickSession, customer_id: str, purpose: str) -> bool:
        """`is_allowed` read in the caller's quick session (hot paths reading more)."""
        ...


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


PROJECTED_CONSENT = Query(sa.select(consents.c.granted).where(
    consents.c.customer_id == _customer,
    consents.c.purpose == sa.bindparam("purpose", type_=sa.String())))


class ProjectedConsent:
    """Consent from our projection of ``consent.changed``; no record means not granted."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def is_allowed(self, customer_id: str, purpose: str) -> bool:
        async with self.kernel.db.quick.session() as q:
            return await self.is_allowed_in(q, customer_id, purpose)

    async def is_allowed_in(self, q: QuickSession, customer_id: str, purpose: str) -> bool:
        row = await q.fetch_one(PROJECTED_CONSENT, cid=customer_id, purpose=purpose)
        return bool(row and row["granted"])


class ProfilesConsent:
    def __init__(self, service: Any) -> None:
        self.service = service

    async def is_allowed(self, customer_id: str, purpose: str) -> bool:
        return bool(await self.service.is_allowed(customer_id, purpose))

    async def is_allowed_in(self, q: QuickSession, customer_id: str, purpose: str) -> bool:
        inside = getattr(self.service, "is_allowed_in", None)
        if inside is None:  # a consent service without quick reads: its own connection
            return await self.is_allowed(customer_id, purpose)
        return bool(await inside(q, customer_id, purpose))


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

SEGMENTS_OF = Query(sa.select(segment_members.c.segment)
                   .where(segment_members.c.customer_id == _customer)
                   .order_by(segment_members.c.segment))
TIER_OF = Query(sa.select(tiers.c.tier).where(tiers.c.customer_id == _customer))


class ProjectedMembership:
    """Segments and tier from our projections, on the quick readers."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def segments(self, customer_id: str) -> list[str]:
        async with self.kernel.db.quick.session() as q:
            return [r["segment"] for r in await q.fetch(SEGMENTS_OF, cid=customer_id)]

    async def tier(self, customer_id: str) -> str | None:
        async with self.kernel.db.quick.session() as q:
            row = await q.fetch_one(TIER_OF, cid=customer_id)
        return str(row["tier"]) if row else None
