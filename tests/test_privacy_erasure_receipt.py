"""The erasure receipt is e-mailed to the requester (a real aiosmtpd server) in their
language, holds no personal data beyond the address it goes to, and its archive copy is
sealed under a key of its own that is shredded once it is sent: a canary planted in the
customer's name and address is still found nowhere afterwards."""

from __future__ import annotations

import base64
import email
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest

from conftest import AppClient, app_client
from conftest import test_settings as make_settings
from kunde.core.clock import FrozenClock
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.messaging.service import MessagingService
from kunde.privacy.receipts import receipt_subject, seal_receipts
from kunde.settings import Settings
from mail_helpers import Smtp
from test_privacy_canary import assert_stored_nowhere, drain

SUBJECTS = {"en": "Your personal data has been erased",
            "da": "Dine personoplysninger er slettet",
            "de": "Ihre personenbezogenen Daten wurden gelöscht",
            "nl": "Uw persoonsgegevens zijn gewist"}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp: Smtp) -> Settings:
    return make_settings(database_url, tmp_path, smtp_port=smtp.port)


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[AppClient]:
    async with app_client(kernel) as c:
        yield c


async def _customer(kernel: Kernel, client: AppClient, canary: str, *, locale: str,
                    with_email: bool = True) -> str:
    _, write_key = await kernel.access.create_source(f"receipt-{new_id()[:8]}", "web")
    basic = base64.b64encode(f"{write_key}:".encode()).decode()
    traits: dict[str, Any] = {"first_name": canary, "last_name": canary, "locale": locale,
                              "address": {"street": f"{canary} 1", "city": canary}}
    if with_email:
        traits["email"] = f"{canary}@example.org"
    r = await client.post("/v1/identify", headers={"Authorization": f"Basic {basic}"},
                          json={"userId": f"user-{canary}", "messageId": new_id(),
                                "traits": traits})
    assert r.status_code < 300, r.text
    await drain(kernel)
    from kunde.profiles.service import ProfileService

    found = await kernel.service(ProfileService).resolve("user_id", f"user-{canary}")
    assert found
    return str(found)


async def _erase(kernel: Kernel, client: AppClient, customer_id: str,
                 identifiers: dict[str, str] | None = None) -> dict[str, Any]:
    _, admin = await kernel.access.create_api_key(f"dpo-{new_id()[:8]}", ["*"])
    r = await client.post(f"/v1/privacy/customers/{customer_id}/erasures",
                          headers={"Authorization": f"Bearer {admin}"},
                          json={"identifiers": identifiers or {}})
    assert r.status_code == 200 and r.json()["state"] == "done", r.text
    await drain(kernel)
    body: dict[str, Any] = r.json()
    return body


async def _status(kernel: Kernel, client: AppClient, request_id: str) -> dict[str, Any]:
    _, admin = await kernel.access.create_api_key(f"dpo-{new_id()[:8]}", ["privacy:read"])
    r = await client.get(f"/v1/privacy/erasures/{request_id}",
                         headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200, r.text
    receipt: dict[str, Any] = r.json()["receipt"]
    return receipt


def _parsed(mail: Any) -> tuple[str, str]:
    msg = email.message_from_bytes(mail.content)
    subject = str(make_header(decode_header(msg["Subject"])))
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return subject, payload.decode(msg.get_content_charset() or "utf-8")


@pytest.mark.parametrize("locale", ["en", "da-DK", "de-DE", "nl"])
async def test_receipt_is_mailed_in_the_requesters_language_then_sealed(
        kernel: Kernel, client: AppClient, smtp: Smtp, locale: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    canary = f"kq{uuid.uuid4().hex[:16]}"
    customer_id = await _customer(kernel, client, canary, locale=locale)
    erased = await _erase(kernel, client, customer_id)
    request_id = erased["id"]
    delivery = erased["receipt"]["delivery"]
    assert delivery["channel"] == "email" and delivery["status"] == "queued"
    assert canary not in str(erased)

    assert (await kernel.service(MessagingService).dispatch_due()).startswith("sent 1")
    assert len(smtp.inbox.mails) == 1
    mail = smtp.inbox.mails[0]
    assert mail.rcpt_tos == [f"{canary}@example.org"]
    subject, body = _parsed(mail)
    assert subject == SUBJECTS[locale[:2]]
    assert request_id in body and datetime.now(UTC).date().isoformat() in body
    # The address it goes to is the only personal value: no name, no street, no city.
    assert canary not in subject and canary not in body

    # Sent: the receipt's own key is shredded, the request records the delivery.
    assert await seal_receipts(kernel) == 1
    assert await seal_receipts(kernel) == 0
    final = (await _status(kernel, client, request_id))["delivery"]
    assert final["status"] == "sent" and final["sealed_at"]
    kernel.vault.forget_cached(receipt_subject(request_id))
    archived = await kernel.service(MessagingService).get(delivery["message_id"])
    assert archived is not None and archived["status"] == "sent"
    assert archived["recipient"] is None and archived["body"] is None
    assert archived["subject"] is None

    # The canary is nowhere: database, SQLite files, data directory, logs.
    needle = canary.encode()
    kernel.vault.forget_cached(customer_id)
    await assert_stored_nowhere(kernel, needle)
    # Kunde's logs; "mail.log" is aiosmtpd, the recipient's mail server in this test.
    logged = "\n".join(rec.getMessage() + str(rec.__dict__) for rec in caplog.records
                       if not rec.name.startswith("mail.log"))
    assert canary not in logged


async def test_receipt_goes_to_the_address_given_with_the_request(
        kernel: Kernel, client: AppClient, smtp: Smtp) -> None:
    canary = f"kq{uuid.uuid4().hex[:16]}"
    customer_id = await _customer(kernel, client, canary, locale="de", with_email=False)
    erased = await _erase(kernel, client, customer_id,
                          {"email": f"{canary}@requests.example.org"})
    assert erased["receipt"]["delivery"]["status"] == "queued"
    await kernel.service(MessagingService).dispatch_due()
    assert [m.rcpt_tos for m in smtp.inbox.mails] == [[f"{canary}@requests.example.org"]]
    assert _parsed(smtp.inbox.mails[0])[0] == SUBJECTS["de"]


async def test_without_an_address_the_receipt_is_only_recorded(
        kernel: Kernel, client: AppClient, smtp: Smtp) -> None:
    canary = f"kq{uuid.uuid4().hex[:16]}"
    customer_id = await _customer(kernel, client, canary, locale="en", with_email=False)
    erased = await _erase(kernel, client, customer_id)
    assert erased["receipt"]["delivery"] == {
        "channel": None, "status": "not sent: no e-mail address is known"}
    await kernel.service(MessagingService).dispatch_due()
    assert smtp.inbox.mails == [] and await seal_receipts(kernel) == 0


async def test_an_undeliverable_receipt_is_sealed_after_a_week(
        kernel: Kernel, client: AppClient, smtp: Smtp) -> None:
    clock = FrozenClock(datetime.now(UTC))
    kernel.clock = clock
    canary = f"kq{uuid.uuid4().hex[:16]}"
    customer_id = await _customer(kernel, client, canary, locale="nl")
    smtp.stop()
    erased = await _erase(kernel, client, customer_id)
    messaging = kernel.service(MessagingService)
    assert (await messaging.dispatch_due()).endswith("retrying 1")
    assert await seal_receipts(kernel) == 0  # still trying: the address stays sealed
    clock.advance(timedelta(days=8))
    assert await seal_receipts(kernel) == 1
    delivery = (await _status(kernel, client, erased["id"]))["delivery"]
    assert delivery["status"] == "given up"
    # With its key gone the message can never go out: it fails instead of retrying.
    smtp.start()
    messaging.breakers.items.clear()
    await messaging.dispatch_due()
    archived = await messaging.get(delivery["message_id"])
    assert archived is not None and archived["status"] == "failed"
    assert smtp.inbox.mails == []


async def test_restoring_a_backup_shreds_the_receipt_key_again(
        kernel: Kernel, client: AppClient, smtp: Smtp) -> None:
    from kunde.privacy.erasure import reapply_erasures

    canary = f"kq{uuid.uuid4().hex[:16]}"
    customer_id = await _customer(kernel, client, canary, locale="en")
    erased = await _erase(kernel, client, customer_id)
    subject = receipt_subject(erased["id"])
    # As after restoring a backup taken before the receipt went out: its key is still there.
    async with kernel.db.transaction() as uow:
        assert not await kernel.vault.is_shredded(uow, subject)
    await reapply_erasures(kernel)
    async with kernel.db.transaction() as uow:
        assert await kernel.vault.is_shredded(uow, subject)
    # The job then records it as sealed; the mail is never sent.
    assert await seal_receipts(kernel) == 1
    await kernel.service(MessagingService).dispatch_due()
    assert smtp.inbox.mails == []
