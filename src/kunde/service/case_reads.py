"""Reading cases: one case, its conversation, its audit trail, and case lists.

Each read has a variant taking the caller's connection (``*_in``). Subjects, bodies
and contact addresses come back decrypted by the vault. `CaseService` holds these
methods.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.service import models
from kunde.service.errors import CaseNotFound
from kunde.service.tables import service_activity, service_cases, service_messages
from kunde.store.database import UnitOfWork


class CaseReads:
    """Reads of cases; mixed into `CaseService`, which provides ``kernel``."""

    kernel: Kernel

    async def get_case(self, case_id: str) -> dict[str, Any]:
        async with self.kernel.db.read() as conn:
            return await self.case_in(conn, case_id)

    async def case_in(self, conn: Any, case_id: str) -> dict[str, Any]:
        row = (await conn.execute(sa.select(service_cases).where(
            service_cases.c.id == case_id))).first()
        if row is None:
            raise CaseNotFound("no such case")
        return await self.case_dict(UnitOfWork(conn, self.kernel.db.dialect), row)

    async def case_dict(self, uow: UnitOfWork, row: Any) -> dict[str, Any]:
        vault = self.kernel.vault
        out = dict(row._mapping)
        out["subject"] = await vault.decrypt_field(uow, row.vault_subject, row.subject_enc)
        out["contact_email"] = await vault.decrypt_field(uow, row.vault_subject,
                                                         row.contact_email_enc)
        for k in ("subject_enc", "contact_email_enc", "contact_email_index"):
            out.pop(k, None)
        out["subject_tag"] = models.subject_tag(row.token)
        return out

    async def thread(self, case_id: str) -> list[dict[str, Any]]:
        async with self.kernel.db.read() as conn:
            return await self.thread_in(conn, case_id)

    async def thread_in(self, conn: Any, case_id: str) -> list[dict[str, Any]]:
        """The conversation, oldest first, bodies decrypted ("(erased)" once shredded)."""
        rows = (await conn.execute(sa.select(service_messages).where(
            service_messages.c.case_id == case_id).order_by(
                service_messages.c.created_at, service_messages.c.id))).all()
        uow = UnitOfWork(conn, self.kernel.db.dialect)
        out = []
        for r in rows:
            body = await self.kernel.vault.decrypt_field(uow, r.vault_subject, r.body_enc)
            out.append({"id": r.id, "direction": r.direction, "channel": r.channel,
                        "author_kind": r.author_kind, "author_name": r.author_name,
                        "body": body if body is not None else "(erased)",
                        "delivery": r.delivery, "created_at": r.created_at})
        return out

    async def list_cases(self, *, status: str | None = None, queue: str | None = None,
                         customer_id: str | None = None, assignee_id: str | None = None,
                         open_only: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        async with self.kernel.db.read() as conn:
            return await self.list_in(conn, status=status, queue=queue,
                                      customer_id=customer_id, assignee_id=assignee_id,
                                      open_only=open_only, limit=limit)

    async def list_in(self, conn: Any, *, status: str | None = None, queue: str | None = None,
                      customer_id: str | None = None, assignee_id: str | None = None,
                      open_only: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        q = sa.select(service_cases)
        if status:
            q = q.where(service_cases.c.status == status)
        if open_only:
            q = q.where(service_cases.c.status.in_(models.OPEN_STATUSES))
        if queue:
            q = q.where(service_cases.c.queue == queue)
        if customer_id:
            q = q.where(service_cases.c.customer_id == customer_id)
        if assignee_id:
            q = q.where(service_cases.c.assignee_id == assignee_id)
        q = q.order_by(service_cases.c.opened_at.desc()).limit(min(limit, 500))
        rows = (await conn.execute(q)).all()
        uow = UnitOfWork(conn, self.kernel.db.dialect)
        return [await self.case_dict(uow, r) for r in rows]

    async def activity(self, case_id: str) -> list[dict[str, Any]]:
        async with self.kernel.db.read() as conn:
            return await self.activity_in(conn, case_id)

    async def activity_in(self, conn: Any, case_id: str) -> list[dict[str, Any]]:
        rows = await conn.execute(sa.select(service_activity).where(
            service_activity.c.case_id == case_id).order_by(service_activity.c.at))
        return [dict(r._mapping) for r in rows]
