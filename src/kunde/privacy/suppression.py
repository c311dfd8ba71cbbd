"""The suppression list: identifiers of erased people, kept only as blind indexes.

Ingest (and anything else that accepts data about a person from outside) asks before
storing::

    from kunde.privacy.suppression import SuppressionService

    if await kernel.service(SuppressionService).is_suppressed("email", email):
        ...  # refuse the event, or strip the identifier

What callers may rely on:

* ``kind`` is the identifier kind of `kunde.privacy.vault.normalise_identifier`
  (``email``, ``phone``, ``user_id``, ``anonymous_id``, ``customer_id`` or a custom
  kind); values are normalised the same way, so ``" A@X.org"`` matches ``"a@x.org"``.
* Answers come from an in-process set refreshed from the database at most every
  ``REFRESH_SECONDS`` (and at once in this process after an erasure), so the check
  costs a hash and a set lookup on the hot path.
* Clear identifiers are never stored: only ``vault.blind_index(kind, value)``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import sqlalchemy as sa

from kunde.privacy.tables import suppressions
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

REFRESH_SECONDS = 5.0


class SuppressionService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._known: set[tuple[str, str]] = set()
        self._loaded_at = -1e9

    def index(self, kind: str, value: str) -> str:
        return self.kernel.vault.blind_index(kind, value)

    async def is_suppressed(self, kind: str, value: str | None) -> bool:
        """True when this identifier belongs to an erased person."""
        if not value:
            return False
        if time.monotonic() - self._loaded_at > REFRESH_SECONDS:
            await self._refresh()
        return (kind, self.index(kind, value)) in self._known

    async def any_suppressed(self, identifiers: dict[str, str | None]
                             | Iterable[tuple[str, str | None]]) -> bool:
        """True when any identifier belongs to an erased person; takes a dict or pairs
        (pairs allow two values of one kind)."""
        pairs = identifiers.items() if isinstance(identifiers, dict) else identifiers
        for kind, value in pairs:
            if await self.is_suppressed(kind, value):
                return True
        return False

    async def active(self) -> bool:
        """False while nobody has been erased: callers can skip hashing identifiers."""
        if time.monotonic() - self._loaded_at > REFRESH_SECONDS:
            await self._refresh()
        return bool(self._known)

    async def _refresh(self) -> None:
        async with self.kernel.db.read() as conn:
            rows = await conn.execute(sa.select(suppressions.c.kind, suppressions.c.value_hash))
            self._known = {(r.kind, r.value_hash) for r in rows}
        self._loaded_at = time.monotonic()

    async def add(self, uow: UnitOfWork, entries: Iterable[tuple[str, str]],
                  request_id: str | None) -> int:
        """Add (kind, blind index) pairs in the caller's transaction; idempotent."""
        rows = [{"kind": k, "value_hash": h, "created_at": self.kernel.clock.now(),
                 "request_id": request_id} for k, h in set(entries)]
        if not rows:
            return 0
        await uow.execute(insert_ignore(uow.dialect, suppressions), rows)
        uow.after_commit(self._expire)
        return len(rows)

    def _expire(self) -> None:
        self._loaded_at = -1e9

    async def count(self) -> int:
        async with self.kernel.db.read() as conn:
            return int((await conn.execute(
                sa.select(sa.func.count()).select_from(suppressions))).scalar_one())
