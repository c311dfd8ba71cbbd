"""The privacy centre and the staff privacy pages in a real browser, on a real server.

A customer downloads their data (built by the background job) and deletes their account;
an admin sees the request queue with deadlines, searches and verifies the audit log and
runs retention. No page may trip the Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from conftest import LiveServer, console_login
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.kernel import Kernel

pytestmark = pytest.mark.browser


def _watch_csp(page: Any) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text)
            if "Content Security Policy" in m.text else None)
    return problems


async def test_customer_downloads_and_deletes(browser: Any, live_server: LiveServer,
                                              kernel: Kernel) -> None:
    cid = new_id()
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("ingest.track", {"event": "Viewed", "note": "mine"}, subject_id=cid))
    token = kernel.access.issue_customer_token(cid)
    page = await browser.new_page()
    csp = _watch_csp(page)
    await page.goto(f"{live_server.url}/portal/enter?token={token}")
    await page.goto(f"{live_server.url}/portal/privacy")
    assert await page.text_content("h1") == "Privacy centre"
    email = "li[data-purpose=marketing_email]"
    if await page.query_selector(email):  # consents come from profiles
        await page.click(f"{email} button")
        await page.wait_for_selector(f"{email} >> text=Withdraw")
        assert await page.text_content(f"{email} strong") == "allowed"
        await page.click(f"{email} button")
        await page.wait_for_selector(f"{email} >> text=Allow")
        assert await page.text_content(f"{email} strong") == "not allowed"
    await page.click("#request-export")
    await page.wait_for_selector("a.download-json", timeout=30_000)  # page refreshes itself
    href = await page.get_attribute("a.download-json", "href")
    assert href
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        bundle = (await http.get(href)).json()
    assert bundle["customer_id"] == cid and bundle["events"][0]["payload"]["note"] == "mine"

    await page.check("input[name=confirm]")
    await page.click("#delete-account")
    await page.wait_for_selector("#receipt")
    assert "Your account was deleted" in await page.text_content("h1")
    assert await page.text_content("#receipt-id")
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        assert (await http.get(href)).status_code == 404  # the bundle went with the account
    assert csp == []


async def test_staff_queue_audit_and_retention(browser: Any, live_server: LiveServer,
                                               kernel: Kernel) -> None:
    await kernel.access.create_user("dpo@shop.example", "Dana", "admin", "correct-horse-1")
    page = await browser.new_page()
    csp = _watch_csp(page)
    await console_login(page, live_server.url, "dpo@shop.example", "correct-horse-1")
    await page.goto(f"{live_server.url}/console/privacy")
    cid = new_id()
    await page.fill("input[name=customer_id]", cid)
    await page.select_option("select[name=kind]", "export")
    await page.click("#new-request button[type=submit]")
    await page.wait_for_selector("text=Request export recorded")
    row = await page.text_content("#requests tbody")
    assert row and cid in row and "days left" in row

    await page.goto(f"{live_server.url}/console/privacy/audit")
    await page.fill("input[name=subject]", cid)
    await page.click("#audit-search button:not([name])")
    await page.wait_for_load_state("networkidle")
    assert "privacy.export_requested" in (await page.text_content("#audit tbody") or "")
    await page.click("button[name=verify]")
    await page.wait_for_selector("#verify-result")
    assert "Chain intact" in (await page.text_content("#verify-result") or "")

    await page.goto(f"{live_server.url}/console/privacy/retention")
    assert "orders_invoices" in (await page.text_content("#policies") or "")
    await page.click("text=Purge now")
    await page.wait_for_load_state("networkidle")
    for _ in range(20):
        if "raw_events" in (await page.text_content("#runs") or ""):
            break
        await asyncio.sleep(0.2)
    assert "raw_events" in (await page.text_content("#runs") or "")
    assert csp == []
