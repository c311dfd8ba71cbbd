"""Retention with the real purge hooks: for each data class the owning feature deletes rows
past the period, keeps rows of customers under a legal hold, and the report counts them."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from kunde.commerce.tables import order_lines, orders, payments
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.features import all_features
from kunde.kernel import Kernel
from kunde.messaging.tables import messages
from kunde.privacy.audit import AuditService
from kunde.privacy.retention import RetentionService
from kunde.service.tables import service_activity, service_cases, service_messages
from kunde.store.tables import events


def _ago(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


async def _count(kernel: Kernel, table: sa.Table, *where: Any) -> int:
    async with kernel.db.read() as conn:
        return int((await conn.execute(
            sa.select(sa.func.count()).select_from(table).where(*where))).scalar_one())


async def _run_with_hold(kernel: Kernel, data_class: str, held: str) -> dict[str, Any]:
    svc = RetentionService(kernel)
    await svc.place_hold(data_class, held, "litigation 2026-17", "staff:legal")
    report = await svc.run()
    entry: dict[str, Any] = report["classes"][data_class]
    assert entry["status"] == "purged" and entry["held_customers"] == 1, entry
    stored = (await svc.last_runs(1))[0]["report"]["classes"][data_class]
    assert stored["purged"] == entry["purged"]
    return entry


def test_every_data_class_has_a_purger() -> None:
    owners = {f.name: f for f in all_features()}
    from kunde.privacy.retention import DEFAULT_POLICIES

    for policy in DEFAULT_POLICIES:
        if policy.data_class != "audit":  # privacy purges its own audit log
            assert owners[policy.owner].purge is not None, policy.data_class


async def test_raw_events_purged_by_ingest(kernel: Kernel) -> None:
    old, held, fresh = new_id(), new_id(), new_id()
    for cid, days, type_ in ((old, 400, "ingest.track"), (held, 400, "ingest.identify"),
                             (fresh, 10, "ingest.track"), (old, 400, "commerce.order_placed")):
        e = Event.new(type_, {"event": "x"}, subject_id=cid, source="web")
        e.received_at = e.occurred_at = _ago(days)
        async with kernel.db.transaction() as uow:
            uow.emit(e)
    entry = await _run_with_hold(kernel, "raw_events", held)
    assert entry["purged"] == 1
    assert await _count(kernel, events, events.c.subject_id == old) == 1  # the domain event
    assert await _count(kernel, events, events.c.subject_id == held) == 1
    assert await _count(kernel, events, events.c.subject_id == fresh) == 1


async def test_message_archive_purged_by_messaging(kernel: Kernel) -> None:
    old, held, fresh = new_id(), new_id(), new_id()
    rows = [(old, 800, "sent"), (old, 800, "failed"), (old, 800, "queued"),
            (held, 800, "sent"), (fresh, 30, "sent")]
    async with kernel.db.transaction() as uow:
        for cid, days, status in rows:
            await uow.execute(messages.insert().values(
                id=new_id(), customer_id=cid, idempotency_key=new_id(), channel="email",
                template="shipped", purpose="transactional", destination="smtp",
                context=b"sealed", status=status, attempts=1, next_attempt_at=_ago(days),
                created_at=_ago(days)))
    entry = await _run_with_hold(kernel, "message_archive", held)
    assert entry["purged"] == 2
    # A queued message is still the outbox, not the archive.
    assert await _count(kernel, messages, messages.c.customer_id == old) == 1
    assert await _count(kernel, messages, messages.c.customer_id == held) == 1
    assert await _count(kernel, messages, messages.c.customer_id == fresh) == 1


async def _case(kernel: Kernel, customer_id: str | None, days: int, status: str) -> str:
    case_id, at = new_id(), _ago(days)
    async with kernel.db.transaction() as uow:
        await uow.execute(service_cases.insert().values(
            id=case_id, token=secrets.token_hex(4).upper(), customer_id=customer_id,
            vault_subject=customer_id or case_id, contact_verified=True, channel="email",
            category="other", status=status, priority="normal", queue="general", tags=[],
            opened_at=at, updated_at=at, first_response_due=at, resolution_due=at))
        await uow.execute(service_messages.insert().values(
            id=new_id(), case_id=case_id, direction="in", channel="email",
            author_kind="customer", vault_subject=customer_id or case_id, body_enc=b"sealed",
            created_at=at))
        await uow.execute(service_activity.insert().values(
            id=new_id(), case_id=case_id, at=at, actor="system", action="opened", detail={}))
    return case_id


async def test_cases_purged_by_service(kernel: Kernel) -> None:
    old, held, fresh = new_id(), new_id(), new_id()
    gone = [await _case(kernel, old, 1200, "closed"), await _case(kernel, None, 1200, "solved")]
    kept = [await _case(kernel, old, 1200, "open"),  # still being worked on
            await _case(kernel, held, 1200, "closed"), await _case(kernel, fresh, 100, "closed")]
    entry = await _run_with_hold(kernel, "cases", held)
    assert entry["purged"] == 2
    for table, col in ((service_cases, service_cases.c.id),
                       (service_messages, service_messages.c.case_id),
                       (service_activity, service_activity.c.case_id)):
        assert await _count(kernel, table, col.in_(gone)) == 0, table.name
        assert await _count(kernel, table, col.in_(kept)) == 3, table.name


async def _order(kernel: Kernel, customer_id: str | None, days: int) -> str:
    order_id, at = new_id(), _ago(days)
    async with kernel.db.transaction() as uow:
        await uow.execute(orders.insert().values(
            id=order_id, number=f"K-{secrets.token_hex(4)}", customer_id=customer_id,
            channel="web", currency="EUR", status="delivered", subtotal_minor=1000,
            discount_minor=0, shipping_minor=0, total_minor=1000, shipping_method="standard",
            placed_at=at, updated_at=at, state={},
            pseudonymised_at=at if customer_id is None else None))
        await uow.execute(order_lines.insert().values(
            id=new_id(), order_id=order_id, position=1, sku="SKU-1", title="Shoe",
            quantity=1, unit_price_minor=1000, total_minor=1000))
        await uow.execute(payments.insert().values(
            id=new_id(), order_id=order_id, provider="test", status="captured",
            amount_minor=1000, currency="EUR", created_at=at, updated_at=at))
    return order_id


async def test_orders_and_invoices_purged_by_commerce(kernel: Kernel) -> None:
    old, held, fresh = new_id(), new_id(), new_id()
    gone = [await _order(kernel, old, 3700), await _order(kernel, None, 3700)]
    kept = [await _order(kernel, held, 3700), await _order(kernel, fresh, 3600)]
    entry = await _run_with_hold(kernel, "orders_invoices", held)
    assert entry["purged"] == 2 and entry["days"] == 3653
    for table, col in ((orders, orders.c.id), (order_lines, order_lines.c.order_id),
                       (payments, payments.c.order_id)):
        assert await _count(kernel, table, col.in_(gone)) == 0, table.name
        assert await _count(kernel, table, col.in_(kept)) == 2, table.name


async def test_audit_purge_stops_at_a_held_customer_and_still_verifies(kernel: Kernel) -> None:
    from kunde.core.clock import FrozenClock
    from kunde.privacy.tables import audit_log

    audit = kernel.service(AuditService)
    held = new_id()
    for i, subject in enumerate(["a", "b", held, "c"]):
        kernel.clock = FrozenClock(_ago(2000 - i))
        async with kernel.db.transaction() as uow:
            await audit.record(uow, "staff:u1", "profiles.viewed", subject, {})
    kernel.clock = FrozenClock(datetime.now(UTC))
    entry = await _run_with_hold(kernel, "audit", held)
    # The chain can only lose a prefix: the two entries before the held one go.
    assert entry["purged"] == 2
    # The old entry and the hold's own entry.
    assert await _count(kernel, audit_log, audit_log.c.subject_id == held) == 2
    assert await _count(kernel, audit_log, audit_log.c.subject_id == "c") == 1
    assert (await audit.verify()).ok
