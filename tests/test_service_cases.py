"""Cases through the API: open, converse, change, solve; automatic cases from other
features' events; SLA escalation; the customer's chat; export and erasure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from conftest import AppClient, app_client
from kunde.core.clock import FrozenClock
from kunde.core.events import Event
from kunde.kernel import Kernel
from kunde.profiles.service import ProfileService
from kunde.service import handlers, privacy
from kunde.service.service import CaseService
from kunde.store.consumers import ConsumerRunner


def service_features() -> list[Any]:
    """The features these tests exercise over HTTP (peers are reached through services)."""
    from kunde.access.feature import FEATURE as access
    from kunde.service.feature import FEATURE as service
    from kunde.web.feature import FEATURE as web

    return [access, web, service]


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[AppClient]:
    async with app_client(kernel, features=service_features()) as c:
        yield c


async def drain(kernel: Kernel) -> None:
    await ConsumerRunner(kernel.db, kernel.log, handlers.consumers(kernel),
                         lambda: frozenset(range(kernel.settings.partitions))).drain()


async def customer(kernel: Kernel, email: str, first_name: str = "Mia") -> str:
    return await kernel.service(ProfileService).ensure_customer(
        {"email": email}, "web", traits={"first_name": first_name})


async def test_case_lifecycle_over_the_api(kernel: Kernel, client: httpx.AsyncClient,
                                           admin_headers: dict[str, str]) -> None:
    cid = await customer(kernel, "mia@example.com")
    r = await client.post("/v1/service/cases", headers=admin_headers, json={
        "customer_id": cid, "subject": "Boots too small", "body": "Called in, wants 43",
        "category": "return", "priority": "high", "tags": ["size"]})
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["queue"] == "returns" and case["status"] == "new"
    assert case["subject"] == "Boots too small" and case["subject_tag"].startswith("[K-")
    case_id = case["id"]

    r = await client.post(f"/v1/service/cases/{case_id}/replies", headers=admin_headers,
                          json={"body": "Hello Mia, we will swap them."})
    assert r.status_code == 201, r.text
    r = await client.get(f"/v1/service/cases/{case_id}", headers=admin_headers)
    body = r.json()
    assert body["status"] == "pending" and body["first_responded_at"] is not None
    assert [m["direction"] for m in body["thread"]] == ["note", "out"]
    # The reply went to messaging (queued, or recorded why not): never silently dropped.
    assert body["thread"][1]["delivery"].startswith(("queued:", "unavailable"))

    r = await client.patch(f"/v1/service/cases/{case_id}", headers=admin_headers,
                           json={"status": "closed"})
    assert r.status_code == 409 and r.json()["code"] == "service.invalid_transition"
    r = await client.patch(f"/v1/service/cases/{case_id}", headers=admin_headers,
                           json={"status": "solved", "assignee_id": "u1",
                                 "assignee_name": "Ada"})
    assert r.json()["status"] == "solved" and r.json()["assignee_name"] == "Ada"
    r = await client.get("/v1/service/cases", headers=admin_headers,
                         params={"customer_id": cid})
    assert [c["id"] for c in r.json()] == [case_id]
    # Unknown fields are refused (no mass assignment).
    r = await client.post("/v1/service/cases", headers=admin_headers,
                          json={"subject": "x", "status": "solved"})
    assert r.status_code == 400


async def test_message_lands_on_the_customers_timeline(kernel: Kernel) -> None:
    cid = await customer(kernel, "tl@example.com")
    cases = kernel.service(CaseService)
    from kunde.service.service import Actor, NewCase

    case_id = await cases.open_case(NewCase(channel="portal", subject="Hi", customer_id=cid),
                                    Actor("customer", cid, "customer"), body="Where is it?")
    async with kernel.db.read() as conn:
        evs = await kernel.log.read(conn, subject_id=cid,
                                    types=["service.case_opened", "service.message_added"])
    assert [e.type for e in evs] == ["service.case_opened", "service.message_added"]
    assert evs[1].payload is not None and evs[1].payload["snippet"] == "Where is it?"
    assert evs[1].payload["case_id"] == case_id


async def test_automatic_cases_from_events_once_per_cause(kernel: Kernel) -> None:
    cid = await customer(kernel, "late@example.com")
    async with kernel.db.transaction() as uow:
        for _ in range(2):  # a redelivered event must not open a second case
            uow.emit(Event.new("fulfilment.delay_detected", {
                "shipment_id": "s1", "order_id": "o1", "reason": "carrier", "needs_case": True,
                "promised_date": "2026-11-20", "eta": "2026-11-24"}, subject_id=cid))
        uow.emit(Event.new("fulfilment.delay_detected", {
            "shipment_id": "s2", "order_id": "o2", "reason": "minor",
            "promised_date": "2026-11-20", "eta": "2026-11-21"}, subject_id=cid))
        uow.emit(Event.new("segments.entered", {"segment_id": "g1", "name": "At-risk VIP"},
                           subject_id=cid))
        uow.emit(Event.new("personalisation.scores_computed", {
            "clv_minor": 10_000, "currency": "EUR", "p_alive": 0.2, "churn_risk": "high"},
            subject_id=cid))  # at risk, but not a VIP: no case
        uow.emit(Event.new("personalisation.scores_computed", {
            "clv_minor": 250_000, "currency": "EUR", "p_alive": 0.2, "churn_risk": "high"},
            subject_id=cid))
        uow.emit(Event.new("commerce.refund_failed", {
            "order_id": "o3", "refund_id": "r1", "amount_minor": 1200, "currency": "EUR",
            "error": "card expired"}, subject_id=cid))
    await drain(kernel)
    await drain(kernel)
    cases = await kernel.service(CaseService).list_cases(customer_id=cid)
    by_queue = sorted((c["queue"], c["shipment_id"]) for c in cases)
    assert by_queue == [("billing", None), ("delivery", "s1"), ("vip", None), ("vip", None)]
    delay = next(c for c in cases if c["queue"] == "delivery")
    thread = await kernel.service(CaseService).thread(delay["id"])
    assert "promised 2026-11-20" in thread[0]["body"] and thread[0]["direction"] == "note"


async def test_causes_and_tokens_are_unique_across_customers(kernel: Kernel) -> None:
    import sqlalchemy as sa

    from kunde.service import keys
    from kunde.service.feedback import FeedbackService
    from kunde.service.service import NewCase
    from kunde.service.tables import service_cases, service_feedback

    # After a merge, a redelivered event names the survivor: still one case, one ask.
    merged = await customer(kernel, "merged@example.com")
    survivor = await customer(kernel, "survivor@example.com")
    cases = kernel.service(CaseService)
    feedback = kernel.service(FeedbackService)
    opened = []
    for cid in (merged, survivor):
        async with kernel.db.transaction() as uow:
            opened.append(await cases.open_in(uow, NewCase(
                channel="system", subject="Late", customer_id=cid, cause="delay:s9")))
            await feedback.request_in(uow, customer_id=cid, kind="csat",
                                      touchpoint="case_solved", cause="csat:c9")
    assert opened[1] == (opened[0][0], False)
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(service_cases.c.id, service_cases.c.token)
                                   .where(service_cases.c.cause == "delay:s9"))).all()
        asks = (await conn.execute(sa.select(service_feedback.c.customer_id).where(
            service_feedback.c.cause == "csat:c9"))).scalars().all()
    assert [r.id for r in rows] == [opened[0][0]] and asks == [merged]
    # The case holds its token and cause in service_keys; retention releases both.
    async with kernel.db.transaction() as uow:
        assert await keys.holder(uow, keys.case_token(rows[0].token)) == rows[0].id
        await uow.execute(service_cases.update().values(
            status="closed", updated_at=kernel.clock.now() - timedelta(days=5000)))
        await privacy.purge(kernel, uow, "cases", kernel.clock.now() - timedelta(days=1),
                            frozenset())
        assert await keys.holder(uow, keys.case_cause("delay:s9")) is None
        assert await keys.holder(uow, keys.case_token(rows[0].token)) is None


async def test_sla_escalation_raises_priority_once(kernel: Kernel) -> None:
    from kunde.service.service import NewCase

    clock = FrozenClock(kernel.clock.now())
    kernel.clock = clock
    cid = await customer(kernel, "sla@example.com")
    case_id = await kernel.service(CaseService).open_case(
        NewCase(channel="staff", subject="Urgent", customer_id=cid, priority="high"))
    assert await handlers.escalate_at_risk(kernel) == 0
    clock.advance(timedelta(hours=3, minutes=20))  # first response due at 4 h: at risk
    assert await handlers.escalate_at_risk(kernel) == 1
    assert await handlers.escalate_at_risk(kernel) == 0
    case = await kernel.service(CaseService).get_case(case_id)
    assert case["priority"] == "urgent" and "sla-risk" in case["tags"]
    activity = await kernel.service(CaseService).activity(case_id)
    assert activity[-1]["action"] == "escalated"
    assert activity[-1]["detail"]["timer"] == "first_response"


async def test_customer_chat_only_reaches_own_cases(kernel: Kernel,
                                                    client: httpx.AsyncClient) -> None:
    mia = await customer(kernel, "chat-mia@example.com")
    bob = await customer(kernel, "chat-bob@example.com", "Bob")
    mia_h = {"Authorization": f"Bearer {kernel.access.issue_customer_token(mia)}"}
    bob_h = {"Authorization": f"Bearer {kernel.access.issue_customer_token(bob)}"}
    r = await client.post("/v1/service/chat", headers=mia_h, json={"body": "Is it in stock?"})
    assert r.status_code == 201, r.text
    case_id = r.json()["case_id"]
    r = await client.post("/v1/service/chat", headers=mia_h,
                          json={"case_id": case_id, "body": "Size 38"})
    assert r.status_code == 201
    r = await client.get(f"/v1/service/chat/{case_id}", headers=mia_h)
    assert [m["body"] for m in r.json()["messages"]] == ["Is it in stock?", "Size 38"]
    r = await client.get(f"/v1/service/chat/{case_id}", headers=bob_h)
    assert r.status_code == 404
    r = await client.post("/v1/service/chat", headers=bob_h,
                          json={"case_id": case_id, "body": "hijack"})
    assert r.status_code == 404
    r = await client.get("/v1/service/cases", headers=mia_h)
    assert r.status_code == 403


async def test_export_and_erase(kernel: Kernel) -> None:
    from kunde.service.service import Actor, NewCase

    cid = await customer(kernel, "gdpr@example.com")
    cases = kernel.service(CaseService)
    case_id = await cases.open_case(NewCase(channel="portal", subject="My data",
                                            customer_id=cid),
                                    Actor("customer", cid, "customer"), body="Secret text")
    exported = await privacy.export(kernel, [cid])
    assert exported["cases"][0]["messages"][0]["body"] == "Secret text"
    async with kernel.db.transaction() as uow:
        counts = await privacy.erase(kernel, uow, [cid])
    assert counts["service_messages_deleted"] == 1
    assert counts["service_cases_pseudonymised"] == 1
    case = await cases.get_case(case_id)
    assert case["customer_id"] is None and case["subject"] is None
    assert await cases.thread(case_id) == []


@pytest.mark.parametrize("bad", [{"priority": "whenever"}, {"channel": "fax"}])
async def test_invalid_cases_are_refused(kernel: Kernel, bad: dict[str, str]) -> None:
    from kunde.service.errors import InvalidCase
    from kunde.service.service import NewCase

    with pytest.raises(InvalidCase):
        await kernel.service(CaseService).open_case(
            NewCase(**{"channel": "staff", "subject": "x", **bad}))
