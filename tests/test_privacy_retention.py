"""Retention purges what is past its period, honours legal holds, reports, and keeps the
audit chain verifiable after purging its oldest entries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from kunde.core.clock import FrozenClock
from kunde.core.errors import ConfigurationError
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.features import Feature
from kunde.kernel import Kernel
from kunde.privacy.audit import AuditService
from kunde.privacy.retention import RetentionService, policies
from kunde.settings import load_settings
from kunde.store.database import UnitOfWork
from kunde.store.tables import events


async def _old_event(kernel: Kernel, customer_id: str, days: int, type_: str = "ingest.track"
                     ) -> None:
    at = datetime.now(UTC) - timedelta(days=days)
    e = Event.new(type_, {"event": "old"}, subject_id=customer_id, source="web")
    e.received_at = e.occurred_at = at
    async with kernel.db.transaction() as uow:
        uow.emit(e)


async def _count(kernel: Kernel, customer_id: str) -> int:
    async with kernel.db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(events)
                                       .where(events.c.subject_id == customer_id))).scalar_one())


class Purger:
    def __init__(self) -> None:
        self.calls: list[tuple[str, frozenset[str]]] = []

    def feature(self, name: str) -> Feature:
        async def purge(kernel: Kernel, uow: UnitOfWork, data_class: str, cutoff: datetime,
                        held: frozenset[str]) -> int:
            self.calls.append((data_class, held))
            return 7

        return Feature(name=name, purge=purge)


async def test_purge_respects_periods_and_holds(kernel: Kernel) -> None:
    old, held, fresh = new_id(), new_id(), new_id()
    await _old_event(kernel, old, 500)
    await _old_event(kernel, held, 500)
    await _old_event(kernel, fresh, 10)
    await _old_event(kernel, old, 500, type_="commerce.order_placed")  # not a raw event
    purger = Purger()
    from kunde.ingest.feature import FEATURE as ingest

    feats: Sequence[Feature] = [ingest, purger.feature("commerce"), purger.feature("service")]
    svc = RetentionService(kernel, feats)
    await svc.place_hold("raw_events", held, "litigation 2026-17", "staff:legal")
    report = await svc.run()
    classes: dict[str, Any] = report["classes"]
    assert classes["raw_events"]["purged"] == 1
    assert await _count(kernel, old) == 1 and await _count(kernel, held) == 1
    assert await _count(kernel, fresh) == 1
    assert classes["orders_invoices"]["purged"] == 7
    assert classes["message_archive"]["status"].startswith("no purger yet")
    assert ("cases", frozenset()) in purger.calls
    # A hold on a whole class suspends it.
    await svc.place_hold("orders_invoices", None, "tax audit", "staff:legal")
    again = await svc.run()
    assert again["classes"]["orders_invoices"]["status"] == "held"
    assert len(await svc.last_runs()) == 2


async def test_audit_purge_leaves_a_verifiable_chain(kernel: Kernel) -> None:
    audit = kernel.service(AuditService)
    start = datetime.now(UTC) - timedelta(days=2000)
    kernel.clock = FrozenClock(start)
    for i in range(3):
        async with kernel.db.transaction() as uow:
            await audit.record(uow, "staff:u1", "profiles.viewed", f"c{i}", {})
    kernel.clock = FrozenClock(datetime.now(UTC))
    async with kernel.db.transaction() as uow:
        await audit.record(uow, "staff:u1", "profiles.viewed", "recent", {})
    report = await RetentionService(kernel, []).run()
    assert report["classes"]["audit"]["purged"] == 3
    chain = await audit.verify()
    assert chain.ok and chain.checked == 2  # the recent entry and the run's own entry


def test_defaults_have_a_legal_basis_and_can_be_overridden() -> None:
    defaults = {p.data_class: p for p in policies(load_settings(environ={}))}
    assert defaults["orders_invoices"].days == 3653  # ten years, leap days included
    assert all(p.legal_basis for p in defaults.values())
    assert [p.days for p in policies()] == [p.days for p in defaults.values()]
    changed = {p.data_class: p for p in policies(load_settings(
        environ={"KUNDE_RETENTION_RAW_EVENTS_DAYS": "30", "KUNDE_RETENTION_AUDIT_DAYS": "400"}))}
    assert changed["raw_events"].days == 30 and changed["audit"].days == 400
    assert changed["cases"].days == 1095
    with pytest.raises(ConfigurationError, match="RETENTION_CASES_DAYS"):
        load_settings(environ={"KUNDE_RETENTION_CASES_DAYS": "0"})
