"""The staff queue of data-subject requests (exports and erasures) with their deadlines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.privacy.tables import erasure_requests, export_requests

if TYPE_CHECKING:
    from kunde.kernel import Kernel

OPEN = {"export": ("queued", "running", "failed"), "erasure": ("pending", "erased")}


async def request_queue(kernel: Kernel, *, state: str | None = None,
                        limit: int = 200) -> list[dict[str, Any]]:
    """Both kinds, oldest deadline first; ``state="open"`` keeps those not finished."""
    now = kernel.clock.now()
    out: list[dict[str, Any]] = []
    async with kernel.db.read() as conn:
        for kind, table in (("export", export_requests), ("erasure", erasure_requests)):
            q = sa.select(table.c.id, table.c.customer_id, table.c.requested_by,
                          table.c.channel, table.c.requested_at, table.c.due_at,
                          table.c.state).order_by(table.c.due_at).limit(limit)
            if state == "open":
                q = q.where(table.c.state.in_(OPEN[kind]))
            elif state:
                q = q.where(table.c.state == state)
            for r in await conn.execute(q):
                row = dict(r._mapping)
                row["kind"] = kind
                row["open"] = r.state in OPEN[kind]
                row["overdue"] = row["open"] and r.due_at < now
                row["days_left"] = (r.due_at - now).days
                out.append(row)
    out.sort(key=lambda r: (not r["open"], r["due_at"]))
    return out[:limit]
