"""Tracking, returns and the returns queue in a real browser, phone-sized and desktop."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import LiveServer, console_login
from fulfilment_helpers import configure_carriers, customer, kunde_update, paid_order, signed
from kunde.fulfilment.service import FulfilmentService
from kunde.fulfilment.service_returns import ReturnService
from kunde.kernel import Kernel

pytestmark = pytest.mark.browser
PHONE = {"width": 390, "height": 844}


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The browser flow runs on SQLite only: pages and services are the same on both
    backends and the HTTP tests cover PostgreSQL; one server start keeps the suite fast."""
    return str(request.param)


async def delivered(kernel: Kernel, live_server: LiveServer) -> tuple[str, dict[str, Any]]:
    import httpx

    await configure_carriers(kernel)
    cid = await customer(kernel)
    order = await paid_order(kernel, cid)
    shipment = await kernel.service(FulfilmentService).create_shipment(
        order_id=order["order_id"], carrier="kunde", service="parcel", tracking_number="BR1",
        lines={ln["line_id"]: ln["quantity"] for ln in order["lines"]})
    for status, at in (("in_transit", "2030-01-01T09:00:00Z"),
                       ("delivered", "2030-01-02T11:00:00Z")):
        body, hdrs = signed(kunde_update("BR1", status, at, location="Aarhus"))
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{live_server.url}/webhooks/carriers/kunde", content=body,
                                headers=hdrs)
            assert r.status_code == 202
    await kernel.service(FulfilmentService).apply_pending()
    return cid, shipment


async def no_sideways_scroll(page: Any) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page is {width}px wide on a 390px screen"


async def test_phone_tracking_return_and_console_refund(
        browser: Any, live_server: LiveServer, kernel: Kernel) -> None:
    cid, _ = await delivered(kernel, live_server)
    page = await browser.new_page(viewport=PHONE)
    token = kernel.access.issue_customer_token(cid)
    await page.goto(f"{live_server.url}/portal/enter?token={token}")
    await page.click("nav >> text=Parcels")
    await page.wait_for_load_state("networkidle")
    await no_sideways_scroll(page)
    await page.click("text=Track this parcel")
    await page.wait_for_load_state("networkidle")
    assert "/track/" in page.url
    assert await page.text_content(".status") == "Delivered"
    assert await page.locator(".timeline li").count() == 2
    assert await page.is_visible("text=What happens next")
    await no_sideways_scroll(page)

    await page.goto(f"{live_server.url}/portal/returns")
    await no_sideways_scroll(page)
    await page.locator(".return-line").first.locator("select").first.select_option("1")
    await page.locator(".return-line").first.locator("select").nth(1).select_option(
        "too_small")
    await page.click("text=Return selected items")
    await page.wait_for_load_state("networkidle")
    assert "is registered" in await page.text_content("[role=status]")
    assert await page.is_visible("text=Track the return parcel")
    await no_sideways_scroll(page)

    # Staff work the same return in the console queue, on a desktop.
    ret = (await kernel.service(ReturnService).search(customer_ids=[cid]))[0]
    await kernel.access.create_user("agent@shop.example", "Agent", "agent", "correct-horse-2")
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await console_login(page, live_server.url, "agent@shop.example", "correct-horse-2")
    await page.click("nav >> text=Returns")
    await page.wait_for_load_state("networkidle")
    row = page.locator(f"tr[data-rma='{ret['rma']}']")
    await row.locator("text=Refund now").click()
    await page.wait_for_load_state("networkidle")
    await page.goto(f"{live_server.url}/console/returns?status=refunded")
    row = page.locator(f"tr[data-rma='{ret['rma']}']")
    assert "refunded" in await row.text_content()
    assert "on time" in await row.text_content()
    await page.goto(f"{live_server.url}/console/shipments?risk=ok&kind=outbound")
    assert await page.is_visible("text=BR1")
    # The same queue on a phone: usable without sideways scrolling of the page itself.
    await page.set_viewport_size(PHONE)
    await page.goto(f"{live_server.url}/console/returns?status=refunded")
    await no_sideways_scroll(page)
