"""GDPR hooks of the service feature: export what we hold about a customer, and erase it.

Erasure deletes the conversation and pseudonymises cases and feedback scores, so reports
keep their counts without a way back to the person (the vault shreds the key as well).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kunde.core.ids import derived_id
from kunde.kernel import Kernel
from kunde.service.service import CaseService
from kunde.service.tables import (
    service_activity,
    service_cases,
    service_feedback,
    service_messages,
)
from kunde.store.database import UnitOfWork


async def export(kernel: Kernel, customer_ids: Sequence[str]) -> dict[str, Any]:
    cases = kernel.service(CaseService)
    out_cases = []
    for cid in customer_ids:
        for case in await cases.list_cases(customer_id=cid, limit=500):
            thread = [m for m in await cases.thread(case["id"]) if m["direction"] != "note"]
            out_cases.append({
                "id": case["id"], "reference": case["subject_tag"], "subject": case["subject"],
                "status": case["status"], "channel": case["channel"],
                "opened_at": case["opened_at"].isoformat(),
                "messages": [{"direction": m["direction"], "channel": m["channel"],
                              "body": m["body"], "at": m["created_at"].isoformat()}
                             for m in thread]})
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(service_feedback).where(
            service_feedback.c.customer_id.in_(list(customer_ids))))).all()
        uow = UnitOfWork(conn, kernel.db.dialect)
        feedback = []
        for r in rows:
            feedback.append({
                "kind": r.kind, "touchpoint": r.touchpoint, "sent_at": r.sent_at.isoformat(),
                "score": r.score, "answered_at": r.answered_at.isoformat()
                if r.answered_at else None,
                "comment": await kernel.vault.decrypt_field(uow, r.customer_id, r.comment_enc)})
    return {"cases": out_cases, "feedback": feedback}


async def erase(kernel: Kernel, uow: UnitOfWork, customer_ids: Sequence[str]) -> dict[str, int]:
    ids = list(customer_ids)
    case_ids = [r.id for r in await uow.execute(sa.select(service_cases.c.id).where(
        service_cases.c.customer_id.in_(ids)))]
    messages = 0
    if case_ids:
        messages = (await uow.execute(service_messages.delete().where(
            service_messages.c.case_id.in_(case_ids)))).rowcount
        await uow.execute(service_cases.update().where(service_cases.c.id.in_(case_ids)).values(
            customer_id=None, vault_subject=service_cases.c.id, subject_enc=None,
            contact_email_enc=None, contact_email_index=None, tags=[]))
    feedback = 0
    for cid in ids:
        feedback += (await uow.execute(service_feedback.update().where(
            service_feedback.c.customer_id == cid).values(
                customer_id=derived_id("service.erased", cid), comment_enc=None))).rowcount
    return {"service_cases_pseudonymised": len(case_ids), "service_messages_deleted": messages,
            "service_feedback_pseudonymised": feedback}


async def purge(kernel: Kernel, uow: UnitOfWork, data_class: str, cutoff: datetime,
                held: frozenset[str]) -> int:
    """Retention of ``cases``: solved or closed cases untouched since ``cutoff`` go with their
    messages and activity, except cases of customers under a legal hold; returns cases."""
    if data_class != "cases":
        return 0
    q = sa.select(service_cases.c.id).where(service_cases.c.updated_at < cutoff,
                                             service_cases.c.status.in_(("solved", "closed")))
    if held:
        q = q.where(sa.or_(service_cases.c.customer_id.is_(None),
                           service_cases.c.customer_id.not_in(sorted(held))))
    purged = 0
    while case_ids := [str(r.id) for r in await uow.execute(q.limit(500))]:
        for table in (service_messages, service_activity):
            await uow.execute(table.delete().where(table.c.case_id.in_(case_ids)))
        await uow.execute(service_feedback.update().where(
            service_feedback.c.case_id.in_(case_ids)).values(case_id=None))
        purged += int((await uow.execute(service_cases.delete().where(
            service_cases.c.id.in_(case_ids)))).rowcount)
    return purged
