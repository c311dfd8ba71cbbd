"""Signed outbound webhooks for loyalty events (Standard Webhooks signatures).

Messaging's webhook channel carries rendered customer messages; partners of a
loyalty programme want the loyalty events themselves, so loyalty keeps its own
small outbox: a consumer turns each ``loyalty.*`` event into one delivery per
subscribed endpoint (id derived from endpoint + event, so a replay delivers
once), bodies sealed under the customer's key; a job sends due deliveries
through the SSRF-safe client, signed with `kunde.messaging.signing`, retrying
with exponential back-off and giving up after `MAX_ATTEMPTS`.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core import jsonutil
from kunde.core.errors import InvalidInput
from kunde.core.events import Event
from kunde.core.ids import derived_id, new_id
from kunde.loyalty.tables import webhook_deliveries, webhooks
from kunde.messaging import signing
from kunde.privacy.ssrf import OutboundPolicy, check_url, safe_request
from kunde.privacy.vault import SubjectErased
from kunde.store.consumers import Consumer
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

EVENT_TYPES = frozenset({
    "loyalty.points_awarded", "loyalty.points_reversed", "loyalty.points_expired",
    "loyalty.reward_redeemed", "loyalty.tier_changed", "loyalty.quest_completed",
    "loyalty.welcome_granted",
})
MAX_ATTEMPTS = 8


class LoyaltyWebhooks:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        # Operators (and tests) may allow a known internal receiver here.
        self.policy = OutboundPolicy()

    async def subscribe(self, url: str, event_types: list[str], secret: str | None = None
                        ) -> dict[str, Any]:
        unknown = sorted(set(event_types) - EVENT_TYPES)
        if unknown or not event_types:
            raise InvalidInput(f"subscribe to some of {sorted(EVENT_TYPES)}; unknown: {unknown}",
                               code="loyalty.unknown_event_type")
        await check_url(url, self.policy)
        secret = secret or "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        hook_id = new_id()
        async with self.kernel.db.transaction() as uow:
            await uow.execute(webhooks.insert().values(
                id=hook_id, url=url, secret=secret, event_types=sorted(set(event_types)),
                created_at=self.kernel.clock.now()))
        return {"id": hook_id, "url": url, "event_types": sorted(set(event_types)),
                "secret": secret}

    async def enqueue(self, uow: UnitOfWork, events: Sequence[Event]) -> None:
        hooks = (await uow.execute(sa.select(webhooks).where(
            webhooks.c.disabled_at.is_(None)))).all()
        if not hooks:
            return
        now = self.kernel.clock.now()
        for ev in events:
            if ev.erased or ev.payload is None:
                continue
            body = jsonutil.dumps({"type": ev.type, "timestamp": ev.occurred_at.isoformat(),
                                   "data": {**ev.payload, "customer_id": ev.subject_id,
                                            "event_id": ev.id}})
            for hook in hooks:
                if ev.type not in hook.event_types:
                    continue
                try:
                    sealed = (await self.kernel.vault.encrypt_field(
                        uow, ev.subject_id, body.decode()) if ev.subject_id else body)
                except SubjectErased:
                    continue
                await uow.execute(insert_ignore(uow.dialect, webhook_deliveries), {
                    "id": derived_id("webhook", hook.id, ev.id), "webhook_id": hook.id,
                    "event_id": ev.id, "customer_id": ev.subject_id, "body": sealed,
                    "status": "pending", "attempts": 0, "next_attempt_at": now})

    async def send_due(self, limit: int = 100) -> str:
        now = self.kernel.clock.now()
        async with self.kernel.db.read() as conn:
            due = (await conn.execute(
                sa.select(webhook_deliveries, webhooks.c.url, webhooks.c.secret)
                .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
                .where(webhook_deliveries.c.status == "pending",
                       webhook_deliveries.c.next_attempt_at <= now)
                .order_by(webhook_deliveries.c.next_attempt_at).limit(limit))).all()
        sent = failed = 0
        for d in due:
            async with self.kernel.db.transaction() as uow:
                body = (await self.kernel.vault.decrypt_field(uow, d.customer_id, d.body)
                        if d.customer_id else bytes(d.body).decode())
            error = None
            if body is None:
                error = "customer erased"
            else:
                error = await self._post(d.url, d.secret, d.id, body.encode())
            async with self.kernel.db.transaction() as uow:
                attempts = int(d.attempts) + 1
                if error is None:
                    values: dict[str, Any] = {"status": "sent", "attempts": attempts}
                    sent += 1
                else:
                    gave_up = attempts >= MAX_ATTEMPTS or body is None
                    values = {"status": "failed" if gave_up else "pending",
                              "attempts": attempts, "last_error": error[:500],
                              "next_attempt_at": now + timedelta(seconds=min(2 ** attempts * 5,
                                                                             3600))}
                    failed += 1
                await uow.execute(webhook_deliveries.update().where(
                    webhook_deliveries.c.id == d.id, webhook_deliveries.c.status == "pending",
                ).values(**values))
        return f"sent {sent}, failed {failed}"

    async def _post(self, url: str, secret: str, msg_id: str, body: bytes) -> str | None:
        import time

        hdrs = signing.headers(secret, msg_id, int(time.time()), body)
        hdrs["content-type"] = "application/json"
        try:
            response = await safe_request("POST", url, content=body, headers=hdrs,
                                          policy=self.policy)
        except Exception as exc:
            return repr(exc)
        return None if response.status_code < 300 else f"answered {response.status_code}"


def consumer(kernel: Kernel) -> Consumer:
    hooks = kernel.service(LoyaltyWebhooks)

    async def handle(uow: UnitOfWork, events: Sequence[Event]) -> None:
        await hooks.enqueue(uow, events)

    return Consumer(name="loyalty.webhooks", handle=handle, types=EVENT_TYPES)
