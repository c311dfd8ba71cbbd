"""Service mail leaves Kunde: an agent's reply and a CSAT request go out through
messaging to a real SMTP server (aiosmtpd) and land in the communication archive."""

from __future__ import annotations

from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import test_settings as make_settings
from kunde.kernel import Kernel
from kunde.messaging.service import MessagingService
from kunde.service.service import Actor, CaseService, NewCase
from kunde.service.tables import service_feedback
from kunde.settings import Settings
from mail_helpers import Smtp
from test_service_cases import customer, drain

AGENT = Actor("staff", "a1", "Ada")


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp: Smtp) -> Settings:
    return make_settings(database_url, tmp_path, smtp_port=smtp.port)


def text_of(mail: Message) -> str:
    part = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "utf-8")


async def test_agent_reply_and_csat_request_are_sent_and_archived(kernel: Kernel,
                                                                  smtp: Smtp) -> None:
    cid = await customer(kernel, "mia@example.com", first_name="Mia")
    cases = kernel.service(CaseService)
    messaging = kernel.service(MessagingService)
    case_id = await cases.open_case(NewCase(channel="portal", subject="Boots too small",
                                            customer_id=cid),
                                    Actor("customer", cid, "customer"), body="Size 43?")
    await cases.reply(case_id, AGENT, "We are sending size 43 today.")
    assert (await messaging.dispatch_due()).startswith("sent 1")
    assert len(smtp.inbox.mails) == 1
    reply = message_from_bytes(smtp.inbox.mails[0].content)
    assert smtp.inbox.mails[0].rcpt_tos == ["mia@example.com"]
    assert "Boots too small" in str(reply["Subject"])
    body = text_of(reply)
    assert "Mia" in body and "We are sending size 43 today." in body and "Ada" in body

    await cases.update(case_id, AGENT, status="solved")
    await drain(kernel)
    async with kernel.db.read() as conn:
        delivery = (await conn.execute(sa.select(service_feedback.c.delivery).where(
            service_feedback.c.customer_id == cid,
            service_feedback.c.kind == "csat"))).scalar_one()
    assert delivery.startswith("queued:")
    assert (await messaging.dispatch_due()).startswith("sent 1")
    assert len(smtp.inbox.mails) == 2
    survey = text_of(message_from_bytes(smtp.inbox.mails[1].content))
    assert f"{kernel.settings.effective_public_url}/feedback/" in survey
    assert "1" in survey and "5" in survey

    archive = await messaging.archive([cid])
    sent = {m["template"]: m for m in archive}
    assert set(sent) == {"service_case_reply", "service_csat_request"}
    assert all(m["status"] == "sent" and m["recipient"] == "mia@example.com"
               for m in archive)
    assert "We are sending size 43 today." in sent["service_case_reply"]["body"]
    assert sent["service_csat_request"]["purpose"] == "transactional"
