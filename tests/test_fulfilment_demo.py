"""The demo: commerce's orders shipped, delayed with a proactive message, returned and refunded."""

from __future__ import annotations

from kunde.commerce.feature import FEATURE as commerce
from kunde.fulfilment.feature import FEATURE as fulfilment
from kunde.fulfilment.service import FulfilmentService
from kunde.fulfilment.service_returns import ReturnService
from kunde.kernel import Kernel
from kunde.messaging.service import MessagingService


async def test_demo_is_complete_and_idempotent(kernel: Kernel) -> None:
    assert commerce.demo and fulfilment.demo
    await commerce.demo(kernel)
    await fulfilment.demo(kernel)
    await fulfilment.demo(kernel)  # a second run changes nothing
    shipments = await kernel.service(FulfilmentService).search(limit=100)
    assert len(shipments) == 6
    late = [s for s in shipments if s["risk"] == "late"]
    assert len(late) == 1
    archive = await kernel.service(MessagingService).archive([late[0]["customer_id"]])
    apology = [m for m in archive if m["template"] == "delay_apology"]
    assert apology and "delayed" in (apology[0]["subject"] or "")
    refunded = await kernel.service(ReturnService).search(status="refunded")
    assert len(refunded) == 1 and refunded[0]["refund_trigger"] == "first_scan"
    assert refunded[0]["sla"] == "on_time"
    assert await kernel.service(FulfilmentService).unknown()
