"""The agent workspace end to end in a real browser: queue, case view with panels, a
macro, a reply, a status change, the reports; then the customer answers the CSAT link
without logging in. One test, so the server starts once."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from conftest import LiveServer, console_login, free_port, start_server
from kunde.kernel import Kernel
from kunde.service.feedback import FeedbackService
from kunde.service.service import Actor, CaseService, NewCase
from test_service_cases import customer

pytestmark = pytest.mark.browser


def _send(port: int, msg: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(msg)


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The browser flow runs on SQLite only: the pages and services are the same on both
    backends and the API tests cover PostgreSQL; one server start keeps the service suite
    inside its time budget."""
    return str(request.param)


@pytest.fixture
def live_server(database_url: str, tmp_path: Path, kernel: Kernel) -> Iterator[LiveServer]:
    """`kunde serve` with its inbound SMTP server on (KUNDE_INBOUND_SMTP_PORT)."""
    server = start_server({"KUNDE_DATABASE_URL": database_url,
                           "KUNDE_INBOUND_SMTP_PORT": str(free_port())}, tmp_path)
    try:
        yield server
    finally:
        server.stop()


async def test_agent_works_a_case_in_the_browser(browser: Any, live_server: LiveServer,
                                                 kernel: Kernel) -> None:
    await kernel.access.create_user("agent@shop.example", "Ada Agent", "agent",
                                    "correct-horse-1")
    await kernel.access.create_user("analyst@shop.example", "Ann Analyst", "analyst",
                                    "correct-horse-2")
    cid = await customer(kernel, "mia@example.com", "Mia")
    case_id = await kernel.service(CaseService).open_case(
        NewCase(channel="portal", subject="Boots too small", customer_id=cid,
                category="return"),
        Actor("customer", cid, "customer"), body="I got size 41 instead of 43.")

    # The customer writes again by email, to the server's own SMTP port.
    case = await kernel.service(CaseService).get_case(case_id)
    msg = EmailMessage()
    msg["From"], msg["To"] = "Mia <mia@example.com>", "service@shop.example"
    msg["Subject"] = f"Re: {case['subject_tag']} Boots too small"
    msg.set_content("Also: the box was damaged.")
    port = int(live_server.env["KUNDE_INBOUND_SMTP_PORT"])
    await asyncio.to_thread(_send, port, msg)

    page = await browser.new_page()
    await console_login(page, live_server.url, "agent@shop.example", "correct-horse-1")
    await page.click("nav >> text=Service cases")
    await page.wait_for_load_state("networkidle")
    await page.click("text=Boots too small")
    await page.wait_for_load_state("networkidle")
    assert case_id in page.url
    thread = await page.text_content("#thread")
    assert "I got size 41 instead of 43." in thread and "the box was damaged" in thread
    assert "mia@example.com" in await page.text_content("#panel-profile")
    assert "0 orders" in await page.text_content("#panel-orders")
    loyalty = await page.text_content("#panel-loyalty")
    assert "balance" in loyalty or "Not available" in loyalty

    await page.click("text=How to return an item")  # a suggested macro for the category
    await page.wait_for_load_state("networkidle")
    draft = await page.input_value("#reply-body")
    assert draft.startswith("Hello Mia,") and "$first_name" not in draft
    await page.fill("#reply-body", "Hello Mia, a new pair is on its way.")
    await page.click("form[action$='/messages'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "a new pair is on its way" in await page.text_content("#thread")
    await page.select_option("select[name=status]", "solved")
    await page.click("form[action$='/update'] button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert await page.text_content("[data-field=status]") == "solved"
    case = await kernel.service(CaseService).get_case(case_id)
    assert case["status"] == "solved" and case["first_responded_at"] is not None

    await page.click("nav >> text=Service reports")
    await page.wait_for_load_state("networkidle")
    assert await page.locator("svg.chart").count() == 6

    # An analyst sees the reports but not the conversation.
    other = await browser.new_page()
    await console_login(other, live_server.url, "analyst@shop.example", "correct-horse-2")
    response = await other.goto(f"{live_server.url}/console/service/cases/{case_id}")
    assert response.status == 403
    response = await other.goto(f"{live_server.url}/console/service/reports")
    assert response.status == 200

    for path, heading in (("/console/service/macros", "Macros"),
                          ("/console/service/review", "Inbound mail kept for review")):
        await page.goto(f"{live_server.url}{path}")
        assert await page.text_content("h1") == heading

    # The agent adds a Danish macro in the console; a bad variable is refused in place.
    await page.goto(f"{live_server.url}/console/service/macros")
    form = "#macro-form"
    await page.fill(f"{form} input[name=key]", "size-swap")
    await page.fill(f"{form} input[name=locale]", "da")
    await page.select_option(f"{form} select[name=category]", "return")
    await page.fill(f"{form} input[name=title]", "Byt størrelse")
    await page.fill(f"{form} textarea[name=body]", "Hej $first_name, vi bytter $ordernumber.")
    await page.click(f"{form} button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "$ordernumber" in await page.text_content("[role=alert]")
    await page.fill(f"{form} input[name=key]", "size-swap")
    await page.fill(f"{form} input[name=locale]", "da")
    await page.select_option(f"{form} select[name=category]", "return")
    await page.fill(f"{form} input[name=title]", "Byt størrelse")
    await page.fill(f"{form} textarea[name=body]", "Hej $first_name, vi bytter $order_number.")
    await page.click(f"{form} button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "Edit size-swap (da)" in await page.text_content(form)
    assert "Byt størrelse" in await page.text_content("table")

    # The customer continues the conversation in the portal.
    portal = await browser.new_page()
    token = kernel.access.issue_customer_token(cid)
    await portal.goto(f"{live_server.url}/portal/enter?token={token}")
    await portal.goto(f"{live_server.url}/portal/service")
    await portal.click("text=Boots too small")
    await portal.wait_for_load_state("networkidle")
    assert "a new pair is on its way" in await portal.text_content("main")
    await portal.fill("textarea[name=body]", "Thanks, it arrived!")
    await portal.click("button[type=submit]")
    await portal.wait_for_load_state("networkidle")
    assert "Thanks, it arrived!" in await portal.text_content("main")
    reopened = await kernel.service(CaseService).get_case(case_id)
    assert reopened["status"] == "open"  # a customer writing reopens a solved case

    # The customer answers the CSAT survey by its link, without logging in, once.
    async with kernel.db.transaction() as uow:
        token = await kernel.service(FeedbackService).request_in(
            uow, customer_id=cid, kind="csat", touchpoint="case_solved", cause="csat:b1")
    page = await browser.new_page()
    await page.goto(f"{live_server.url}/feedback/{token}")
    await page.check("input[name=score][value='5']")
    await page.fill("textarea[name=comment]", "Lovely help")
    await page.click("button[type=submit]")
    await page.wait_for_load_state("networkidle")
    assert "Thank you" in await page.text_content("h1")
    await page.goto(f"{live_server.url}/feedback/{token}")
    assert "already" in await page.text_content("h1")
