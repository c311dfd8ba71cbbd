"""Inbound email through Kunde's own SMTP server, sent by a real SMTP client (smtplib)."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.profiles.service import ProfileService
from kunde.service.inbound import MAX_THREADED_BYTES, InboundMailService
from kunde.service.service import Actor, CaseService
from kunde.service.tables import service_inbound_review

AGENT = Actor("staff", "agent-1", "Ada")



def mail(sender: str, subject: str, body: str, *, message_id: str | None = None,
         in_reply_to: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "service@shop.example"
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body)
    return msg


async def send(port: int, *messages: EmailMessage | bytes, rcpt: str = "service@shop.example"
               ) -> None:
    def _send() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            for m in messages:
                if isinstance(m, bytes):
                    smtp.sendmail("someone@example.com", [rcpt], m)
                else:
                    smtp.send_message(m, to_addrs=[rcpt])

    await asyncio.to_thread(_send)


async def test_email_threads_onto_the_right_case(kernel: Kernel, inbound_port: int) -> None:
    mia = await kernel.service(ProfileService).ensure_customer({"email": "mia@example.com"},
                                                               "web")
    cases = kernel.service(CaseService)
    await send(inbound_port, mail("Mia <MIA@example.com>", "Boots too small", "Size 41, not 43",
                               message_id="<first@mail.example>"))
    [case] = await cases.list_cases(customer_id=mia)
    assert case["channel"] == "email" and case["contact_verified"]
    assert case["subject"] == "Boots too small"

    await cases.reply(case["id"], AGENT, "Sorry! Shall we swap them?")
    out = (await cases.thread(case["id"]))[-1]
    async with kernel.db.read() as conn:
        from kunde.service.tables import service_messages

        reply_id = (await conn.execute(sa.select(service_messages.c.email_message_id).where(
            service_messages.c.id == out["id"]))).scalar_one()
    # A reply by headers, then one only carrying the token in the subject.
    await send(inbound_port,
               mail("mia@example.com", "Re: Boots", "Yes please\n\n> Sorry! Shall we",
                    message_id="<second@mail.example>", in_reply_to=reply_id),
               mail("mia@example.com", f"Re: {case['subject_tag']} Boots", "Thanks!",
                    message_id="<third@mail.example>"))
    # The same mail delivered twice is stored once.
    await send(inbound_port, mail("mia@example.com", "Re: Boots", "Yes please",
                               message_id="<second@mail.example>", in_reply_to=reply_id))
    thread = await cases.thread(case["id"])
    assert [(m["direction"], m["body"]) for m in thread] == [
        ("in", "Size 41, not 43"), ("out", "Sorry! Shall we swap them?"),
        ("in", "Yes please"), ("in", "Thanks!")]
    assert len(await cases.list_cases(customer_id=mia)) == 1
    assert (await cases.get_case(case["id"]))["status"] == "open"


async def test_token_in_the_address_threads(kernel: Kernel, inbound_port: int) -> None:
    cases = kernel.service(CaseService)
    await send(inbound_port, mail("stranger@example.net", "Question", "Do you ship to Norway?"))
    [case] = await cases.list_cases()
    await send(inbound_port, mail("stranger@example.net", "again", "Hello?"),
               rcpt=f"case+{case['token']}@in.shop.example")
    assert [m["body"] for m in await cases.thread(case["id"])] == [
        "Do you ship to Norway?", "Hello?"]


async def test_unknown_sender_gets_an_unverified_case(kernel: Kernel, inbound_port: int) -> None:
    mia = await kernel.service(ProfileService).ensure_customer({"email": "mia@example.com"},
                                                               "web")
    cases = kernel.service(CaseService)
    await send(inbound_port, mail("unknown@example.org", "Hello", "Who am I?"),
               mail("unknown@example.org", "Hello again", "Still me"))
    [case] = await cases.list_cases()
    assert case["customer_id"] is None and not case["contact_verified"]
    assert case["contact_email"] == "unknown@example.org"
    assert "unverified-contact" in case["tags"]
    assert len(await cases.thread(case["id"])) == 2
    assert await cases.list_cases(customer_id=mia) == []
    # An agent verifies the contact: the thread moves under the customer, still readable.
    await cases.link_contact(case["id"], mia, AGENT)
    moved = await cases.get_case(case["id"])
    assert moved["customer_id"] == mia and moved["subject"] == "Hello"
    assert [m["body"] for m in await cases.thread(case["id"])] == ["Who am I?", "Still me"]


async def test_a_reply_from_another_customer_never_lands_on_the_case(
        kernel: Kernel, inbound_port: int) -> None:
    profiles = kernel.service(ProfileService)
    mia = await profiles.ensure_customer({"email": "mia@example.com"}, "web")
    bob = await profiles.ensure_customer({"email": "bob@example.com"}, "web")
    cases = kernel.service(CaseService)
    await send(inbound_port, mail("mia@example.com", "Refund", "Where is my refund?"))
    [mias] = await cases.list_cases(customer_id=mia)
    await send(inbound_port, mail("bob@example.com", f"Re: {mias['subject_tag']}", "Me too",
                               message_id="<bob@mail.example>"),
               mail("eve@example.org", f"Re: {mias['subject_tag']}", "Send it to me"))
    assert len(await cases.thread(mias["id"])) == 1
    [bobs] = await cases.list_cases(customer_id=bob)
    assert "claimed-reply" in bobs["tags"]
    eves = [c for c in await cases.list_cases() if c["customer_id"] is None]
    assert len(eves) == 1 and eves[0]["contact_email"] == "eve@example.org"


async def test_oversized_and_malformed_mail_is_kept_for_review(kernel: Kernel,
                                                               inbound_port: int) -> None:
    big = mail("mia@example.com", "Photos", "x" * (MAX_THREADED_BYTES + 10))
    broken = b"Subject: no sender at all\r\n\r\nhello\r\n"
    await send(inbound_port, big, broken)
    inbound = kernel.service(InboundMailService)
    items = sorted(await inbound.review_items(), key=lambda i: i["reason"])
    assert [i["reason"].split(":")[0] for i in items] == ["malformed", "oversized"]
    raw = await inbound.review_raw(items[0]["id"])
    assert raw is not None and b"no sender at all" in raw
    async with kernel.db.read() as conn:
        blobs = (await conn.execute(sa.select(service_inbound_review.c.raw_enc))).scalars()
        assert all(b"no sender" not in b for b in blobs)  # sealed at rest
    assert await kernel.service(CaseService).list_cases() == []


async def test_mails_arriving_together_are_threaded_as_one_batch(kernel: Kernel) -> None:
    inbound = kernel.service(InboundMailService)
    cases = kernel.service(CaseService)
    await kernel.service(ProfileService).ensure_customer({"email": "mia@example.com"}, "web")
    opened = await inbound.receive(bytes(mail("mia@example.com", "Order", "First",
                                              message_id="<m0@x>")))
    tag = (await cases.get_case(opened["case_id"]))["subject_tag"]
    batch = [mail("mia@example.com", f"Re: {tag}", "Second", message_id="<m1@x>"),
             mail("mia@example.com", "Re:", "Third", message_id="<m2@x>", in_reply_to="<m0@x>"),
             mail("mia@example.com", "Re:", "Third", message_id="<m2@x>", in_reply_to="<m0@x>"),
             mail("new@example.org", "Hello", "Someone new", message_id="<n1@x>"),
             mail("mia@example.com", f"Re: {tag}", "Fourth", message_id="<m3@x>")]
    results = await asyncio.gather(*(inbound.receive(bytes(m)) for m in batch))
    assert [r["outcome"] for r in results] == [
        "threaded", "threaded", "duplicate", "opened", "threaded"]
    assert [m["body"] for m in await cases.thread(opened["case_id"])] == [
        "First", "Second", "Third", "Fourth"]
    assert (await cases.get_case(opened["case_id"]))["status"] == "open"
