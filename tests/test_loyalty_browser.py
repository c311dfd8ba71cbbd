"""Loyalty in a real browser: console analytics with SVG charts, member view and goodwill,
the programme editor (form and YAML with line-numbered errors), and the customer portal
(points, tier progress, quests, team, redeeming a reward). One test: one server start."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import LiveServer, console_login
from kunde.kernel import Kernel
from kunde.loyalty import demo

pytestmark = pytest.mark.browser


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Pages are the same on both databases; the API and ledger tests cover PostgreSQL."""
    return str(request.param)


async def test_console_and_portal_in_the_browser(browser: Any, live_server: LiveServer,
                                                 kernel: Kernel) -> None:
    await demo.load(kernel)
    ids = [await demo.customer(kernel, email) for email, _ in demo.MEMBERS]
    await kernel.access.create_user("marketer@shop.example", "Mo Marketer", "marketer",
                                    "correct-horse-9")
    page = await browser.new_page()
    await console_login(page, live_server.url, "marketer@shop.example", "correct-horse-9")
    await page.click("nav >> text=Loyalty")
    await page.wait_for_load_state("networkidle")
    assert await page.locator("#chart-liability svg rect").count() >= 2
    assert await page.locator("#chart-tiers svg").count() == 1

    await page.fill("input[name=customer_id]", ids[2])
    await page.click("form[action='/console/loyalty/find'] button")
    await page.wait_for_load_state("networkidle")
    assert "Silver" in await page.text_content("#member-balance")
    await page.fill("input[name=points]", "25")
    await page.fill("input[name=reason]", "parcel arrived late")
    await page.click("form[action$='/goodwill'] button")
    await page.wait_for_load_state("networkidle")
    assert "Granted 25 points." in await page.text_content("[role=status]")
    assert "parcel arrived late" in await page.text_content("#history")

    await page.goto(f"{live_server.url}/console/loyalty/programme")
    await page.fill("#add-rule input[name=id]", "newsletter_read")
    await page.select_option("#add-rule select[name=event]", "ingest.track")
    await page.fill("#add-rule input[name=points]", "3")
    await page.fill("#add-rule input[name=where_field]", "event")
    await page.fill("#add-rule input[name=where_value]", "Newsletter Opened")
    await page.click("#add-rule button")
    await page.wait_for_load_state("networkidle")
    assert "newsletter_read" in await page.input_value("textarea[name=programme]")
    text = await page.input_value("textarea[name=programme]")
    await page.fill("textarea[name=programme]", text.replace("points_name: Stars",
                                                             "points_name: [Stars"))
    await page.click("button[value=preview]")
    await page.wait_for_load_state("networkidle")
    assert "not valid YAML" in await page.text_content("[role=alert]") or \
        "line" in await page.text_content("[role=alert]")

    token = kernel.access.issue_customer_token(ids[5])
    portal = await browser.new_page()
    await portal.goto(f"{live_server.url}/portal/enter?token={token}")
    await portal.goto(f"{live_server.url}/portal/loyalty")
    balance = int(await portal.text_content("#balance") or "0")
    assert balance > 500
    assert "Team" in await portal.text_content("#team")
    assert await portal.locator("#quests li").count() >= 3
    await portal.click("li[data-reward=five_off] button")
    await portal.wait_for_load_state("networkidle")
    assert "Your code:" in await portal.text_content("#message")
    assert int(await portal.text_content("#balance") or "0") == balance - 500
