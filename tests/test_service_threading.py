"""Replies threaded by headers, end to end: an agent's reply leaves through messaging to a
real SMTP server (aiosmtpd) with a stable Message-ID, a Reply-To on the case's inbound
address and In-Reply-To/References; the customer answers from an ordinary mail client
(smtplib, no case token in the subject) into Kunde's own SMTP server, and the answer lands
on the right case."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage, Message
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import test_settings as make_settings
from kunde.kernel import Kernel
from kunde.messaging.channels import Outgoing
from kunde.messaging.models import thread_headers
from kunde.messaging.service import MessagingService
from kunde.profiles.service import ProfileService
from kunde.service import models
from kunde.service.service import Actor, CaseService, NewCase
from kunde.service.tables import service_messages
from kunde.settings import Settings
from mail_helpers import Smtp
from test_messaging_outbox import queue
from test_service_inbound import mail, send

AGENT = Actor("staff", "a1", "Ada")


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp: Smtp) -> Settings:
    return make_settings(database_url, tmp_path, smtp_port=smtp.port,
                         mail_from="Shop service <service@shop.example>",
                         inbound_mail_domain="In.Shop.Example")



async def sent_reply(kernel: Kernel, smtp: Smtp) -> Message:
    before = len(smtp.inbox.mails)
    assert (await kernel.service(MessagingService).dispatch_due()).startswith("sent 1")
    assert len(smtp.inbox.mails) == before + 1
    return message_from_bytes(smtp.inbox.mails[-1].content)


async def stored_id(kernel: Kernel, message_id: str) -> str:
    async with kernel.db.read() as conn:
        return str((await conn.execute(sa.select(service_messages.c.email_message_id).where(
            service_messages.c.id == message_id))).scalar_one())


def answer(to: Message, sender: str, subject: str, body: str, message_id: str,
           recipient: str) -> EmailMessage:
    """What a mail client sends on "Reply": In-Reply-To and References, quoted text."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg["In-Reply-To"] = str(to["Message-ID"])
    msg["References"] = " ".join(filter(None, [str(to.get("References") or ""),
                                               str(to["Message-ID"])]))
    msg.set_content(f"{body}\n\nOn Tue, Ada wrote:\n> earlier text")
    return msg


async def test_reply_by_headers_lands_on_the_case(kernel: Kernel, smtp: Smtp,
                                                  inbound_port: int) -> None:
    mia = await kernel.service(ProfileService).ensure_customer(
        {"email": "mia@example.com"}, "web", traits={"first_name": "Mia"})
    cases = kernel.service(CaseService)
    # The customer writes in; the agent answers.
    await send(inbound_port, mail("Mia <mia@example.com>", "Boots too small",
                                  "Size 41, not 43", message_id="<m1@mail.example>"))
    [case] = await cases.list_cases(customer_id=mia)
    reply_id = await cases.reply(case["id"], AGENT, "Sorry! Shall we swap them?")
    out = await sent_reply(kernel, smtp)

    token = case["token"]
    assert out["Message-ID"] == await stored_id(kernel, reply_id)
    assert out["Message-ID"] == f"<{reply_id}.{token}@in.shop.example>"
    assert out["Reply-To"] == f"case+{token}@in.shop.example"
    assert out["In-Reply-To"] == "<m1@mail.example>"
    assert out["References"] == "<m1@mail.example>"
    assert out["X-Kunde-Message-Id"]  # messaging's own id is still there

    # Two more mails on another case of another customer, to thread against.
    ole = await kernel.service(ProfileService).ensure_customer({"email": "ole@example.com"},
                                                               "web")
    other = await cases.open_case(NewCase(channel="portal", subject="Invoice",
                                          customer_id=ole),
                                  Actor("customer", ole, "customer"), body="Where is it?")
    await cases.reply(other, AGENT, "Attached.")
    await sent_reply(kernel, smtp)

    # Mia answers from her mail client: no token in the subject, sent to the shop's
    # ordinary address — only the headers say where it belongs.
    await send(inbound_port, answer(out, "mia@example.com", "Re: Boots too small",
                                    "Yes please", "<m2@mail.example>",
                                    "service@shop.example"), rcpt="service@shop.example")
    thread = await cases.thread(case["id"])
    assert [(m["direction"], m["body"]) for m in thread] == [
        ("in", "Size 41, not 43"), ("out", "Sorry! Shall we swap them?"),
        ("in", "Yes please")]
    assert (await cases.get_case(case["id"]))["status"] == "open"

    # The next reply points at her latest mail and carries the whole chain.
    await cases.reply(case["id"], AGENT, "Done, size 41 is on its way.")
    second = await sent_reply(kernel, smtp)
    assert second["In-Reply-To"] == "<m2@mail.example>"
    assert str(second["References"]).split() == [
        "<m1@mail.example>", str(out["Message-ID"]), "<m2@mail.example>"]

    # A client that drops the headers but answers to the Reply-To address still threads.
    plain = mail("mia@example.com", "Thanks", "Thank you!", message_id="<m3@mail.example>")
    await send(inbound_port, plain, rcpt=str(second["Reply-To"]))
    assert [m["body"] for m in await cases.thread(case["id"])][-1] == "Thank you!"
    assert len(await cases.list_cases(customer_id=mia)) == 1
    assert [m["body"] for m in await cases.thread(other)] == ["Where is it?", "Attached."]


async def test_a_header_reply_from_someone_else_opens_its_own_case(
        kernel: Kernel, smtp: Smtp, inbound_port: int) -> None:
    profiles = kernel.service(ProfileService)
    mia = await profiles.ensure_customer({"email": "mia@example.com"}, "web")
    cases = kernel.service(CaseService)
    case_id = await cases.open_case(NewCase(channel="portal", subject="Boots",
                                            customer_id=mia),
                                    Actor("customer", mia, "customer"), body="Size?")
    await cases.reply(case_id, AGENT, "43.")
    out = await sent_reply(kernel, smtp)
    # Started in the portal: nothing to reply to yet, but a Reply-To all the same.
    assert out["In-Reply-To"] is None and out["References"] is None
    assert str(out["Reply-To"]).startswith("case+")

    await send(inbound_port, answer(out, "eve@example.net", "Re: Boots", "Mine now",
                                    "<e1@mail.example>", "service@shop.example"))
    assert [m["body"] for m in await cases.thread(case_id)] == ["Size?", "43."]
    [claimed] = [c for c in await cases.list_cases() if c["id"] != case_id]
    assert "claimed-reply" in claimed["tags"] and not claimed["contact_verified"]


async def test_other_mail_keeps_messagings_own_message_id(kernel: Kernel,
                                                          smtp: Smtp) -> None:
    cid = await kernel.service(ProfileService).ensure_customer({"email": "ada@example.com"},
                                                               "web")
    message_id = await queue(kernel, cid, "shipped:1")
    assert message_id
    out = await sent_reply(kernel, smtp)
    assert message_id in str(out["Message-ID"])
    assert out["Reply-To"] is None and out["In-Reply-To"] is None


def test_thread_headers_take_only_well_formed_values() -> None:
    ok = thread_headers({"message_id": "<a.b@x.example>", "reply_to_local": "case+ABCD2345",
                         "in_reply_to": "<c@d>", "references": ["<c@d>", "nonsense"]},
                        "in.shop.example")
    assert ok == (("Message-ID", "<a.b@x.example>"),
                  ("Reply-To", "case+ABCD2345@in.shop.example"),
                  ("In-Reply-To", "<c@d>"), ("References", "<c@d>"))
    assert thread_headers({"message_id": "<a@b>\r\nBcc: x@y", "reply_to_local": "a@b",
                           "in_reply_to": "<x@y> <z@w>", "references": "<c@d>\nBcc: e"},
                          "x") == (("References", "<c@d>"),)
    assert thread_headers({}, "x") == ()
    assert thread_headers({"references": " ".join(f"<{i}@x>" for i in range(30))},
                          "x")[0][1].split()[0] == "<10@x>"


def test_mail_domain_defaults_to_the_sender_domain() -> None:
    assert models.mail_domain("Shop <Service@Shop.Example>") == "shop.example"
    assert models.mail_domain("kunde@localhost") == "localhost"
    assert models.mail_domain("x@a.example", " in.a.example ") == "in.a.example"
    assert Outgoing("i", "c", "r", "s", "b", "t", "p", "en").headers == ()
