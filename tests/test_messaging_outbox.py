"""The outbox against a real SMTP server (aiosmtpd) and a real webhook receiver."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import test_settings as make_settings
from kunde.core.clock import FrozenClock
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.messaging import signing
from kunde.messaging.service import MessagingService
from kunde.messaging.tables import messages
from kunde.settings import Settings
from kunde.store.tables import events
from mail_helpers import Smtp

NOON = datetime(2026, 1, 12, 12, 0, tzinfo=UTC)  # a Monday, 13:00 in Copenhagen


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp: Smtp) -> Settings:
    return make_settings(database_url, tmp_path, smtp_port=smtp.port)


@pytest.fixture
def clock(kernel: Kernel) -> FrozenClock:
    kernel.clock = FrozenClock(NOON)
    return kernel.clock


async def queue(kernel: Kernel, customer: str, key: str, **kw: Any) -> str | None:
    service = kernel.service(MessagingService)
    async with kernel.db.transaction() as uow:
        return await service.enqueue(
            uow, customer_id=customer, template=kw.pop("template", "shipped"),
            context={"email": "ada@example.com", "order_number": "K-1", "carrier": "PostNord",
                     "tracking_url": "https://x/track/t", **kw.pop("context", {})},
            idempotency_key=key, **kw)


async def statuses(kernel: Kernel) -> list[tuple[str, int]]:
    async with kernel.db.read() as conn:
        rows = await conn.execute(sa.select(messages.c.status, messages.c.attempts)
                                  .order_by(messages.c.created_at))
        return [(r.status, r.attempts) for r in rows]


async def test_sends_archives_and_records_on_timeline(kernel: Kernel, smtp: Smtp,
                                                      clock: FrozenClock) -> None:
    customer = new_id()
    mid = await queue(kernel, customer, "k1", locale="da-DK")
    again = await queue(kernel, customer, "k1", locale="da-DK")
    assert mid is not None and again == mid
    assert await statuses(kernel) == [("queued", 0)]
    summary = await kernel.service(MessagingService).dispatch_due()
    assert summary.startswith("sent 1")
    assert len(smtp.inbox.mails) == 1
    mail = smtp.inbox.mails[0]
    assert mail.rcpt_tos == ["ada@example.com"]
    assert b"er p\xc3\xa5 vej" in mail.content or b"=C3=A5" in mail.content \
        or b"Din ordre" in mail.content
    archive = await kernel.service(MessagingService).archive([customer])
    assert archive[0]["status"] == "sent" and archive[0]["locale"] == "da"
    assert "PostNord" in archive[0]["body"] and archive[0]["recipient"] == "ada@example.com"
    # The body is stored sealed, never in clear.
    async with kernel.db.read() as conn:
        raw = (await conn.execute(sa.select(messages.c.body))).scalar_one()
        assert b"PostNord" not in raw
        types = (await conn.execute(sa.select(events.c.type, events.c.subject_id))).all()
    assert ("messaging.message_sent", customer) in [(t, s) for t, s in types]


async def test_a_key_sends_once_across_customer_records(kernel: Kernel, smtp: Smtp,
                                                        clock: FrozenClock) -> None:
    # A retry after a merge names the survivor: the key was used, nothing more is sent.
    merged, survivor = new_id(), new_id()
    mid = await queue(kernel, merged, "order_confirmation:o-1")
    assert await queue(kernel, survivor, "order_confirmation:o-1") == mid
    assert await statuses(kernel) == [("queued", 0)]
    # Erasure releases the keys of the messages it deletes.
    async with kernel.db.transaction() as uow:
        assert await kernel.service(MessagingService).erase(uow, [merged]) == {"messages": 1}
    assert await queue(kernel, survivor, "order_confirmation:o-1") == mid
    assert await statuses(kernel) == [("queued", 0)]


async def test_smtp_down_waits_in_outbox_then_goes_out(kernel: Kernel, smtp: Smtp,
                                                       clock: FrozenClock) -> None:
    service = kernel.service(MessagingService)
    customer = new_id()
    smtp.stop()
    for i in range(3):
        await queue(kernel, customer, f"down-{i}")
    started = asyncio.get_running_loop().time()
    for _ in range(service.policy.breaker_threshold):
        clock.advance(timedelta(minutes=5))  # past each back-off
        await service.dispatch_due()
    # Every message is still waiting, none lost; the breaker is open so we stop trying.
    assert all(s == "queued" for s, _ in await statuses(kernel))
    assert service.breakers.get("smtp").state == "open"
    attempts_while_open = [a for _, a in await statuses(kernel)]
    clock.advance(timedelta(seconds=10))
    await service.dispatch_due()
    assert [a for _, a in await statuses(kernel)] == attempts_while_open
    # After the cool-down a single trial message goes; it fails and the breaker re-opens.
    clock.advance(timedelta(minutes=5))
    await service.dispatch_due()
    assert sum(a for _, a in await statuses(kernel)) == sum(attempts_while_open) + 1
    assert service.breakers.get("smtp").state == "open"
    assert asyncio.get_running_loop().time() - started < 10
    smtp.start()
    clock.advance(timedelta(hours=2))  # past back-off and breaker cool-down
    await service.dispatch_due()
    assert [s for s, _ in await statuses(kernel)] == ["sent"] * 3
    assert len(smtp.inbox.mails) == 3
    assert service.breakers.get("smtp").state == "closed"


async def test_marketing_needs_consent_and_quiet_hours_delay(kernel: Kernel, smtp: Smtp,
                                                             clock: FrozenClock) -> None:
    service = kernel.service(MessagingService)
    customer = new_id()
    # No consent recorded for marketing: suppressed, nothing queued.
    assert await queue(kernel, customer, "m1", purpose="marketing_email") is None
    assert await statuses(kernel) == []
    # A proactive service message at 23:30 local waits until 08:00.
    clock.advance(timedelta(hours=10, minutes=30))
    assert await queue(kernel, customer, "s1", template="delay_apology", purpose="service",
                       context={"promised_date": "2026-01-12"}) is not None
    await service.dispatch_due()
    assert smtp.inbox.mails == []
    clock.advance(timedelta(hours=8, minutes=31))
    await service.dispatch_due()
    assert len(smtp.inbox.mails) == 1


async def test_no_address_fails_permanently(kernel: Kernel, smtp: Smtp,
                                            clock: FrozenClock) -> None:
    service = kernel.service(MessagingService)
    async with kernel.db.transaction() as uow:
        await service.enqueue(uow, customer_id=new_id(), template="shipped", context={},
                              idempotency_key="noaddr")
    await service.dispatch_due()
    assert await statuses(kernel) == [("failed", 1)]


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def test_webhook_channel_is_signed(kernel: Kernel, smtp: Smtp,
                                         clock: FrozenClock) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        service = kernel.service(MessagingService)
        secret = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="
        await service.add_endpoint("app-push", f"http://127.0.0.1:{server.server_port}/in",
                                   secret)
        customer = new_id()
        await queue(kernel, customer, "w1", channel="webhook")
        await service.dispatch_due()
        hdrs, body = _Receiver.received[-1]
        import time
        msg_id, _ = signing.verify([secret], hdrs, body, now=time.time())
        assert msg_id and b'"template":"shipped"' in body
        assert await statuses(kernel) == [("sent", 1)]
    finally:
        server.shutdown()


async def test_consent_and_profile_come_from_profiles(kernel: Kernel, smtp: Smtp,
                                                      clock: FrozenClock) -> None:
    from kunde.profiles.service import ProfileService
    from kunde.profiles.service_consent import ConsentService

    service = kernel.service(MessagingService)
    cid = await kernel.service(ProfileService).ensure_customer(
        {"email": "nina@example.nl"}, "web", traits={"first_name": "Nina", "locale": "nl-NL"})
    async with kernel.db.transaction() as uow:
        assert await service.enqueue(uow, customer_id=cid, template="shipped",
                                     context={"order_number": "K-9"},
                                     purpose="marketing_email", idempotency_key="mk1") is None
    await kernel.service(ConsentService).grant(cid, "marketing_email", method="checkbox",
                                               channel="web", text_version="v1", actor="test")
    async with kernel.db.transaction() as uow:
        assert await service.enqueue(uow, customer_id=cid, template="shipped",
                                     context={"order_number": "K-9", "carrier": "DHL",
                                              "tracking_url": "https://x/t"},
                                     purpose="marketing_email",
                                     idempotency_key="mk2") is not None
    await service.dispatch_due()
    mail = smtp.inbox.mails[0]
    assert mail.rcpt_tos == ["nina@example.nl"]
    archive = await service.archive([cid])
    assert archive[0]["locale"] == "nl" and "Hallo Nina" in archive[0]["body"]


async def test_order_confirmation_from_commerce_event(kernel: Kernel, smtp: Smtp,
                                                      clock: FrozenClock) -> None:
    from kunde.core.events import Event
    from kunde.messaging.handlers import consumers
    from kunde.profiles.service import ProfileService
    from kunde.store.consumers import ConsumerRunner

    cid = await kernel.service(ProfileService).ensure_customer({"email": "o@example.de"}, "web")
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("commerce.order_placed", {
            "order_id": "o-1", "number": "K-100", "customer_id": cid, "currency": "EUR",
            "external": False, "lines": [{"title": "Boots", "quantity": 1}],
            "total_minor": 15999, "promised_date": "2030-01-03"}, subject_id=cid))
    runner = ConsumerRunner(kernel.db, kernel.log, consumers(kernel),
                            lambda: frozenset(range(kernel.settings.partitions)))
    await runner.drain()
    await runner.drain()  # a second delivery changes nothing
    await kernel.service(MessagingService).dispatch_due()
    assert len(smtp.inbox.mails) == 1
    archive = await kernel.service(MessagingService).archive([cid])
    assert "159.99 EUR" in archive[0]["body"] and archive[0]["template"] == \
        "order_confirmation"


async def test_quiet_hours_in_the_customers_time_zone(kernel: Kernel, smtp: Smtp,
                                                      clock: FrozenClock) -> None:
    from kunde.profiles.service import ProfileService

    service = kernel.service(MessagingService)
    # Noon UTC is 01:00 in Auckland (summer time): a service message waits until 08:00.
    cid = await kernel.service(ProfileService).ensure_customer(
        {"email": "kiri@example.nz"}, "web", traits={"timezone": "Pacific/Auckland"})
    async with kernel.db.transaction() as uow:
        await service.enqueue(uow, customer_id=cid, template="delay_apology",
                              context={"order_number": "K-7", "promised_date": "2026-01-12",
                                       "tracking_url": "https://x/t"},
                              purpose="service", idempotency_key="nz1")
    await service.dispatch_due()
    assert smtp.inbox.mails == [] and await statuses(kernel) == [("queued", 0)]
    clock.advance(timedelta(hours=7, minutes=1))  # 08:01 in Auckland
    await service.dispatch_due()
    assert len(smtp.inbox.mails) == 1
