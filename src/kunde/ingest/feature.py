"""Segment-Spec ingestion: the Tracking API, validation, de-duplication, e-commerce projection."""

from __future__ import annotations

from collections.abc import Sequence
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


def register_cli(app: Any) -> None:
    from kunde.ingest.cli import register

    register(app)


FEATURE = Feature(name="ingest", routes=ROUTES, jobs=jobs, export=export, erase=erase,
                  cli=register_cli)
