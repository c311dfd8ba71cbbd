"""Demo data for customer service (idempotent): open cases in several queues, one opened by
a broken delivery promise, a conversation that moved from email to the portal, and
answered CSAT/NPS surveys for the reports."""

from __future__ import annotations

from email.message import EmailMessage

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.core.ids import derived_id
from kunde.kernel import Kernel
from kunde.service.feedback import FeedbackService
from kunde.service.handlers import AutoCases
from kunde.service.inbound import InboundMailService
from kunde.service.macros import MacroService
from kunde.service.peers import has, peer
from kunde.service.service import Actor, CaseService, NewCase
from kunde.service.tables import service_cases

CUSTOMERS = [("mia.demo@example.com", "Mia"), ("jonas.demo@example.com", "Jonas"),
             ("lea.demo@example.com", "Lea"), ("noah.demo@example.com", "Noah"),
             ("emma.demo@example.com", "Emma"), ("paul.demo@example.com", "Paul")]
AGENT = Actor("staff", None, "Agent (demo)")


async def _customer(kernel: Kernel, email: str, first_name: str) -> str:
    profiles = peer(kernel, "profiles")
    if has(profiles, "ensure_customer"):
        assert profiles is not None
        return str(await profiles.ensure_customer({"email": email}, "service"))
    # Without the profiles feature the demo still needs stable customer ids.
    return derived_id("demo.customer", email)


async def load_demo(kernel: Kernel) -> None:
    await kernel.service(MacroService).ensure_defaults()
    cases = kernel.service(CaseService)
    ids = [await _customer(kernel, e, n) for e, n in CUSTOMERS]
    async with kernel.db.read() as conn:
        done = (await conn.execute(sa.select(service_cases.c.id).where(
            service_cases.c.cause == "demo:billing"))).first()
    await _delay_case(kernel, ids[0])
    await _email_then_portal(kernel, ids[1], CUSTOMERS[1][0])
    if done:
        return
    async with kernel.db.transaction() as uow:
        case_id, _ = await cases.open_in(uow, NewCase(
            channel="staff", subject="Charged twice for order 10042", customer_id=ids[2],
            category="payment", priority="high", cause="demo:billing",
            tags=("double-charge",)), AGENT)
        await cases.add_message_in(uow, case_id, direction="note", channel="staff",
                                   actor=AGENT, body="Customer called: card shows two charges.")
        vip, _ = await cases.open_in(uow, NewCase(
            channel="system", subject="VIP at risk of leaving", customer_id=ids[3],
            category="vip", priority="high", cause="demo:vip", tags=("vip", "churn-risk")))
        await cases.add_message_in(uow, vip, direction="note", channel="staff",
                                   actor=Actor("system"),
                                   body="Customer entered the segment At-risk VIP.")
        chat, _ = await cases.open_in(uow, NewCase(
            channel="chat", subject="Does the jacket run small?", customer_id=ids[4],
            cause="demo:chat"), Actor("customer", ids[4], "customer"))
        await cases.add_message_in(uow, chat, direction="in", channel="chat",
                                   actor=Actor("customer", ids[4], "customer"),
                                   body="Does the rain jacket run small? I am usually an M.")
        solved, _ = await cases.open_in(uow, NewCase(
            channel="portal", subject="Where do I find my invoice?", customer_id=ids[5],
            cause="demo:solved"), Actor("customer", ids[5], "customer"))
        await cases.add_message_in(uow, solved, direction="in", channel="portal",
                                   actor=Actor("customer", ids[5], "customer"),
                                   body="I need the invoice for my last order.")
        await cases.add_message_in(uow, solved, direction="out", channel="email",
                                   actor=AGENT, body="It is attached to your order in your "
                                   "account under Orders › Invoice.")
        await cases.update_in(uow, solved, AGENT, status="solved")
    await _feedback(kernel, ids)


async def _delay_case(kernel: Kernel, customer_id: str) -> None:
    """The case a broken delivery promise opens (the same path as the live consumer)."""
    event = Event.new("fulfilment.delay_detected", {
        "shipment_id": "demo-shipment-1", "order_id": "demo-order-1", "needs_case": True,
        "reason": "carrier missed the collection", "promised_date": "2026-11-20",
        "eta": "2026-11-24"}, subject_id=customer_id, source="fulfilment",
        event_id=derived_id("demo.delay"))
    async with kernel.db.transaction() as uow:
        await AutoCases(kernel).handle(uow, [event])


async def _email_then_portal(kernel: Kernel, customer_id: str, email: str) -> None:
    msg = EmailMessage()
    msg["From"] = f"Jonas <{email}>"
    msg["To"] = "service@shop.example"
    msg["Subject"] = "Wrong size delivered"
    msg["Message-ID"] = "<demo-wrong-size-1@mail.example>"
    msg.set_content("Hello, I ordered the boots in 43 and got 41. Can you help?")
    result = await kernel.service(InboundMailService).receive(bytes(msg))
    if result["outcome"] == "duplicate":
        return
    cases = kernel.service(CaseService)
    case_id = result["case_id"]
    case = await cases.get_case(case_id)
    if not case["contact_verified"]:
        await cases.link_contact(case_id, customer_id, AGENT)
    await cases.update(case_id, AGENT, queue="returns")
    await cases.reply(case_id, AGENT, "Sorry about that! You can start a free exchange in "
                      "your account; reply here if anything is unclear.")
    await cases.customer_message(case_id, customer_id, "Thanks, I started the exchange in "
                                 "the portal. Will the new pair ship today?", "portal")


async def _feedback(kernel: Kernel, ids: list[str]) -> None:
    feedback = kernel.service(FeedbackService)
    answers = [("csat", 5, "Quick and friendly, thank you!"), ("csat", 4, ""),
               ("nps", 10, "Love the shop."), ("nps", 8, ""),
               ("nps", 3, "Delivery was late twice."), ("csat", 2, "Took three emails.")]
    for i, (kind, score, comment) in enumerate(answers):
        async with kernel.db.transaction() as uow:
            token = await feedback.request_in(
                uow, customer_id=ids[i % len(ids)], kind=kind,
                touchpoint="case_solved" if kind == "csat" else "delivery",
                cause=f"demo:{kind}:{i}")
        if token:
            await feedback.answer(token, score, comment)
