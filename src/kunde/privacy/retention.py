"""Retention: how long each class of data is kept, legal holds, and the purge job.

Privacy purges what it owns (the audit log); every other class (raw ingest events,
the message archive, cases, orders and invoices) is purged by its owning feature's
``Feature.purge`` hook, called with the cutoff and the customer ids under a legal
hold. A hold on a whole class (no customer) suspends its purge. Every run is stored
with a report of what was purged, what was held and which classes have no purger yet.
Defaults and their legal basis: docs/privacy.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.ids import new_id
from kunde.features import Feature, all_features
from kunde.privacy.audit import AuditService
from kunde.privacy.tables import audit_checkpoints, audit_log, legal_holds, retention_runs
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.kernel import Kernel
    from kunde.settings import Settings


@dataclass(frozen=True)
class RetentionPolicy:
    data_class: str
    days: int
    owner: str
    legal_basis: str
    what: str


DEFAULT_POLICIES: tuple[RetentionPolicy, ...] = (
    RetentionPolicy("raw_events", 395, "ingest",
                    "Art. 5(1)(e) GDPR storage limitation; 13 months for analytics data "
                    "(EDPB/CNIL practice)", "ingest.* entries of the event log"),
    RetentionPolicy("message_archive", 730, "messaging",
                    "Art. 6(1)(f) GDPR: proof of what was sent; 2 years", "sent messages"),
    RetentionPolicy("cases", 1095, "service",
                    "§195 BGB regular limitation period (3 years)", "service cases"),
    RetentionPolicy("orders_invoices", 3653, "commerce",
                    "§257 HGB, §147 AO: 10 years (3,653 days) for accounting records "
                    "(pseudonymised after erasure)", "orders, invoices, refunds"),
    RetentionPolicy("audit", 1095, "privacy",
                    "Art. 5(2) GDPR accountability; §195 BGB limitation period (3 years)",
                    "audit log entries"),
)
DATA_CLASSES = tuple(p.data_class for p in DEFAULT_POLICIES)


def policies(settings: Settings | None = None) -> list[RetentionPolicy]:
    """Defaults, overridden per class by ``KUNDE_RETENTION_<CLASS>_DAYS`` (in `Settings`)."""
    if settings is None:
        return list(DEFAULT_POLICIES)
    return [RetentionPolicy(p.data_class, int(getattr(settings, f"retention_{p.data_class}_days")),
                            p.owner, p.legal_basis, p.what)
            for p in DEFAULT_POLICIES]


class RetentionService:
    def __init__(self, kernel: Kernel, features: Sequence[Feature] | None = None) -> None:
        self.kernel = kernel
        self._features = list(features) if features is not None else None

    @property
    def features(self) -> list[Feature]:
        """The installed features (resolved at first use, not at construction)."""
        if self._features is None:
            self._features = all_features()
        return self._features

    async def holds(self, active_only: bool = True) -> list[dict[str, Any]]:
        q = sa.select(legal_holds).order_by(legal_holds.c.created_at.desc())
        if active_only:
            q = q.where(legal_holds.c.released_at.is_(None))
        async with self.kernel.db.read() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    async def place_hold(self, data_class: str, customer_id: str | None, reason: str,
                         actor: str) -> str:
        if data_class != "*" and data_class not in DATA_CLASSES:
            from kunde.core.errors import InvalidInput

            raise InvalidInput(f"data_class must be * or one of {', '.join(DATA_CLASSES)}",
                               code="privacy.unknown_data_class")
        hold_id = new_id()
        async with self.kernel.db.transaction() as uow:
            await uow.execute(legal_holds.insert().values(
                id=hold_id, data_class=data_class, customer_id=customer_id, reason=reason,
                created_by=actor, created_at=self.kernel.clock.now()))
            await self.kernel.service(AuditService).record(
                uow, actor, "privacy.legal_hold_placed", customer_id,
                {"hold_id": hold_id, "data_class": data_class})
        return hold_id

    async def release_hold(self, hold_id: str, actor: str) -> bool:
        async with self.kernel.db.transaction() as uow:
            result = await uow.execute(legal_holds.update().where(
                legal_holds.c.id == hold_id, legal_holds.c.released_at.is_(None))
                .values(released_at=self.kernel.clock.now()))
            if result.rowcount:
                await self.kernel.service(AuditService).record(
                    uow, actor, "privacy.legal_hold_released", None, {"hold_id": hold_id})
        return bool(result.rowcount)

    async def run(self, actor: str = "system:retention") -> dict[str, Any]:
        """Purge every class past its period; returns (and stores) the report."""
        k = self.kernel
        now = k.clock.now()
        active = await self.holds()
        by_feature = {f.name: f for f in self.features}
        report: dict[str, Any] = {"ran_at": now.isoformat(), "classes": {}}
        for policy in policies(k.settings):
            held_all = any(h["customer_id"] is None and h["data_class"] in ("*", policy.data_class)
                           for h in active)
            held = frozenset(h["customer_id"] for h in active if h["customer_id"]
                             and h["data_class"] in ("*", policy.data_class))
            cutoff = now - timedelta(days=policy.days)
            entry: dict[str, Any] = {"days": policy.days, "cutoff": cutoff.isoformat(),
                                     "held_customers": len(held)}
            if held_all:
                entry["status"] = "held"
            else:
                async with k.db.transaction() as uow:
                    purged = await self._purge(uow, policy, by_feature, cutoff, held)
                entry.update(purged)
            report["classes"][policy.data_class] = entry
        async with k.db.transaction() as uow:
            await uow.execute(retention_runs.insert().values(id=new_id(), ran_at=now,
                                                              report=report))
            await k.service(AuditService).record(
                uow, actor, "privacy.retention_ran", None,
                {c: e.get("purged", 0) for c, e in report["classes"].items()})
        return report

    async def _purge(self, uow: UnitOfWork, policy: RetentionPolicy,
                     by_feature: dict[str, Feature], cutoff: datetime,
                     held: frozenset[str]) -> dict[str, Any]:
        if policy.data_class == "audit":
            return {"status": "purged", "purged": await purge_audit(uow, cutoff, held)}
        owner = by_feature.get(policy.owner)
        if owner is None or owner.purge is None:
            return {"status": f"no purger yet: the {policy.owner} feature has no purge hook",
                    "purged": 0}
        n = await owner.purge(self.kernel, uow, policy.data_class, cutoff, held)
        return {"status": "purged", "purged": int(n)}

    async def last_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        async with self.kernel.db.read() as conn:
            rows = await conn.execute(sa.select(retention_runs)
                                      .order_by(retention_runs.c.ran_at.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]


async def purge_audit(uow: UnitOfWork, cutoff: datetime,
                      held: frozenset[str] = frozenset()) -> int:
    """Drop entries older than ``cutoff``, leaving a checkpoint so the chain still verifies.

    The chain can only lose a prefix, so an old entry about a customer under a legal hold
    stops the purge just before it (it and everything after it stay)."""
    q = sa.select(audit_log.c.seq, audit_log.c.hash).where(audit_log.c.at < cutoff)
    if held:
        first_held = (await uow.execute(sa.select(sa.func.min(audit_log.c.seq)).where(
            audit_log.c.at < cutoff, audit_log.c.subject_id.in_(sorted(held))))).scalar()
        if first_held is not None:
            q = q.where(audit_log.c.seq < first_held)
    last = (await uow.execute(q.order_by(audit_log.c.seq.desc()).limit(1))).first()
    if last is None:
        return 0
    await uow.execute(audit_checkpoints.insert().values(seq=last.seq, hash=last.hash,
                                                        at=cutoff))
    result = await uow.execute(audit_log.delete().where(audit_log.c.seq <= last.seq))
    return int(result.rowcount)
