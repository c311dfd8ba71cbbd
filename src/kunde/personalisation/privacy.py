"""GDPR hooks: everything personalisation holds about a person, and its erasure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.personalisation.tables import (
    consents,
    erased,
    exposures,
    flag_optins,
    interactions,
    offer_decisions,
    scores,
    searches,
    segment_members,
    tiers,
)
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

PERSONAL = {
    "interactions": interactions, "searches": searches, "scores": scores,
    "offer_decisions": offer_decisions, "experiment_exposures": exposures,
    "beta_opt_ins": flag_optins, "consents": consents, "segments": segment_members,
    "tiers": tiers,
}


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


async def export(kernel: Kernel, customer_ids: Sequence[str]) -> dict[str, Any]:
    ids = list(customer_ids)
    out: dict[str, Any] = {}
    async with kernel.db.read() as conn:
        for name, table in PERSONAL.items():
            rows = (await conn.execute(sa.select(table).where(
                table.c.customer_id.in_(ids)))).all()
            out[name] = [{k: _plain(v) for k, v in r._mapping.items()} for r in rows]
    return out


async def erase(kernel: Kernel, uow: UnitOfWork, customer_ids: Sequence[str]
                ) -> dict[str, int]:
    """Delete every row about the person, tombstone them so no replay or retraining brings
    them back, and drop their cached recommendations once the erasure commits."""
    from kunde.personalisation.service import RecommendationService

    ids = list(customer_ids)
    counts: dict[str, int] = {}
    for name, table in PERSONAL.items():
        result = await uow.execute(table.delete().where(table.c.customer_id.in_(ids)))
        counts[name] = int(result.rowcount or 0)
    now = kernel.clock.now()
    await uow.execute(insert_ignore(uow.dialect, erased),
                      [{"customer_id": cid, "erased_at": now} for cid in ids])
    service = kernel.service(RecommendationService)
    uow.after_commit(lambda: service.forget(ids))
    return counts
