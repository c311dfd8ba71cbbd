"""Messaging use cases: enqueue inside the caller's transaction, dispatch the outbox, archive.

`MessagingService.enqueue` only inserts a row, so a request never waits for a
mail server. The dispatcher (`dispatch_due`, run as a periodic job) sends it
later; it lives in `kunde.messaging.dispatch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kunde.core import jsonutil
from kunde.core.errors import InvalidInput, KundeError
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.messaging import peers
from kunde.messaging.channels import SmtpChannel, WebhookChannel
from kunde.messaging.dispatch import OutboxDispatcher
from kunde.messaging.models import (
    CHANNELS,
    Breakers,
    MessagingPolicy,
    mail_domain,
    message_id_for,
    needs_consent,
    send_not_before,
)
from kunde.messaging.render import TemplateMissing, render, template_exists
from kunde.messaging.tables import message_keys, messages, webhook_endpoints
from kunde.privacy.vault import SubjectErased
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore


class MessagingService(OutboxDispatcher):
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        s = kernel.settings
        self.policy = MessagingPolicy()
        self.breakers = Breakers(self.policy)
        self.email = SmtpChannel(s.smtp_host, s.smtp_port, s.mail_from)
        self.reply_domain = mail_domain(s.mail_from, s.inbound_mail_domain)
        self.webhook = WebhookChannel()

    # -- enqueue ---------------------------------------------------------------
    async def enqueue(
        self,
        uow: UnitOfWork,
        *,
        customer_id: str,
        template: str,
        context: dict[str, Any],
        channel: str = "email",
        purpose: str = "transactional",
        locale: str | None = None,
        idempotency_key: str,
    ) -> str | None:
        """Queue a message in the caller's transaction; its id, or None when suppressed.

        Suppressed: a marketing purpose without consent, or an erased customer. The
        same ``idempotency_key`` always yields the same message id and one message.
        """
        if channel not in CHANNELS:
            raise InvalidInput(f"unknown channel {channel!r}", code="messaging.unknown_channel")
        if not template_exists(template):
            raise InvalidInput(f"unknown template {template!r}",
                               code="messaging.unknown_template")
        if needs_consent(purpose) and not await peers.consent_allowed(
                self.kernel, customer_id, purpose):
            return None
        destination = await self._destination(uow, channel, context)
        now = self.kernel.clock.now()
        message_id = message_id_for(idempotency_key)
        try:
            sealed = await self.kernel.vault.encrypt_field(
                uow, customer_id, jsonutil.dumps(context).decode())
        except SubjectErased:
            return None
        # The key is claimed first, in this transaction: a retry (even for another
        # customer record, after a merge) finds it taken and enqueues nothing.
        claimed = await uow.execute(insert_ignore(uow.dialect, message_keys), {
            "idempotency_key": idempotency_key, "message_id": message_id, "created_at": now})
        if not claimed.rowcount:
            return message_id
        await uow.execute(messages.insert(), {
            "id": message_id, "customer_id": customer_id, "idempotency_key": idempotency_key,
            "channel": channel, "template": template, "purpose": purpose, "locale": locale,
            "destination": destination, "context": sealed, "status": "queued",
            "attempts": 0, "next_attempt_at": send_not_before(now, purpose, self.policy),
            "created_at": now,
        })
        return message_id

    async def _destination(self, uow: UnitOfWork, channel: str, context: dict[str, Any]
                           ) -> str:
        if channel == "email":
            return "smtp"
        q = sa.select(webhook_endpoints.c.id).where(webhook_endpoints.c.disabled_at.is_(None))
        if context.get("endpoint"):
            q = q.where(webhook_endpoints.c.name == str(context["endpoint"]))
        endpoint = (await uow.execute(q.order_by(webhook_endpoints.c.created_at))).first()
        if endpoint is None:
            raise KundeError("no webhook endpoint is configured for the webhook channel",
                             code="messaging.no_webhook_endpoint", status=409)
        return f"webhook:{endpoint.id}"

    # -- webhook endpoints -------------------------------------------------------
    async def add_endpoint(self, name: str, url: str, secret: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise InvalidInput("the endpoint URL must be http(s)", code="messaging.bad_url")
        endpoint_id = new_id()
        async with self.kernel.db.transaction() as uow:
            result = await uow.execute(insert_ignore(uow.dialect, webhook_endpoints), {
                "id": endpoint_id, "name": name, "url": url, "secret": secret,
                "created_at": self.kernel.clock.now()})
            if not result.rowcount:
                raise KundeError(f"an endpoint named {name!r} exists",
                                 code="messaging.endpoint_exists", status=409)
        return endpoint_id

    # -- archive -------------------------------------------------------------------
    async def archive(self, customer_ids: Sequence[str], limit: int = 200
                      ) -> list[dict[str, Any]]:
        """Messages of these customers, newest first, with decrypted subject and body."""
        out: list[dict[str, Any]] = []
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(
                sa.select(messages).where(messages.c.customer_id.in_(list(customer_ids)))
                .order_by(messages.c.created_at.desc()).limit(limit))).all()
            for r in rows:
                subject = await self._decrypt(conn, r.customer_id, r.subject)
                body = await self._decrypt(conn, r.customer_id, r.body)
                preview = r.body is None
                if preview:
                    subject, body = await self._preview(conn, r)
                out.append({
                    "id": r.id, "customer_id": r.customer_id, "channel": r.channel,
                    "template": r.template, "purpose": r.purpose, "locale": r.locale,
                    "status": r.status, "attempts": r.attempts, "created_at": r.created_at,
                    "sent_at": r.sent_at, "last_error": r.last_error,
                    "recipient": await self._decrypt(conn, r.customer_id, r.recipient),
                    "subject": subject, "body": body, "preview": preview,
                })
        return out

    async def _preview(self, conn: Any, row: Any) -> tuple[str | None, str | None]:
        """What a message not sent yet will say (rendered from its sealed context)."""
        raw = await self._decrypt(conn, row.customer_id, row.context)
        if raw is None:
            return None, None
        try:
            _, subject, body = render(row.template, row.locale, jsonutil.loads(raw))
        except TemplateMissing:
            return None, None
        return subject, body

    async def get(self, message_id: str) -> dict[str, Any] | None:
        async with self.kernel.db.read() as conn:
            cid = (await conn.execute(sa.select(messages.c.customer_id).where(
                messages.c.id == message_id))).scalar_one_or_none()
        if cid is None:
            return None
        found = [m for m in await self.archive([cid], limit=10_000) if m["id"] == message_id]
        return found[0] if found else None

    async def outbox_summary(self) -> dict[str, Any]:
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(sa.select(
                messages.c.status, messages.c.destination, sa.func.count())
                .group_by(messages.c.status, messages.c.destination))).all()
        counts: dict[str, int] = {}
        for status, _dest, n in rows:
            counts[status] = counts.get(status, 0) + int(n)
        return {"by_status": counts,
                "breakers": {d: b.state for d, b in self.breakers.items.items()}}

    async def erase(self, uow: UnitOfWork, customer_ids: Sequence[str]) -> dict[str, int]:
        keys = (await uow.execute(messages.delete().where(
            messages.c.customer_id.in_(list(customer_ids)))
            .returning(messages.c.idempotency_key))).scalars().all()
        await _forget_keys(uow, keys)
        return {"messages": len(keys)}

    async def purge(self, uow: UnitOfWork, cutoff: datetime, held: frozenset[str]) -> int:
        """Retention of the archive: sent or failed messages created before ``cutoff``,
        except those to customers under a legal hold (queued ones are still the outbox)."""
        q = messages.delete().where(messages.c.created_at < cutoff,
                                    messages.c.status.in_(("sent", "failed")))
        if held:
            q = q.where(messages.c.customer_id.not_in(sorted(held)))
        keys = (await uow.execute(q.returning(messages.c.idempotency_key))).scalars().all()
        await _forget_keys(uow, keys)
        return len(keys)


async def _forget_keys(uow: UnitOfWork, keys: Sequence[str]) -> None:
    """Release the idempotency keys of messages that are gone (erased, past retention)."""
    for start in range(0, len(keys), 500):
        await uow.execute(message_keys.delete().where(
            message_keys.c.idempotency_key.in_(list(keys[start:start + 500]))))
