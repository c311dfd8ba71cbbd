"""Operations: health, metrics, request ids, access logs, admission control, backups."""

from __future__ import annotations

from kunde.features import Feature, NavItem
from kunde.kernel import Kernel
from kunde.ops.cli import register
from kunde.ops.pages import ops_chart, ops_figures, ops_page
from kunde.ops.routes import live, metrics, ready


async def startup(kernel: Kernel) -> None:
    health = kernel.metrics.database
    health.timeout = min(kernel.settings.db_timeout_seconds, 2.0)
    health.attach(kernel.db)


async def shutdown(kernel: Kernel) -> None:
    await kernel.metrics.database.stop()


FEATURE = Feature(
    name="ops",
    routes=[live, ready, metrics, ops_page, ops_figures, ops_chart],
    nav=[NavItem("Operations", "/console/ops", "ops:read")],
    startup=startup,
    shutdown=shutdown,
    cli=register,
)
