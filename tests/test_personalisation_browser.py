"""The personalisation console in a real browser: recommendation preview with reasons,
the evaluation report's chart, customer value and churn risk, experiment results."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import LiveServer, console_login
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.personalisation import service_evaluation
from kunde.personalisation.demo import demo_customers, load
from kunde.personalisation.service import RecommendationService
from kunde.personalisation.tables import evaluations

pytestmark = pytest.mark.browser


async def test_console_pages(browser: Any, live_server: LiveServer, kernel: Kernel) -> None:
    await load(kernel)
    await load(kernel)  # demo data is idempotent
    data, _ = await kernel.service(RecommendationService).training_data()
    report = service_evaluation.run(data, dataset="demo", test_days=200, quick=True,
                                    out_dir=kernel.settings.data_path / "evaluations" / "t")
    async with kernel.db.transaction() as uow:
        await uow.execute(evaluations.insert().values(
            id=new_id(), created_at=kernel.clock.now(), dataset="demo", report=report))
    customers = await demo_customers(kernel)
    await kernel.access.create_user("mia@shop.example", "Mia", "marketer", "correct-horse-1")

    page = await browser.new_page()
    await console_login(page, live_server.url, "mia@shop.example", "correct-horse-1")
    await page.click("nav >> text=Recommendations")
    await page.fill("input[name=customer]", customers[0])
    await page.fill("input[name=context]", "home")
    await page.click("button:has-text('Preview')")
    await page.wait_for_load_state("networkidle")
    assert "Personal recommendations" in await page.text_content("#personal-flag")
    rows = await page.locator("#recommendations tbody tr").count()
    assert rows == 10
    reasons = await page.locator("#recommendations tbody code").all_text_contents()
    assert set(reasons) <= {"because_you_bought", "because_you_viewed", "popular",
                            "popular_in_segment"}
    # Next-best offers for the same customer: a preview with every candidate's reasons.
    assert await page.locator("#offers tbody tr").count() >= 4
    assert "propensity" in (await page.text_content("#offers") or "")
    assert await page.locator("#evaluation-chart svg rect").count() > 3
    assert "ease" in await page.text_content("#evaluation")

    await page.goto(f"{live_server.url}/console/personalisation/?customer={customers[9]}")
    assert "Non-personal" in await page.text_content("#personal-flag")

    await page.click("nav >> text=Customer value")
    assert await page.locator("#clv-chart svg").count() == 1
    assert "low" in await page.text_content("#bands") or "high" in await page.text_content(
        "#bands")

    await page.click("nav >> text=Experiments")
    assert "grid vs carousel" in await page.text_content("main")
    assert await page.locator(".experiment-results tbody tr").count() == 2
    assert "new-checkout" in await page.text_content("#flags")
