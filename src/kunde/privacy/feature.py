"""Privacy: vault, audit, export, erasure, suppression, retention, request hardening."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from kunde.features import Feature, NavItem
from kunde.privacy import handlers
from kunde.privacy.cli import register
from kunde.privacy.middleware import security_middleware
from kunde.privacy.pages import ROUTES as PAGES
from kunde.privacy.routes import ROUTES
from kunde.store.jobs import PeriodicJob

if TYPE_CHECKING:
    from kunde.kernel import Kernel


def jobs(kernel: Kernel) -> list[PeriodicJob]:
    from kunde.privacy.erasure import ErasureService
    from kunde.privacy.export import ExportService
    from kunde.privacy.retention import RetentionService

    async def requests() -> str:
        erased = await kernel.service(ErasureService).resume_all()
        exported = await kernel.service(ExportService).run_queued()
        expired = await kernel.service(ExportService).expire()
        return f"erasures {len(erased)}, exports {exported}, expired {expired}"

    async def retention() -> str:
        report = await kernel.service(RetentionService).run()
        return ", ".join(f"{c}: {e.get('purged', 0)}" for c, e in report["classes"].items())

    async def receipts() -> str:
        from kunde.privacy.receipts import seal_receipts

        return f"receipts sealed {await seal_receipts(kernel)}"

    return [
        PeriodicJob("privacy.requests", timedelta(seconds=2), requests),
        PeriodicJob("privacy.receipts", timedelta(seconds=30), receipts),
        PeriodicJob("privacy.retention", timedelta(hours=24), retention,
                    timeout=timedelta(hours=1)),
    ]


FEATURE = Feature(
    name="privacy",
    routes=[*ROUTES, *PAGES],
    consumers=handlers.consumers,
    jobs=jobs,
    nav=[NavItem("Privacy requests", "/console/privacy", "privacy:read"),
         NavItem("Audit log", "/console/privacy/audit", "privacy:audit"),
         NavItem("Retention", "/console/privacy/retention", "privacy:retention")],
    portal_nav=[NavItem("Privacy", "/portal/privacy", "self")],
    permissions=("privacy:read", "privacy:request", "privacy:audit", "privacy:retention"),
    cli=register,
    middleware=[security_middleware()],
)
