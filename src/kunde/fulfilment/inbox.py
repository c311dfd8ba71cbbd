"""Group commit for carrier webhooks: many concurrent acceptances, one transaction.

Each accepted webhook must be durable before we answer 202, and each commit costs
a disk flush. Requests that arrive while a flush is running wait for the next
one and share it, so throughput grows with concurrency instead of being bound by
flushes per second. Replays are detected by the unique (carrier, message id): one
``INSERT … ON CONFLICT DO NOTHING RETURNING`` tells which rows were new, also when
another process races us; should the batch fail as a whole, each row is retried alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.exc import IntegrityError

from kunde.fulfilment.tables import tracking_inbox
from kunde.store.database import Database, Dialect
from kunde.store.sql import insert_ignore

MAX_BATCH = 500


class InboxWriter:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._insert: Any = None

    async def submit(self, row: dict[str, Any]) -> bool:
        """Store one webhook; True once committed, False when its message id is a replay."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let requests arriving in the same loop tick join the batch
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results = await self._write([row for row, _ in batch])
            except IntegrityError:
                results = await self._write_one_by_one([row for row, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), accepted in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(accepted)

    async def _write(self, rows: list[dict[str, Any]]) -> list[bool]:
        # One statement: INSERT … ON CONFLICT DO NOTHING RETURNING the keys it stored.
        first: dict[tuple[str, str], int] = {}
        for i, r in enumerate(rows):
            first.setdefault((r["carrier"], r["msg_id"]), i)
        unique = [rows[i] for i in sorted(first.values())]
        async with self.db.transaction() as uow:
            stored = {(str(r.carrier), str(r.msg_id))
                      for r in (await uow.execute(self._statement(uow.dialect),
                                                  unique)).all()}
        return [first[(r["carrier"], r["msg_id"])] == i and (r["carrier"], r["msg_id"]) in stored
                for i, r in enumerate(rows)]

    def _statement(self, dialect: Dialect) -> Any:
        # Built once: constructing the dialect's INSERT … ON CONFLICT costs more than
        # the rest of a small batch's Python work.
        if self._insert is None:
            self._insert = insert_ignore(dialect, tracking_inbox, ["carrier", "msg_id"]) \
                .returning(tracking_inbox.c.carrier, tracking_inbox.c.msg_id)
        return self._insert

    async def _write_one_by_one(self, rows: list[dict[str, Any]]) -> list[bool]:
        results = []
        for r in rows:
            async with self.db.transaction() as uow:
                done = await uow.execute(insert_ignore(uow.dialect, tracking_inbox), r)
            results.append(bool(done.rowcount))
        return results
