"""Moving rows from one customer record to another.

Loyalty tables are distributed by customer id (Citus), and a distributed table's
distribution column cannot be changed in place: a row that changes hands (a merge moves
lots to the survivor, erasure moves the ledger to a pseudonym) is deleted and inserted
again under its new customer id, in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from kunde.store.database import UnitOfWork


async def move_rows(uow: UnitOfWork, table: sa.Table, *where: Any, **changes: Any) -> int:
    """Re-insert the rows of ``table`` matching ``where`` with ``changes`` applied (the
    new customer id among them) and delete the originals; returns how many moved."""
    rows = [dict(r) for r in (await uow.execute(sa.select(table).where(*where))).mappings()]
    if not rows:
        return 0
    await uow.execute(table.delete().where(*where))
    await uow.execute(table.insert(), [{**r, **changes} for r in rows])
    return len(rows)
