"""Cases and their one continuing conversation: open, write, reply, change.

Every command is one transaction; callers that already hold a unit of work (consumers,
the inbound mail path, feedback) use the ``*_in`` variants. Subjects, bodies and contact
addresses are sealed by the vault under the case's ``vault_subject``. Reading cases
is in `kunde.service.case_reads`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.service import keys, models
from kunde.service.case_reads import CaseReads
from kunde.service.errors import CaseNotFound, InvalidCase, InvalidTransition
from kunde.service.peers import enqueue_message
from kunde.service.tables import service_activity, service_cases, service_messages
from kunde.store.database import UnitOfWork

SNIPPET = 140


@dataclass(frozen=True)
class Actor:
    """Who does something to a case, for the conversation and the audit trail."""

    kind: str  # staff | customer | contact | system
    id: str | None = None
    name: str = "system"


SYSTEM = Actor("system")


@dataclass
class NewCase:
    channel: str
    subject: str
    customer_id: str | None = None
    category: str = "general"
    priority: str = "normal"
    queue: str | None = None
    order_id: str | None = None
    shipment_id: str | None = None
    return_id: str | None = None
    cause: str | None = None
    tags: Sequence[str] = field(default_factory=tuple)
    contact_email: str | None = None
    locale: str | None = None


class CaseService(CaseReads):
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    # -- opening -------------------------------------------------------------------------
    async def open_case(self, new: NewCase, actor: Actor = SYSTEM, body: str | None = None,
                        message_channel: str | None = None) -> str:
        async with self.kernel.db.transaction() as uow:
            case_id, _ = await self.open_in(uow, new, actor)
            if body:
                direction = "note" if actor.kind == "staff" else "in"
                await self.add_message_in(uow, case_id, direction=direction,
                                          channel=message_channel or new.channel,
                                          actor=actor, body=body)
        return case_id

    async def open_in(self, uow: UnitOfWork, new: NewCase, actor: Actor = SYSTEM
                      ) -> tuple[str, bool]:
        """Open a case; with a ``cause`` a second call returns the first case. (id, created)"""
        if new.channel not in models.CHANNELS:
            raise InvalidCase(f"channel must be one of {', '.join(models.CHANNELS)}")
        if new.priority not in models.PRIORITIES:
            raise InvalidCase(f"priority must be one of {', '.join(models.PRIORITIES)}")
        if new.cause:
            existing = await keys.holder(uow, keys.case_cause(new.cause))
            if existing:
                return existing, False
        now = self.kernel.clock.now()
        case_id = new_id()
        if new.cause and not await keys.claim(uow, keys.case_cause(new.cause), case_id):
            # A concurrent open of the same cause won (its transaction committed first).
            return str(await keys.holder(uow, keys.case_cause(new.cause))), False
        token = await _new_token(uow, case_id)
        vault_subject = new.customer_id or case_id
        vault = self.kernel.vault
        first_due, resolution_due = models.sla_due(new.priority, now)
        row = {
            "id": case_id, "token": token, "customer_id": new.customer_id,
            "vault_subject": vault_subject, "contact_verified": new.customer_id is not None,
            "contact_email_enc": (await vault.encrypt_field(uow, vault_subject, new.contact_email)
                                  if new.contact_email else None),
            "contact_email_index": (vault.blind_index("email", new.contact_email)
                                    if new.contact_email else None),
            "subject_enc": await vault.encrypt_field(uow, vault_subject, new.subject[:500]),
            "channel": new.channel, "category": new.category, "status": "new",
            "priority": new.priority, "queue": new.queue or models.queue_for(new.category),
            "tags": sorted(set(new.tags)), "order_id": new.order_id,
            "shipment_id": new.shipment_id, "return_id": new.return_id, "cause": new.cause,
            "locale": new.locale, "opened_at": now, "updated_at": now,
            "first_response_due": first_due, "resolution_due": resolution_due,
        }
        await uow.execute(service_cases.insert(), row)
        await self._audit(uow, case_id, actor, "opened",
                          {"channel": new.channel, "cause": new.cause})
        uow.emit(Event.new("service.case_opened", {
            "case_id": case_id, "channel": new.channel, "category": new.category,
            "priority": new.priority, "queue": row["queue"], "order_id": new.order_id,
            "shipment_id": new.shipment_id, "return_id": new.return_id, "cause": new.cause,
        }, subject_id=new.customer_id, source=new.channel))
        return case_id, True

    # -- the conversation ----------------------------------------------------------------
    async def add_message_in(
        self, uow: UnitOfWork, case_id: str, *, direction: str, channel: str, actor: Actor,
        body: str, email_message_id: str | None = None, delivery: str | None = None,
        message_id: str | None = None, case: Any | None = None,
    ) -> str:
        """Append a message; ``case`` is the case row when the caller holds it locked."""
        if case is None:
            case = await self._case_for_update(uow, case_id)
        if case.status == "closed":
            raise InvalidTransition("this case is closed; open a new case",
                                    code="service.case_closed")
        now = self.kernel.clock.now()
        message_id = message_id or new_id()
        await uow.execute(service_messages.insert().values(
            id=message_id, case_id=case_id, direction=direction, channel=channel,
            author_kind=actor.kind, author_id=actor.id, author_name=actor.name[:200],
            vault_subject=case.vault_subject,
            body_enc=await self.kernel.vault.encrypt_field(uow, case.vault_subject, body),
            email_message_id=email_message_id, delivery=delivery, created_at=now,
        ))
        if email_message_id:
            await keys.add(uow, [(keys.email(email_message_id), message_id)])
        changes: dict[str, Any] = {"updated_at": now}
        if direction != "note":
            changes["last_message_at"] = now
            status = models.status_after_message(case.status, direction)
            if status != case.status:
                changes["status"] = status
                if case.status == "solved":
                    changes["solved_at"] = None
        if direction == "out" and case.first_responded_at is None:
            changes["first_responded_at"] = now
        await uow.execute(service_cases.update().where(service_cases.c.id == case_id)
                          .values(**changes))
        if case.customer_id:
            # On the customer's timeline; the payload is sealed under their key.
            uow.emit(Event.new("service.message_added", {
                "case_id": case_id, "message_id": message_id, "direction": direction,
                "channel": channel, "author": actor.kind, "snippet": body[:SNIPPET],
            }, subject_id=case.customer_id, source=channel))
        return message_id

    async def customer_message(self, case_id: str, customer_id: str, body: str,
                               channel: str = "portal") -> str:
        async with self.kernel.db.transaction() as uow:
            case = await self._case_for_update(uow, case_id)
            if case.customer_id != customer_id:
                raise CaseNotFound("no such case")
            return await self.add_message_in(uow, case_id, direction="in", channel=channel,
                                             actor=Actor("customer", customer_id, "customer"),
                                             body=body)

    async def note(self, case_id: str, actor: Actor, body: str) -> str:
        async with self.kernel.db.transaction() as uow:
            return await self.add_message_in(uow, case_id, direction="note", channel="staff",
                                             actor=actor, body=body)

    async def reply(self, case_id: str, actor: Actor, body: str, channel: str = "email") -> str:
        """An agent's answer: on the thread, and out through messaging to the customer."""
        async with self.kernel.db.transaction() as uow:
            case = await self._case_for_update(uow, case_id)
            message_id = new_id()
            email_id = models.reply_message_id(message_id, case.token, self.mail_domain)
            if case.customer_id:
                subject = await self.kernel.vault.decrypt_field(uow, case.vault_subject,
                                                                case.subject_enc) or ""
                in_reply_to, references = await self._email_thread(uow, case_id)
                delivery = await enqueue_message(
                    self.kernel, uow, customer_id=case.customer_id,
                    template="service_case_reply", purpose="transactional",
                    locale=case.locale, idempotency_key=f"service-reply:{message_id}",
                    context={"case_token": case.token, "body": body,
                             "subject": f"{models.subject_tag(case.token)} {subject}",
                             "reply_to_local": models.reply_local_part(case.token),
                             "message_id": email_id, "in_reply_to": in_reply_to,
                             "references": references, "agent_name": actor.name})
            else:
                # Never mail an unverified address through a customer's channel.
                delivery = "not_sent:unverified_contact"
            return await self.add_message_in(
                uow, case_id, direction="out", channel=channel, actor=actor, body=body,
                email_message_id=email_id, delivery=delivery, message_id=message_id)

    async def _email_thread(self, uow: UnitOfWork, case_id: str
                            ) -> tuple[str | None, list[str]]:
        """(In-Reply-To, References) of a reply: the customer's latest mail on the case and
        the Message-IDs of the mails exchanged so far, oldest first."""
        rows = (await uow.execute(sa.select(
            service_messages.c.direction, service_messages.c.email_message_id,
            service_messages.c.delivery).where(
                service_messages.c.case_id == case_id, service_messages.c.channel == "email",
                service_messages.c.email_message_id.is_not(None)).order_by(
                    service_messages.c.created_at, service_messages.c.id))).all()
        ids = [r.email_message_id for r in rows
               if (r.direction == "in" and not r.email_message_id.endswith(
                   models.SYNTHETIC_ID_SUFFIX))
               or (r.direction == "out" and (r.delivery or "").startswith("queued:"))]
        in_reply_to = next((r.email_message_id for r in reversed(rows)
                            if r.direction == "in" and r.email_message_id in ids), None)
        return in_reply_to, ids[-models.MAX_REFERENCES:]

    @property
    def mail_domain(self) -> str:
        s = self.kernel.settings
        return models.mail_domain(s.mail_from, s.inbound_mail_domain)

    # -- changing ------------------------------------------------------------------------
    async def update(self, case_id: str, actor: Actor, *, status: str | None = None,
                     priority: str | None = None, queue: str | None = None,
                     assignee_id: str | None = None, assignee_name: str | None = None,
                     tags: Sequence[str] | None = None, category: str | None = None) -> None:
        async with self.kernel.db.transaction() as uow:
            await self.update_in(uow, case_id, actor, status=status, priority=priority,
                                 queue=queue, assignee_id=assignee_id,
                                 assignee_name=assignee_name, tags=tags, category=category)

    async def update_in(self, uow: UnitOfWork, case_id: str, actor: Actor, *,
                        status: str | None = None, priority: str | None = None,
                        queue: str | None = None, assignee_id: str | None = None,
                        assignee_name: str | None = None, tags: Sequence[str] | None = None,
                        category: str | None = None) -> None:
        case = await self._case_for_update(uow, case_id)
        if category and category != case.category:
            if category not in models.CATEGORY_QUEUE:
                raise InvalidCase("category must be one of "
                                  f"{', '.join(sorted(models.CATEGORY_QUEUE))}")
            # A case still in its category's queue follows the new category.
            if queue in (None, "", case.queue) and case.queue == models.queue_for(case.category):
                queue = models.queue_for(category)
        now = self.kernel.clock.now()
        changes: dict[str, Any] = {}
        if status and status != case.status:
            if status not in models.STATUSES or not models.can_transition(case.status, status):
                raise InvalidTransition(f"a {case.status} case cannot become {status}")
            changes["status"] = status
            if status == "solved":
                changes["solved_at"] = now
            if status == "closed":
                changes["closed_at"] = now
        if priority and priority != case.priority:
            if priority not in models.PRIORITIES:
                raise InvalidCase(f"priority must be one of {', '.join(models.PRIORITIES)}")
            changes["priority"] = priority
        if category and category != case.category:
            changes["category"] = category
        if queue and queue != case.queue:
            if queue not in models.QUEUES:
                raise InvalidCase(f"queue must be one of {', '.join(models.QUEUES)}")
            changes["queue"] = queue
        if assignee_id is not None and assignee_id != (case.assignee_id or ""):
            changes["assignee_id"] = assignee_id or None
            changes["assignee_name"] = (assignee_name or None) if assignee_id else None
        if tags is not None and sorted(set(tags)) != list(case.tags or []):
            changes["tags"] = sorted({t.strip().lower() for t in tags if t.strip()})
        if not changes:
            return
        await uow.execute(service_cases.update().where(service_cases.c.id == case_id)
                          .values(updated_at=now, **changes))
        await self._audit(uow, case_id, actor, "changed",
                          {k: v for k, v in changes.items() if not isinstance(v, datetime)})
        if changes.get("status") == "solved":
            uow.emit(Event.new("service.case_solved", {
                "case_id": case_id, "channel": case.channel, "category": case.category,
            }, subject_id=case.customer_id, source="service"))

    async def link_contact(self, case_id: str, customer_id: str, actor: Actor) -> None:
        """An agent verified who wrote: the case and its thread move under the customer."""
        async with self.kernel.db.transaction() as uow:
            case = await self._case_for_update(uow, case_id)
            if case.contact_verified:
                raise InvalidTransition("the contact of this case is verified already",
                                        code="service.contact_verified")
            vault = self.kernel.vault

            async def move(blob: bytes | None) -> bytes | None:
                clear = await vault.decrypt_field(uow, case.vault_subject, blob)
                return None if clear is None else await vault.encrypt_field(
                    uow, customer_id, clear)

            await uow.execute(service_cases.update().where(service_cases.c.id == case_id)
                              .values(customer_id=customer_id, vault_subject=customer_id,
                                      contact_verified=True,
                                      subject_enc=await move(case.subject_enc),
                                      contact_email_enc=await move(case.contact_email_enc)))
            rows = (await uow.execute(sa.select(service_messages.c.id,
                                                service_messages.c.body_enc)
                                      .where(service_messages.c.case_id == case_id))).all()
            for r in rows:
                await uow.execute(service_messages.update().where(
                    service_messages.c.id == r.id).values(
                        vault_subject=customer_id, body_enc=await move(r.body_enc) or b""))
            await vault.shred(uow, case_id, "case contact verified and moved to customer")
            await self._audit(uow, case_id, actor, "contact_verified",
                              {"customer_id": customer_id})

    # -- helpers -------------------------------------------------------------------------
    async def _case_for_update(self, uow: UnitOfWork, case_id: str) -> Any:
        q = sa.select(service_cases).where(service_cases.c.id == case_id)
        if uow.dialect == "postgresql":
            q = q.with_for_update()
        row = (await uow.execute(q)).first()
        if row is None:
            raise CaseNotFound("no such case")
        return row

    async def audit(self, uow: UnitOfWork, case_id: str, actor: Actor, action: str,
                    detail: dict[str, Any]) -> None:
        await self._audit(uow, case_id, actor, action, detail)

    async def _audit(self, uow: UnitOfWork, case_id: str, actor: Actor, action: str,
                     detail: dict[str, Any]) -> None:
        await uow.execute(service_activity.insert().values(
            id=new_id(), case_id=case_id, at=self.kernel.clock.now(),
            actor=f"{actor.kind}:{actor.name}"[:200], action=action, detail=detail))


async def _new_token(uow: UnitOfWork, case_id: str) -> str:
    """A case token no other case has (40 random bits: a collision is rare, not impossible)."""
    for _ in range(20):
        token = models.new_case_token()
        if await keys.claim(uow, keys.case_token(token), case_id):
            return token
    raise RuntimeError("no free case token after 20 tries")
