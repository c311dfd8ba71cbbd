"""Fulfilment: shipments, carrier tracking, promises, delay care, returns, refunds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from kunde.features import Feature, NavItem
from kunde.fulfilment.demo import load as demo
from kunde.fulfilment.pages import PAGES
from kunde.fulfilment.routes import ROUTES
from kunde.fulfilment.service import FulfilmentService
from kunde.fulfilment.service_care import CareService
from kunde.fulfilment.service_returns import ReturnService
from kunde.fulfilment.tables import checkpoints, returns, shipments
from kunde.kernel import Kernel
from kunde.store.database import UnitOfWork
from kunde.store.jobs import PeriodicJob


def jobs(kernel: Kernel) -> list[PeriodicJob]:
    shipping = kernel.service(FulfilmentService)
    care = kernel.service(CareService)
    refunds = kernel.service(ReturnService)

    async def apply_tracking() -> str:
        # Small transactions so webhook acceptance interleaves; up to ~5 s per run.
        deadline = asyncio.get_running_loop().time() + 5
        rounds = 0
        while asyncio.get_running_loop().time() < deadline:
            rounds += 1
            if await shipping.apply_pending(limit=100) == "nothing to apply":
                break
        acted = await care.act_on_due(limit=500)
        return f"{rounds} rounds applied; cared for {acted}"

    async def purge() -> str:
        return f"purged {await shipping.purge_inbox()} applied webhooks"

    return [
        PeriodicJob("fulfilment.apply_tracking", timedelta(seconds=1), apply_tracking,
                    timeout=timedelta(minutes=2)),
        PeriodicJob("fulfilment.risk_sweep", timedelta(minutes=5), care.sweep,
                    timeout=timedelta(minutes=10)),
        PeriodicJob("fulfilment.refunds", timedelta(seconds=30), refunds.process_refunds),
        PeriodicJob("fulfilment.purge_inbox", timedelta(hours=1), purge),
    ]


async def export(kernel: Kernel, customer_ids: Sequence[str]) -> dict[str, Any]:
    ids = list(customer_ids)
    async with kernel.db.read() as conn:
        ships = (await conn.execute(sa.select(shipments).where(
            shipments.c.customer_id.in_(ids)))).all()
        cps = (await conn.execute(sa.select(checkpoints).where(
            checkpoints.c.shipment_id.in_([s.id for s in ships])))).all() if ships else []
        rets = (await conn.execute(sa.select(returns).where(
            returns.c.customer_id.in_(ids)))).all()
    by_ship: dict[str, list[dict[str, Any]]] = {}
    for c in cps:
        by_ship.setdefault(c.shipment_id, []).append(
            {"at": c.at, "status": c.status, "message": c.message, "location": c.location})
    return {
        "shipments": [{**{k: v for k, v in s._mapping.items() if k != "token"},
                       "checkpoints": by_ship.get(s.id, [])} for s in ships],
        "returns": [dict(r._mapping) for r in rets],
    }


async def erase(kernel: Kernel, uow: UnitOfWork, customer_ids: Sequence[str]
                ) -> dict[str, int]:
    """Shipments and returns stay for accounting, detached from the person.

    Checkpoint locations can place a person at an address: they are blanked. The
    tracking token is rotated so an old link in a mailbox shows nothing personal.
    """
    import secrets

    ids = list(customer_ids)
    ship_ids = [r.id for r in (await uow.execute(sa.select(shipments.c.id).where(
        shipments.c.customer_id.in_(ids)))).all()]
    blanked = 0
    for ship_id in ship_ids:
        await uow.execute(shipments.update().where(shipments.c.id == ship_id).values(
            customer_id=None, token=secrets.token_urlsafe(18)))
        result = await uow.execute(checkpoints.update().where(
            checkpoints.c.shipment_id == ship_id).values(location=""))
        blanked += int(result.rowcount)
    rets = await uow.execute(returns.update().where(returns.c.customer_id.in_(ids)).values(
        customer_id=None))
    return {"shipments": len(ship_ids), "checkpoints": blanked,
            "returns": int(rets.rowcount)}


FEATURE = Feature(
    name="fulfilment",
    routes=[*ROUTES, *PAGES],
    jobs=jobs,
    demo=demo,
    nav=(NavItem("Shipments", "/console/shipments", "fulfilment:read"),
         NavItem("Returns", "/console/returns", "fulfilment:read")),
    permissions=("fulfilment:read", "fulfilment:write", "fulfilment:admin"),
    export=export,
    erase=erase,
    portal_nav=(NavItem("Parcels", "/portal/shipments", "self"),
                NavItem("Returns", "/portal/returns", "self")),
)
