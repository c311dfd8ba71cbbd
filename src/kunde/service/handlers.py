"""Event consumers and the SLA sweep of the service feature.

Automatic cases are keyed by their cause (``delay:<shipment>``), so a redelivered event
finds the case it opened the first time. Feedback requests are keyed the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.kernel import Kernel
from kunde.service import models
from kunde.service.feedback import FeedbackService
from kunde.service.service import Actor, CaseService, NewCase
from kunde.service.tables import service_cases, service_order_counts, service_order_seen
from kunde.store.consumers import Consumer
from kunde.store.database import UnitOfWork
from kunde.store.jobs import PeriodicJob
from kunde.store.sql import insert_ignore

# Segment names (normalised) whose members are VIPs at risk of leaving.
AT_RISK_VIP_SEGMENTS = frozenset({"at-risk-vip", "at-risk-vips", "vip-at-risk", "vips-at-risk"})
# A VIP at risk: churn risk turned high for a customer worth at least this much.
VIP_CLV_MINOR = 50_000
CASE_TYPES = frozenset({"fulfilment.delay_detected", "commerce.refund_failed",
                        "segments.entered", "personalisation.scores_computed"})
FEEDBACK_TYPES = frozenset({"service.case_solved", "fulfilment.shipment_delivered",
                            "commerce.order_placed"})
MERGE_TYPES = frozenset({"profiles.customers_merged", "profiles.customers_unmerged"})


def consumers(kernel: Kernel) -> Sequence[Consumer]:
    auto = AutoCases(kernel)
    asks = FeedbackTriggers(kernel)

    async def merges(uow: UnitOfWork, events: Sequence[Event]) -> None:
        for e in events:
            p = e.payload or {}
            if e.type == "profiles.customers_merged" and p.get("merged_id"):
                await uow.execute(service_cases.update().where(
                    service_cases.c.customer_id == p["merged_id"]).values(
                        customer_id=p["survivor_id"]))
            elif e.type == "profiles.customers_unmerged" and p.get("restored_id"):
                # Cases sealed under the restored customer's key were theirs to begin with.
                await uow.execute(service_cases.update().where(
                    service_cases.c.vault_subject == p["restored_id"]).values(
                        customer_id=p["restored_id"]))

    async def erased_contacts(uow: UnitOfWork, events: Sequence[Event]) -> None:
        from kunde.service.privacy import forget_suppressed_contacts

        await forget_suppressed_contacts(kernel, uow, events)

    return [
        Consumer(name="service.auto_cases", handle=auto.handle, types=CASE_TYPES),
        Consumer(name="service.feedback_triggers", handle=asks.handle, types=FEEDBACK_TYPES),
        Consumer(name="service.merges", handle=merges, types=MERGE_TYPES),
        Consumer(name="service.erased_contacts", handle=erased_contacts,
                 types=frozenset({"privacy.customer_erased"})),
    ]


def normalise_segment(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class AutoCases:
    def __init__(self, kernel: Kernel) -> None:
        self.cases = kernel.service(CaseService)

    async def handle(self, uow: UnitOfWork, events: Sequence[Event]) -> None:
        for e in events:
            if e.erased or not e.payload:
                continue
            new, note = self._case_for(e)
            if new is None:
                continue
            case_id, created = await self.cases.open_in(uow, new)
            if created and note:
                await self.cases.add_message_in(uow, case_id, direction="note",
                                                channel="staff", actor=Actor("system"),
                                                body=note)

    @staticmethod
    def _case_for(e: Event) -> tuple[NewCase | None, str]:
        p: dict[str, Any] = e.payload or {}
        cid = e.subject_id
        if e.type == "fulfilment.delay_detected" and p.get("needs_case") and cid:
            return NewCase(
                channel="system", subject="Delivery promise broken", customer_id=cid,
                category="delivery", priority="high", order_id=p.get("order_id"),
                shipment_id=p.get("shipment_id"), cause=f"delay:{p.get('shipment_id')}",
                tags=("delivery-promise",)), (
                f"Delivery promise broken: promised {p.get('promised_date')}, "
                f"now expected {p.get('eta')}. Reason: {p.get('reason')}.")
        if e.type == "commerce.refund_failed" and cid:
            return NewCase(
                channel="system", subject="Refund failed", customer_id=cid, category="refund",
                priority="high", order_id=p.get("order_id"), return_id=p.get("return_id"),
                cause=f"refund_failed:{p.get('refund_id') or e.id}", tags=("refund-failed",)), (
                f"Refund of {p.get('amount_minor')} {p.get('currency')} failed: "
                f"{p.get('error') or p.get('reason') or 'no reason given'}.")
        if (e.type == "segments.entered" and cid
                and normalise_segment(str(p.get("name", ""))) in AT_RISK_VIP_SEGMENTS):
            return NewCase(
                channel="system", subject="VIP at risk of leaving", customer_id=cid,
                category="vip", priority="high", cause=f"vip_at_risk:{e.id}",
                tags=("vip", "churn-risk")), (
                f"Customer entered the segment {p.get('name')}: reach out personally.")
        if (e.type == "personalisation.scores_computed" and cid
                and p.get("churn_risk") == "high"
                and int(p.get("clv_minor") or 0) >= VIP_CLV_MINOR):
            return NewCase(
                channel="system", subject="VIP at risk of leaving", customer_id=cid,
                category="vip", priority="high", cause=f"vip_at_risk:{e.id}",
                tags=("vip", "churn-risk")), (
                f"Churn risk turned high for a customer with a predicted lifetime value of "
                f"{int(p.get('clv_minor') or 0) / 100:.2f} {p.get('currency') or ''}: "
                "reach out personally.")
        return None, ""


class FeedbackTriggers:
    def __init__(self, kernel: Kernel) -> None:
        self.feedback = kernel.service(FeedbackService)

    async def handle(self, uow: UnitOfWork, events: Sequence[Event]) -> None:
        for e in events:
            p = e.payload or {}
            if e.erased or not e.subject_id:
                continue
            cid = e.subject_id
            if e.type == "service.case_solved":
                await self.feedback.request_in(uow, customer_id=cid, kind="csat",
                                               touchpoint="case_solved",
                                               cause=f"csat:{p.get('case_id')}",
                                               case_id=p.get("case_id"))
            elif e.type == "fulfilment.shipment_delivered":
                order_id = p.get("order_id")
                asked = await self.feedback.request_in(
                    uow, customer_id=cid, kind="nps", touchpoint="delivery",
                    cause=f"nps:delivery:{p.get('shipment_id')}", order_id=order_id)
                if asked is None:
                    await self.feedback.request_in(
                        uow, customer_id=cid, kind="review", touchpoint="delivery",
                        cause=f"review:{p.get('shipment_id')}", order_id=order_id)
            elif e.type == "commerce.order_placed":
                await self._count_order(uow, cid, p)

    async def _count_order(self, uow: UnitOfWork, cid: str, p: dict[str, Any]) -> None:
        order_id = str(p.get("order_id") or "")
        if not order_id:
            return
        seen = await uow.execute(insert_ignore(uow.dialect, service_order_seen),
                                 {"order_id": order_id})
        if seen.rowcount != 1:
            return
        await uow.execute(insert_ignore(uow.dialect, service_order_counts),
                          {"customer_id": cid, "orders": 0})
        await uow.execute(service_order_counts.update().where(
            service_order_counts.c.customer_id == cid).values(
                orders=service_order_counts.c.orders + 1))
        n = (await uow.execute(sa.select(service_order_counts.c.orders).where(
            service_order_counts.c.customer_id == cid))).scalar_one()
        every = self.feedback.policy.nps_every_orders
        if every and n % every == 0:
            await self.feedback.request_in(uow, customer_id=cid, kind="nps",
                                           touchpoint="orders", cause=f"nps:orders:{cid}:{n}",
                                           order_id=order_id)


# -- SLA escalation -------------------------------------------------------------------------
async def escalate_at_risk(kernel: Kernel) -> int:
    """Raise the priority of open cases whose SLA timer is about to break (once per case)."""
    now = kernel.clock.now()
    horizon = now + max(t.resolution for t in models.SLA_TARGETS.values()) * models.SLA_WARN_SHARE
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(service_cases).where(
            service_cases.c.status.in_(models.OPEN_STATUSES),
            service_cases.c.escalated_at.is_(None),
            sa.or_(sa.and_(service_cases.c.first_responded_at.is_(None),
                           service_cases.c.first_response_due <= horizon),
                   service_cases.c.resolution_due <= horizon)).limit(1000))).all()
    due = []
    for r in rows:
        first = r.first_responded_at is None and models.sla_at_risk(
            r.priority, r.first_response_due, now, resolution=False)
        resolution = models.sla_at_risk(r.priority, r.resolution_due, now, resolution=True)
        if first or resolution:
            due.append((r, "first_response" if first else "resolution"))
    cases = kernel.service(CaseService)
    for r, timer in due:
        async with kernel.db.transaction() as uow:
            result = await uow.execute(service_cases.update().where(
                service_cases.c.id == r.id, service_cases.c.escalated_at.is_(None)).values(
                    escalated_at=now, priority=models.raised(r.priority), updated_at=now,
                    tags=sorted({*(r.tags or []), "sla-risk"})))
            if result.rowcount != 1:
                continue
            await cases.audit(uow, r.id, Actor("system"), "escalated",
                              {"timer": timer, "from": r.priority})
            uow.emit(Event.new("service.case_escalated", {
                "case_id": r.id, "timer": timer, "priority": models.raised(r.priority),
                "queue": r.queue}, subject_id=r.customer_id, source="service"))
    return len(due)


def jobs(kernel: Kernel) -> Sequence[PeriodicJob]:
    async def run() -> str:
        n = await escalate_at_risk(kernel)
        return f"escalated {n} cases"

    return [PeriodicJob(name="service.sla_escalation", every=timedelta(minutes=1), run=run)]
