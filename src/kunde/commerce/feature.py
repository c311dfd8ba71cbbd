"""Commerce: catalog, carts, checkout, payments port, orders, vouchers, idempotency keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kunde.commerce import cli, demo, external, privacy
from kunde.commerce.idempotency import purge_job
from kunde.commerce.pages import PAGES
from kunde.commerce.routes import ROUTES
from kunde.features import Feature, NavItem

if TYPE_CHECKING:
    from kunde.kernel import Kernel
    from kunde.store.jobs import PeriodicJob


def jobs(kernel: Kernel) -> Sequence[PeriodicJob]:
    from kunde.commerce.service_carts import CartService

    return [kernel.service(CartService).sweep_job(), purge_job(kernel)]


FEATURE = Feature(
    name="commerce",
    routes=[*ROUTES, *PAGES],
    nav=[NavItem("Orders", "/console/orders", "commerce:read")],
    portal_nav=[NavItem("My orders", "/portal/orders", "self")],
    consumers=external.consumers,
    jobs=jobs,
    demo=demo.load,
    export=privacy.export,
    erase=privacy.erase,
    purge=privacy.purge,
    cli=cli.register,
    permissions=("commerce:read", "commerce:write"),
)
