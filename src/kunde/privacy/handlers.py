"""Consumers: merges and unmerges of customers go into the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kunde.core.events import Event
from kunde.privacy.audit import AuditService
from kunde.store.consumers import Consumer
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.kernel import Kernel

AUDITED = {
    "profiles.customers_merged": "profiles.customers_merged",
    "profiles.customers_unmerged": "profiles.customers_unmerged",
}


def audit_entry_id(event_id: str) -> str:
    """A deterministic entry id per event, so a redelivered event is recorded once."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kunde:audit:{event_id}"))


def consumers(kernel: Kernel) -> list[Consumer]:
    audit = kernel.service(AuditService)

    async def handle(uow: UnitOfWork, batch: Sequence[Event]) -> None:
        for e in batch:
            p = e.payload or {}
            keep = ("survivor_id", "merged_id", "restored_id", "reason", "actor")
            details: dict[str, object] = {k: p[k] for k in keep if k in p}
            details["event_id"] = e.id
            await audit.record(uow, str(p.get("actor") or f"system:{e.source}"), AUDITED[e.type],
                               e.subject_id, details, entry_id=audit_entry_id(e.id))

    return [Consumer(name="privacy.audit_merges", handle=handle, types=frozenset(AUDITED))]
