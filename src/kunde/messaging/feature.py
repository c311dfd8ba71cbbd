"""Messaging: templates per locale, email over SMTP and signed webhooks, outbox, archive."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from kunde.features import Feature, NavItem
from kunde.kernel import Kernel
from kunde.messaging.handlers import consumers
from kunde.messaging.routes import ROUTES
from kunde.messaging.service import MessagingService
from kunde.store.database import UnitOfWork
from kunde.store.jobs import PeriodicJob


def jobs(kernel: Kernel) -> list[PeriodicJob]:
    service = kernel.service(MessagingService)
    return [PeriodicJob(name="messaging.dispatch", every=timedelta(seconds=1),
                        run=service.dispatch_due, timeout=timedelta(minutes=2))]


async def export(kernel: Kernel, customer_ids: Sequence[str]) -> dict[str, Any]:
    return {"messages": await kernel.service(MessagingService).archive(customer_ids,
                                                                        limit=100_000)}


async def erase(kernel: Kernel, uow: UnitOfWork, customer_ids: Sequence[str]
                ) -> dict[str, int]:
    return await kernel.service(MessagingService).erase(uow, customer_ids)


async def purge(kernel: Kernel, uow: UnitOfWork, data_class: str, cutoff: datetime,
                held: frozenset[str]) -> int:
    if data_class != "message_archive":
        return 0
    return await kernel.service(MessagingService).purge(uow, cutoff, held)


FEATURE = Feature(
    name="messaging",
    routes=ROUTES,
    consumers=consumers,
    jobs=jobs,
    nav=(NavItem("Messages", "/console/messages", "messaging:read"),),
    permissions=("messaging:read", "messaging:send", "messaging:admin"),
    export=export,
    erase=erase,
    purge=purge,
)
