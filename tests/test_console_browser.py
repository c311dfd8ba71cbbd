"""The console in a real browser: log-in, the home page's live figures, log-out."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import LiveServer, console_login
from kunde.kernel import Kernel

pytestmark = pytest.mark.browser


async def test_login_home_and_logout(browser: Any, live_server: LiveServer, kernel: Kernel
                                     ) -> None:
    await kernel.access.create_user("ada@shop.example", "Ada", "admin", "correct-horse-1")
    page = await browser.new_page()
    await page.goto(f"{live_server.url}/console/")
    assert "/console/login" in page.url  # not logged in: sent to the log-in page

    await console_login(page, live_server.url, "ada@shop.example", "wrong-password")
    assert "wrong email or password" in await page.text_content("body")

    await console_login(page, live_server.url, "ada@shop.example", "correct-horse-1")
    assert page.url.endswith("/console/")
    assert await page.text_content("h1") == "Today at a glance"
    assert await page.is_visible("text=Events in the log")
    assert await page.is_visible("nav >> text=API docs")

    await page.click("text=Log out")
    await page.wait_for_load_state("networkidle")
    assert "/console/login" in page.url
