"""Import a JSON Lines file of Spec messages through the same path as the Tracking API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from kunde.access.tables import sources
from kunde.core.errors import KundeError
from kunde.ingest.models import MAX_EVENT_BYTES, normalise, parse_body
from kunde.ingest.service import IngestService

if TYPE_CHECKING:
    from kunde.kernel import Kernel


async def source_id_for(kernel: Kernel, name: str, channel: str) -> tuple[str, str]:
    """The (id, channel) of the named source, created on first use."""
    async with kernel.db.read() as conn:
        row = (await conn.execute(sa.select(sources.c.id, sources.c.channel)
                                  .where(sources.c.name == name))).first()
    if row is not None:
        return str(row.id), str(row.channel)
    source_id, _ = await kernel.access.create_source(name, channel)
    return source_id, channel


async def import_file(kernel: Kernel, path: Path, source: str, channel: str,
                      batch_size: int = 500) -> dict[str, Any]:
    source_id, channel = await source_id_for(kernel, source, channel)
    service = kernel.service(IngestService)
    stats: dict[str, Any] = {"stored": 0, "duplicates": 0, "suppressed": 0, "rejected": 0,
                             "errors": []}
    total = (await asyncio.to_thread(path.stat)).st_size
    pending: list[dict[str, Any]] = []

    async def flush() -> None:
        counts = await service.accept(source_id, channel, pending)
        stats["stored"] += counts["stored"]
        stats["duplicates"] += counts["duplicates"]
        stats["suppressed"] += counts["suppressed"]
        pending.clear()

    columns = (TextColumn("importing"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress, path.open("rb") as fh:
        task = progress.add_task("import", total=total)
        for number, line in enumerate(fh, start=1):
            progress.advance(task, len(line))
            if not line.strip():
                continue
            try:
                raw = parse_body(line.strip(), limit=MAX_EVENT_BYTES)
                pending.append(normalise(raw, index=None, kind=None,
                                         received_at=kernel.clock.now(), batch_sent_at=None,
                                         channel=channel, check_size=False))
            except KundeError as exc:
                stats["rejected"] += 1
                stats["errors"].append(f"line {number}: {exc.code}: {exc.detail}")
                continue
            if len(pending) >= batch_size:
                await flush()
        if pending:
            await flush()
    return stats
