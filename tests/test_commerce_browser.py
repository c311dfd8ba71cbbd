"""Orders in a real browser: the console order list and page; the portal's "My orders"
on a phone-sized screen (390x844) and on a desktop."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import LiveServer, console_login
from kunde.commerce import demo
from kunde.commerce.service_orders import OrderService
from kunde.kernel import Kernel

pytestmark = pytest.mark.browser


async def test_console_orders_and_refund(browser: Any, live_server: LiveServer,
                                         kernel: Kernel) -> None:
    await demo.load(kernel)
    await kernel.access.create_user("ada@shop.example", "Ada", "agent", "correct-horse-1")
    paid = (await kernel.service(OrderService).search(status="paid", external=False,
                                                       limit=1))[0]
    page = await browser.new_page()
    await console_login(page, live_server.url, "ada@shop.example", "correct-horse-1")
    await page.click("nav >> text=Orders")
    await page.wait_for_load_state("networkidle")
    assert await page.text_content("h1") == "Orders"
    await page.select_option("select[name=status]", "paid")
    await page.click("form.filters button")
    await page.wait_for_load_state("networkidle")
    assert "status=paid" in page.url
    await page.click(f"text={paid['number']}")
    await page.wait_for_load_state("networkidle")
    assert paid["number"] in (await page.text_content("h1") or "")
    assert await page.is_visible("h2:has-text('Payments')")
    assert await page.is_visible("td:has-text('captured')")

    await page.fill("input[name=amount]", "5.00")
    await page.fill("input[name=reason]", "scratched on arrival")
    await page.click("form.refund button")
    await page.wait_for_load_state("networkidle")
    assert await page.is_visible("text=Refund succeeded")
    assert await page.is_visible("td:has-text('scratched on arrival')")
    got = await kernel.service(OrderService).get_order(paid["order_id"])
    assert got["refunded_minor"] == 500 and got["status"] == "partially_refunded"


@pytest.mark.parametrize("viewport", [{"width": 390, "height": 844},
                                      {"width": 1280, "height": 800}],
                         ids=["phone", "desktop"])
async def test_portal_my_orders(browser: Any, live_server: LiveServer, kernel: Kernel,
                                viewport: dict[str, int]) -> None:
    await demo.load(kernel)
    refunded = (await kernel.service(OrderService).search(status="refunded", limit=1))[0]
    token = kernel.access.issue_customer_token(refunded["customer_id"])
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    await page.goto(f"{live_server.url}/portal/enter?token={token}")
    await page.click("nav >> text=My orders")
    await page.wait_for_load_state("networkidle")
    assert await page.text_content("h1") == "My orders"
    card = page.locator(f".order-cards a:has-text('{refunded['number']}')")
    box = await card.bounding_box()
    assert box is not None and box["width"] <= viewport["width"]
    # Nothing overflows sideways on a phone.
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= viewport["width"]
    await card.click()
    await page.wait_for_load_state("networkidle")
    assert refunded["number"] in (await page.text_content("h1") or "")
    assert await page.is_visible("text=to your original payment")
    assert await page.is_visible("h2:has-text('What happened')")
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= viewport["width"]
    await context.close()
