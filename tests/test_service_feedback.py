"""Feedback from touchpoint to answer to report: CSAT after a solved case, NPS after a
delivery or every N orders, answered once by a tokenised link, detractors followed up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa

from conftest import AppClient, app_client
from kunde.core.events import Event
from kunde.kernel import Kernel
from kunde.service.feedback import FeedbackService
from kunde.service.service import Actor, CaseService, NewCase
from kunde.service.tables import service_feedback
from test_service_cases import customer, drain, service_features

AGENT = Actor("staff", "a1", "Ada")


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[AppClient]:
    async with app_client(kernel, features=service_features()) as c:
        yield c


async def asked(kernel: Kernel, customer_id: str) -> list[tuple[str, str]]:
    async with kernel.db.read() as conn:
        rows = await conn.execute(sa.select(service_feedback.c.kind, service_feedback.c.touchpoint)
                                  .where(service_feedback.c.customer_id == customer_id)
                                  .order_by(service_feedback.c.sent_at))
        return [(r.kind, r.touchpoint) for r in rows]


async def test_touchpoints_ask_within_fatigue_limits(kernel: Kernel) -> None:
    cid = await customer(kernel, "fb@example.com")
    cases = kernel.service(CaseService)
    case_id = await cases.open_case(NewCase(channel="portal", subject="Q", customer_id=cid),
                                    Actor("customer", cid, "customer"), body="Hi")
    await cases.reply(case_id, AGENT, "Answer")
    await cases.update(case_id, AGENT, status="solved")
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("fulfilment.shipment_delivered",
                           {"shipment_id": "s1", "order_id": "o1"}, subject_id=cid))
        uow.emit(Event.new("fulfilment.shipment_delivered",
                           {"shipment_id": "s2", "order_id": "o2"}, subject_id=cid))
    await drain(kernel)
    await drain(kernel)  # redelivery asks nothing twice
    # CSAT for the case; NPS after the first delivery; the second delivery is inside the
    # fatigue window, so neither NPS nor a review prompt goes out.
    assert await asked(kernel, cid) == [("csat", "case_solved"), ("nps", "delivery")]
    async with kernel.db.read() as conn:
        deliveries = (await conn.execute(sa.select(service_feedback.c.delivery))).scalars().all()
    assert all(d and d.startswith(("queued:", "suppressed", "unavailable")) for d in deliveries)


async def test_nps_every_n_orders(kernel: Kernel) -> None:
    cid = await customer(kernel, "orders@example.com")
    every = kernel.service(FeedbackService).policy.nps_every_orders
    async with kernel.db.transaction() as uow:
        for i in range(every):
            uow.emit(Event.new("commerce.order_placed", {"order_id": f"o{i}"}, subject_id=cid))
        uow.emit(Event.new("commerce.order_placed", {"order_id": "o0"}, subject_id=cid))
    await drain(kernel)
    assert await asked(kernel, cid) == [("nps", "orders")]


async def test_answer_once_for_its_own_touchpoint_then_report(
        kernel: Kernel, client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    cid = await customer(kernel, "answer@example.com")
    feedback = kernel.service(FeedbackService)
    async with kernel.db.transaction() as uow:
        nps_token = await feedback.request_in(uow, customer_id=cid, kind="nps",
                                              touchpoint="delivery", cause="nps:test")
        csat_token = await feedback.request_in(uow, customer_id=cid, kind="csat",
                                               touchpoint="case_solved", cause="csat:test")
    assert nps_token and csat_token

    page = await client.get(f"/feedback/{nps_token}")
    assert page.status_code == 200 and "recommend us" in page.text
    r = await client.post(f"/v1/service/feedback/{csat_token}", json={"score": 9, "kind": "nps"})
    assert r.status_code == 404 and r.json()["code"] == "service.feedback_link_invalid"
    r = await client.post(f"/v1/service/feedback/{nps_token}", json={"score": 11})
    assert r.status_code == 422
    r = await client.post(f"/v1/service/feedback/{nps_token}",
                          json={"score": 3, "comment": "Late twice", "kind": "nps"})
    assert r.status_code == 201, r.text
    follow_up = r.json()["follow_up_case_id"]
    assert follow_up
    r = await client.post(f"/v1/service/feedback/{nps_token}", json={"score": 10})
    assert r.status_code == 409 and r.json()["code"] == "service.feedback_already_given"
    r = await client.post("/v1/service/feedback/not-a-token", json={"score": 10})
    assert r.status_code == 404
    r = await client.post(f"/v1/service/feedback/{csat_token}", json={"score": 5})
    assert r.json()["follow_up_case_id"] is None

    case = await kernel.service(CaseService).get_case(follow_up)
    assert case["customer_id"] == cid and "detractor" in case["tags"]
    assert "Late twice" in (await kernel.service(CaseService).thread(follow_up))[0]["body"]
    async with kernel.db.read() as conn:
        given = await kernel.log.read(conn, subject_id=cid, types=["service.feedback_given"])
    assert [(e.payload or {}).get("score") for e in given] == [3, 5]
    assert (given[0].payload or {})["touchpoint"] == "delivery"

    r = await client.get("/v1/service/reports", headers=admin_headers)
    report = r.json()
    assert report["nps"] == -100.0 and report["csat_pct"] == 100.0
    assert report["nps_comments"][0]["comment"] == "Late twice"
    assert report["by_status"]["new"] == 1  # the follow-up case
