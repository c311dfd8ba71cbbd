"""IngestService: store a validated batch of Spec messages in one transaction.

Per batch: one INSERT … ON CONFLICT DO NOTHING RETURNING on the de-duplication table
(so a retried batch stores nothing twice), one identity lookup (through
`ProfileService.resolve_for_ingest`), and one insert of the events into the log.
The caller answers 200 only after `accept` returned, i.e. after commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.ingest import ecommerce
from kunde.ingest.models import message_key
from kunde.ingest.tables import ingest_messages
from kunde.privacy.suppression import SuppressionService
from kunde.profiles.service import ProfileService
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

DEDUPE_WINDOW = timedelta(days=8)  # at least the 7 days clients may retry for
MAX_GROUP_MESSAGES = 5000
Submission = tuple[str, str, list[dict[str, Any]]]  # source id, channel, messages


class GroupCommit:
    """Run concurrent submissions together: one transaction (one fsync) for all waiting.

    If the shared transaction fails, each submission is retried alone so one bad
    batch never fails another.
    """

    def __init__(self, run: Callable[[list[Submission]], Awaitable[list[dict[str, int]]]]
                 ) -> None:
        self._run = run
        self._pending: list[tuple[Submission, asyncio.Future[dict[str, int]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Submission) -> dict[str, int]:
        future: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            size, cut = 0, 0
            for cut, (item, _) in enumerate(self._pending, start=1):  # noqa: B007
                size += len(item[2])
                if size >= MAX_GROUP_MESSAGES:
                    break
            group, self._pending = self._pending[:cut], self._pending[cut:]
            try:
                results = await self._run([item for item, _ in group])
            except Exception as exc:
                if len(group) == 1:
                    _settle(group[0][1], exc)
                    continue
                for item, future in group:
                    try:
                        _settle(future, (await self._run([item]))[0])
                    except Exception as single:
                        _settle(future, single)
                continue
            for (_, future), result in zip(group, results, strict=True):
                _settle(future, result)


def _identifiers(m: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The identifiers a normalised message names, as (kind, value) pairs."""
    found: list[tuple[str, str | None]] = [("user_id", m.get("user_id")),
                                           ("anonymous_id", m.get("anonymous_id"))]
    previous = m.get("previous_id")
    if previous:
        found += [("user_id", previous), ("anonymous_id", previous)]
    context = m.get("context")
    for traits in (m.get("traits"), context.get("traits") if isinstance(context, dict) else None):
        if isinstance(traits, dict):
            for kind in ("email", "phone"):
                value = traits.get(kind)
                if isinstance(value, str) and value:
                    found.append((kind, value))
    return found


def _settle(future: asyncio.Future[dict[str, int]], outcome: dict[str, int] | Exception
            ) -> None:
    if future.done():  # the caller went away; its messages are stored all the same
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class IngestService:
    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.profiles = kernel.service(ProfileService)
        self.suppression = kernel.service(SuppressionService)
        self._group = GroupCommit(self._store)

    async def accept(self, source_id: str, channel: str,
                     messages: Sequence[dict[str, Any]]) -> dict[str, int]:
        """Store new messages; returns counts of stored and duplicate messages.

        Concurrent calls share one transaction (group commit): each returns only after
        the transaction holding its messages committed.
        """
        kept = await self._not_suppressed(messages)
        suppressed = len(messages) - len(kept)
        if not kept:
            return {"stored": 0, "duplicates": 0, "suppressed": suppressed}
        counts = await self._group.submit((source_id, channel, kept))
        return {**counts, "suppressed": suppressed}

    async def _not_suppressed(self, messages: Sequence[dict[str, Any]]
                              ) -> list[dict[str, Any]]:
        """The messages that are not about an erased person.

        Events naming an identifier on privacy's suppression list (userId, anonymousId,
        an alias's previousId, an email or phone trait) are dropped, never stored: they
        would bring the person back. The caller still acknowledges them, so clients do
        not retry them forever. The list is an in-process set (refreshed every few
        seconds), so this costs a blind-index hash per identifier, and nothing at all
        while nobody has been erased.
        """
        if not await self.suppression.active():
            return list(messages)
        return [m for m in messages
                if not await self.suppression.any_suppressed(_identifiers(m))]

    async def _store(self, items: list[Submission]) -> list[dict[str, int]]:
        """One transaction for several submissions; the counts of each, in order."""
        now = self.k.clock.now()
        keyed: list[list[bytes]] = []
        by_key: dict[bytes, tuple[int, dict[str, Any]]] = {}
        for n, (source_id, _, messages) in enumerate(items):
            keys = [message_key(source_id, m["message_id"]) for m in messages]
            keyed.append(keys)
            for k, m in zip(keys, messages, strict=True):
                by_key.setdefault(k, (n, m))
        stored = [0] * len(items)
        async with self.k.db.transaction() as uow:
            stmt = insert_ignore(uow.dialect, ingest_messages).returning(ingest_messages.c.key)
            result = await uow.execute(stmt, [{"key": k, "received_at": now} for k in by_key])
            fresh = {r[0] for r in result}
            per_channel: dict[str, list[tuple[int, dict[str, Any]]]] = {}
            for k, (n, m) in by_key.items():
                if k in fresh:
                    per_channel.setdefault(items[n][1], []).append((n, m))
            for channel, new in per_channel.items():
                subjects = await self.profiles.resolve_for_ingest(
                    uow, [(m["user_id"], m["anonymous_id"]) for _, m in new], channel)
                for (n, m), subject in zip(new, subjects, strict=True):
                    self._emit(uow, dict(m), subject, now)
                    stored[n] += 1
        return [{"stored": stored[n], "duplicates": len(items[n][2]) - stored[n]}
                for n in range(len(items))]

    @staticmethod
    def _emit(uow: Any, m: dict[str, Any], subject: str, now: Any) -> None:
        occurred = m.pop("occurred_at")
        typ = m.pop("type")  # m is the caller's copy
        source = m["channel"]
        uow.emit(Event(id=new_id(), type=f"ingest.{typ}", subject_id=subject, source=source,
                       occurred_at=occurred, received_at=now, payload=m))
        if typ == "track":
            interaction = ecommerce.project(m)
            if interaction is not None:
                uow.emit(Event(id=new_id(), type="interaction.recorded", subject_id=subject,
                               source=source, occurred_at=occurred, received_at=now,
                               payload=interaction))

    async def purge_expired(self) -> str:
        """Forget message ids older than the de-duplication window (a periodic job)."""
        cutoff = self.k.clock.now() - DEDUPE_WINDOW
        async with self.k.db.transaction() as uow:
            result = await uow.execute(
                ingest_messages.delete().where(ingest_messages.c.received_at < cutoff))
        return f"forgot {result.rowcount} message ids"

    async def remembered(self) -> int:
        async with self.k.db.read() as conn:
            return int((await conn.execute(
                sa.select(sa.func.count()).select_from(ingest_messages))).scalar_one())
