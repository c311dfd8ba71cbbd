"""Segment-Spec ingestion: the Tracking API, validation, de-duplication, e-commerce projection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kunde.features import Feature
from kunde.ingest.routes import ROUTES

if TYPE_CHECKING:
    from kunde.kernel import Kernel
    from kunde.store.database import UnitOfWork
    from kunde.store.jobs import PeriodicJob


def jobs(kernel: Kernel) -> Sequence[PeriodicJob]:
    from datetime import timedelta

    from kunde.ingest.service import IngestService
    from kunde.store.jobs import PeriodicJob

    return [PeriodicJob("ingest.forget_message_ids", timedelta(hours=1),
                        kernel.service(IngestService).purge_expired)]


async def export(kernel: Kernel, customer_ids: Sequence[str]) -> dict[str, Any]:
    # Ingestion keeps no rows about a customer: its events live in the event log
    # (exported by privacy) and the de-duplication keys are hashes of message ids.
    return {}


async def erase(kernel: Kernel, uow: UnitOfWork, customer_ids: Sequence[str]) -> dict[str, int]:
    return {}


async def purge(kernel: Kernel, uow: UnitOfWork, data_class: str, cutoff: datetime,
                held: frozenset[str]) -> int:
    """Retention of ``raw_events``: the ``ingest.*`` entries of the event log received before
    ``cutoff``, except those about customers under a legal hold."""
    if data_class != "raw_events":
        return 0
    import sqlalchemy as sa

    from kunde.store.tables import events

    q = events.delete().where(events.c.type.startswith("ingest."), events.c.received_at < cutoff)
    if held:
        q = q.where(sa.or_(events.c.subject_id.is_(None), events.c.subject_id.not_in(sorted(held))))
    return int((await uow.execute(q)).rowcount)


def register_cli(app: Any) -> None:
    from kunde.ingest.cli import register

    register(app)


FEATURE = Feature(name="ingest", routes=ROUTES, jobs=jobs, export=export, erase=erase,
                  cli=register_cli, purge=purge)
