"""The Customer 360: identity graph, profiles and traits, timeline, consent, segments."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from kunde.features import Feature, NavItem
from kunde.profiles.handlers import consumers
from kunde.profiles.pages import PAGES
from kunde.profiles.privacy import erase, export
from kunde.profiles.routes import ROUTES

if TYPE_CHECKING:
    from kunde.kernel import Kernel
    from kunde.store.jobs import PeriodicJob


def jobs(kernel: Kernel) -> Sequence[PeriodicJob]:
    from kunde.profiles.service_segments import SegmentService
    from kunde.store.jobs import PeriodicJob

    # Time-based rules ("in the last 30 days") change without any event arriving.
    return [PeriodicJob("profiles.refresh_segments", timedelta(minutes=15),
                        kernel.service(SegmentService).refresh_all)]


async def demo(kernel: Kernel) -> None:
    from kunde.profiles.demo import load

    await load(kernel)


FEATURE = Feature(
    name="profiles",
    routes=[*ROUTES, *PAGES],
    consumers=consumers,
    jobs=jobs,
    demo=demo,
    nav=[NavItem("Customers", "/console/customers", "profiles:read")],
    export=export,
    erase=erase,
)
