"""The Customer 360 in a real browser: search, stitched identities, timeline, unmerge."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from conftest import LiveServer, console_login
from kunde.kernel import Kernel
from kunde.profiles.service import ProfileService

pytestmark = pytest.mark.browser


async def test_customer_360_in_the_browser(browser: Any, live_server: LiveServer,
                                           kernel: Kernel) -> None:
    await kernel.access.create_user("agent@shop.example", "Agnes", "agent", "correct-horse-2")
    _, key = await kernel.access.create_source("shop", "web")
    batch = [
        {"type": "page", "anonymousId": "laptop-1", "name": "Running shoes"},
        {"type": "track", "anonymousId": "laptop-1", "event": "Product Viewed",
         "properties": {"sku": "TRAIL-42", "price": 89.95}},
        {"type": "identify", "anonymousId": "laptop-1", "userId": "ana",
         "traits": {"email": "ana@example.com", "first_name": "Ana", "last_name": "Schmidt"},
         "context": {"consent": {"categoryPreferences": {"marketing_email": True},
                                 "text_version": "v7"}}},
    ]
    async with httpx.AsyncClient(base_url=live_server.url, auth=(key, "")) as client:
        r = await client.post("/v1/batch", json={"batch": batch})
        assert r.status_code == 200, r.text
    profiles = kernel.service(ProfileService)
    deadline = time.monotonic() + 10
    while await profiles.resolve("email", "ana@example.com") is None:
        assert time.monotonic() < deadline, "the projector did not stitch in time"
        await asyncio.sleep(0.1)

    page = await browser.new_page()
    await console_login(page, live_server.url, "agent@shop.example", "correct-horse-2")
    await page.click("nav >> text=Customers")
    await page.fill("input[name=q]", "  ANA@example.com ")
    await page.click("button:has-text('Search')")
    await page.wait_for_load_state("networkidle")
    assert "/console/customers/" in page.url
    assert "Ana Schmidt" in await page.text_content("h1")
    identities = await page.text_content("#identities")
    for text in ("anonymous_id", "laptop-1", "user_id", "email", "ana@example.com"):
        assert text in identities
    assert "v7" in await page.text_content("#consent")
    timeline = await page.text_content("#timeline")
    assert "Product Viewed" in timeline and "ingest.identify" in timeline

    await page.fill("#timeline input[name=type]", "ingest.page")
    await page.click("#timeline button:has-text('Filter')")
    await page.wait_for_load_state("networkidle")
    filtered = await page.text_content("#timeline tbody")
    assert "Running shoes" in filtered and "ingest.identify" not in filtered

    # Staff separate the anonymous history again; the audit trail says who and why.
    await page.fill("form.unmerge input[name=reason]", "shared laptop")
    await page.click("form.unmerge button")
    await page.wait_for_load_state("networkidle")
    assert "Records separated." in await page.text_content("main")
    assert "shared laptop" in await page.text_content("#identities")
