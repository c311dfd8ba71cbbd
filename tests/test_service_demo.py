"""The service demo: open cases in several queues, one from a broken delivery promise, a
conversation that moved from email to the portal, feedback results; loading twice is a
no-op."""

from __future__ import annotations

from kunde.kernel import Kernel
from kunde.service.demo import load_demo
from kunde.service.reports import service_report
from kunde.service.service import CaseService


async def test_demo_is_complete_and_idempotent(kernel: Kernel) -> None:
    await load_demo(kernel)
    cases = kernel.service(CaseService)
    first = await cases.list_cases(limit=500)
    await load_demo(kernel)
    again = await cases.list_cases(limit=500)
    assert sorted(c["id"] for c in first) == sorted(c["id"] for c in again)

    open_queues = {c["queue"] for c in again if c["status"] in ("new", "open", "pending")}
    assert len(open_queues) >= 3
    assert any(c["cause"] == "delay:demo-shipment-1" for c in again)
    moved = [c for c in again if c["channel"] == "email" and c["queue"] == "returns"]
    assert len(moved) == 1
    channels = [m["channel"] for m in await cases.thread(moved[0]["id"])]
    assert channels[0] == "email" and channels[-1] == "portal"
    report = await service_report(kernel)
    assert report["csat_answers"] == 3 and report["nps_answers"] == 3
    assert report["nps_comments"] and report["csat_comments"]
