"""Dispatching the outbox: claim due messages, render, send, record the outcome.

`OutboxDispatcher.dispatch_due` (run as a periodic job) claims due rows, renders
them in the customer's locale, sends them through the channel and records the
outcome: sent (archived, sealed, ``messaging.message_sent`` on the customer's
timeline) or retried with exponential back-off. A circuit breaker per destination
stops hammering a server that is down. `MessagingService` holds these methods.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from kunde.core import jsonutil
from kunde.core.events import Event
from kunde.kernel import Kernel
from kunde.messaging import peers
from kunde.messaging.channels import Outgoing, SmtpChannel, WebhookChannel
from kunde.messaging.models import (
    Breakers,
    MessagingPolicy,
    backoff,
    message_id_for,
    send_not_before,
    thread_headers,
)
from kunde.messaging.render import TemplateMissing, render
from kunde.messaging.tables import messages, webhook_endpoints
from kunde.privacy.vault import SubjectErased

log = logging.getLogger("kunde.messaging")

CLAIM_LEASE = timedelta(minutes=2)


class PermanentFailure(Exception):
    """A message that can never be sent (no address, no template): not retried."""


class Deferred(Exception):
    """Quiet hours in the customer's own time zone: try again at ``until``."""

    def __init__(self, until: datetime) -> None:
        super().__init__(until.isoformat())
        self.until = until


class OutboxDispatcher:
    """Sends due messages; mixed into `MessagingService`, which sets these attributes."""

    kernel: Kernel
    policy: MessagingPolicy
    breakers: Breakers
    email: SmtpChannel
    webhook: WebhookChannel
    reply_domain: str

    async def dispatch_due(self, limit: int = 200) -> str:
        """Send what is due now; returns a one-line summary for the job log."""
        sent = failed = 0
        for _ in range(2):
            had_trial = any(b.open_until is not None for b in self.breakers.items.values())
            s, f = await self._dispatch_round(limit)
            sent, failed = sent + s, failed + f
            # A successful half-open trial closed a breaker: send the rest right away.
            if not had_trial or any(b.open_until is not None
                                    for b in self.breakers.items.values()):
                break
        return f"sent {sent}, retrying {failed}"

    async def _dispatch_round(self, limit: int) -> tuple[int, int]:
        now = self.kernel.clock.now()
        claimed = await self._claim(now, limit)
        sent = failed = 0
        by_dest: dict[str, list[Any]] = {}
        for row in claimed:
            by_dest.setdefault(row.destination, []).append(row)
        for destination, rows in by_dest.items():
            s, f = await self._send_destination(destination, rows)
            sent += s
            failed += f
        return sent, failed

    async def _claim(self, now: datetime, limit: int) -> list[Any]:
        blocked = [d for d, b in self.breakers.items.items()
                   if b.open_until is not None and (now < b.open_until or b.trial_running)]
        half_open = {d for d, b in self.breakers.items.items()
                     if b.open_until is not None and d not in blocked}
        q = (sa.select(messages.c.id, messages.c.destination)
             .where(messages.c.status == "queued", messages.c.next_attempt_at <= now)
             .order_by(messages.c.next_attempt_at).limit(limit))
        if blocked:
            q = q.where(messages.c.destination.notin_(blocked))
        # Look before taking the writer: an idle outbox costs one indexed read a second.
        async with self.kernel.db.read() as conn:
            if (await conn.execute(q.limit(1))).first() is None:
                return []
        async with self.kernel.db.transaction() as uow:
            candidates = (await uow.execute(q)).all()
            ids: list[str] = []
            trials: set[str] = set()
            for c in candidates:
                if c.destination in half_open:
                    if c.destination in trials:
                        continue
                    trials.add(c.destination)
                ids.append(c.id)
            if not ids:
                return []
            rows = (await uow.execute(
                messages.update()
                .where(messages.c.id.in_(ids), messages.c.status == "queued",
                       messages.c.next_attempt_at <= now)
                .values(attempts=messages.c.attempts + 1, next_attempt_at=now + CLAIM_LEASE)
                .returning(*messages.c)
            )).all()
        for d in trials:
            self.breakers.get(d).allows(now)
        return list(rows)

    async def _prepare(self, row: Any) -> Outgoing:
        async with self.kernel.db.read() as conn:
            raw = await self._decrypt(conn, row.customer_id, row.context)
        if raw is None:
            raise PermanentFailure("the customer was erased")
        context: dict[str, Any] = jsonutil.loads(raw)
        profile = await peers.profile_of(self.kernel, row.customer_id)
        recipient = str(context.get("email") or profile.get("email") or "")
        if row.channel == "email" and not recipient:
            raise PermanentFailure("the customer has no email address")
        context.setdefault("first_name", profile.get("first_name"))
        tz = _timezone(profile)
        if tz:
            until = send_not_before(self.kernel.clock.now(), row.purpose, self.policy, tz)
            if until > self.kernel.clock.now():
                raise Deferred(until)
        try:
            locale, subject, body = render(row.template, row.locale or profile.get("locale"),
                                           context)
        except TemplateMissing as exc:
            raise PermanentFailure(str(exc)) from exc
        return Outgoing(message_id=row.id, customer_id=row.customer_id, recipient=recipient,
                        subject=subject, body=body, template=row.template,
                        purpose=row.purpose, locale=locale,
                        headers=thread_headers(context, self.reply_domain))

    async def _decrypt(self, conn: Any, customer_id: str, blob: bytes) -> str | None:
        # The vault reads keys through a unit of work's execute(); a read connection
        # offers the same method, which is all it needs.
        return await self.kernel.vault.decrypt_field(conn, customer_id, blob)

    async def _send_destination(self, destination: str, rows: list[Any]) -> tuple[int, int]:
        ready: list[Outgoing] = []
        for row in rows:
            try:
                ready.append(await self._prepare(row))
            except PermanentFailure as exc:
                await self._record_failure(row, str(exc), permanent=True)
            except Deferred as later:
                await self._defer(row, later.until)
        if not ready:
            return 0, 0
        results: list[Exception | None]
        try:
            results = await self._deliver(destination, ready)
        except Exception as exc:  # the destination as a whole is unreachable
            self.breakers.get(destination).failed(self.kernel.clock.now())
            log.warning("destination %s unreachable: %r", destination, exc)
            for item in ready:
                await self._record_failure(_row(rows, item.message_id), repr(exc))
            return 0, len(ready)
        self.breakers.get(destination).succeeded()
        sent = 0
        for item, error in zip(ready, results, strict=True):
            if error is None:
                await self._record_sent(_row(rows, item.message_id), item)
                sent += 1
            else:
                await self._record_failure(_row(rows, item.message_id), repr(error))
        return sent, len(ready) - sent

    async def _deliver(self, destination: str, items: list[Outgoing]) -> list[Exception | None]:
        if destination == "smtp":
            return await self.email.send_batch(items)
        endpoint_id = destination.split(":", 1)[1]
        async with self.kernel.db.read() as conn:
            ep = (await conn.execute(sa.select(webhook_endpoints).where(
                webhook_endpoints.c.id == endpoint_id))).first()
        if ep is None or ep.disabled_at is not None:
            return [PermanentFailure("endpoint removed") for _ in items]
        results: list[Exception | None] = []
        for item in items:
            await self.webhook.send(ep.url, ep.secret, item)  # raises: breaker counts it
            results.append(None)
        return results

    async def _record_sent(self, row: Any, item: Outgoing) -> None:
        now = self.kernel.clock.now()
        vault = self.kernel.vault
        async with self.kernel.db.transaction() as uow:
            try:
                values = {
                    "recipient": await vault.encrypt_field(uow, row.customer_id, item.recipient),
                    "subject": await vault.encrypt_field(uow, row.customer_id, item.subject),
                    "body": await vault.encrypt_field(uow, row.customer_id, item.body),
                }
            except SubjectErased:
                values = {}
            await uow.execute(messages.update().where(
                messages.c.customer_id == row.customer_id, messages.c.id == row.id).values(
                status="sent", sent_at=now, locale=item.locale, last_error=None, **values))
            if values:
                uow.emit(Event.new("messaging.message_sent", {
                    "message_id": row.id, "channel": row.channel, "template": row.template,
                    "purpose": row.purpose, "locale": item.locale,
                }, subject_id=row.customer_id, source="messaging",
                    event_id=message_id_for("sent\x1f" + row.id)))

    async def _defer(self, row: Any, until: datetime) -> None:
        async with self.kernel.db.transaction() as uow:
            await uow.execute(messages.update().where(
                messages.c.customer_id == row.customer_id, messages.c.id == row.id).values(
                attempts=messages.c.attempts - 1, next_attempt_at=until))

    async def _record_failure(self, row: Any, error: str, *, permanent: bool = False) -> None:
        now = self.kernel.clock.now()
        give_up = permanent or row.attempts >= self.policy.max_attempts
        async with self.kernel.db.transaction() as uow:
            await uow.execute(messages.update().where(
                messages.c.customer_id == row.customer_id, messages.c.id == row.id).values(
                status="failed" if give_up else "queued", last_error=error[:2000],
                next_attempt_at=now + backoff(row.attempts, self.policy)))


def _timezone(profile: dict[str, Any]) -> str | None:
    """The customer's IANA time zone from their traits, if known and valid."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    value = profile.get("timezone") or (profile.get("traits") or {}).get("timezone")
    if not isinstance(value, str) or not value:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return value


def _row(rows: list[Any], message_id: str) -> Any:
    return next(r for r in rows if r.id == message_id)
