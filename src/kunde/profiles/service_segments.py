"""SegmentService: rule-based audiences kept current as events arrive.

The profile consumer calls `refresh` for the customers a batch touched (inside its
transaction); a periodic job re-checks every member and candidate so time-based rules
("in the last 30 days") let customers leave on time. Entering and leaving emit
``segments.entered`` / ``segments.left``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.errors import Conflict, InvalidInput, NotFound
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.profiles import graph
from kunde.profiles.segments_rules import RuleError, matches, validate
from kunde.profiles.service import ProfileService
from kunde.profiles.tables import customers, segment_members, segments
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.kernel import Kernel


class SegmentService:
    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.profiles = kernel.service(ProfileService)

    async def create(self, name: str, rules: dict[str, Any], description: str = "") -> str:
        try:
            validate(rules)
        except RuleError as exc:
            raise InvalidInput(str(exc), code="segments.invalid_rules") from exc
        segment_id = new_id()
        now = self.k.clock.now()
        async with self.k.db.transaction() as uow:
            exists = (await uow.execute(sa.select(segments.c.id)
                                        .where(segments.c.name == name))).first()
            if exists:
                raise Conflict(f"a segment named {name!r} exists", code="segments.exists")
            await uow.execute(segments.insert().values(
                id=segment_id, name=name, description=description, rules=rules,
                created_at=now, updated_at=now))
        await self.refresh_all()
        return segment_id

    async def delete(self, segment_id: str) -> None:
        async with self.k.db.transaction() as uow:
            await uow.execute(segment_members.delete()
                              .where(segment_members.c.segment_id == segment_id))
            result = await uow.execute(segments.delete().where(segments.c.id == segment_id))
        if not result.rowcount:
            raise NotFound("no such segment", code="segments.not_found")

    async def all_segments(self) -> list[dict[str, Any]]:
        async with self.k.db.read() as conn:
            counts: dict[str, int] = dict((await conn.execute(
                sa.select(segment_members.c.segment_id, sa.func.count())
                .group_by(segment_members.c.segment_id))).all())
            rows = (await conn.execute(sa.select(segments).order_by(segments.c.name))).all()
        return [{"id": r.id, "name": r.name, "description": r.description, "rules": r.rules,
                 "members": int(counts.get(r.id, 0)), "created_at": r.created_at} for r in rows]

    async def get(self, segment_id: str) -> dict[str, Any]:
        for s in await self.all_segments():
            if s["id"] == segment_id:
                return s
        raise NotFound("no such segment", code="segments.not_found")

    async def members(self, segment_id: str, *, after: str | None = None, limit: int = 100
                      ) -> dict[str, Any]:
        """Member customer ids in id order, paged by ``after`` (the last id of a page)."""
        await self.get(segment_id)
        limit = max(1, min(limit, 1000))
        q = (sa.select(segment_members.c.customer_id, segment_members.c.entered_at)
             .where(segment_members.c.segment_id == segment_id)
             .order_by(segment_members.c.customer_id).limit(limit))
        if after:
            q = q.where(segment_members.c.customer_id > after)
        async with self.k.db.read() as conn:
            rows = (await conn.execute(q)).all()
        items = [{"customer_id": r.customer_id, "entered_at": r.entered_at} for r in rows]
        return {"items": items, "next": items[-1]["customer_id"] if len(items) == limit else None}

    async def of_customer(self, customer_id: str) -> list[dict[str, Any]]:
        canonical = await self.profiles.canonical_id(customer_id)
        async with self.k.db.read() as conn:
            rows = (await conn.execute(
                sa.select(segments.c.id, segments.c.name, segment_members.c.entered_at)
                .join(segment_members, segment_members.c.segment_id == segments.c.id)
                .where(segment_members.c.customer_id == canonical))).all()
        return [{"id": r.id, "name": r.name, "entered_at": r.entered_at} for r in rows]

    async def refresh(self, uow: UnitOfWork, customer_ids: Iterable[str]) -> int:
        """Re-evaluate every segment for these customers; returns membership changes."""
        defs = (await uow.execute(sa.select(segments.c.id, segments.c.name,
                                            segments.c.rules))).all()
        ids = sorted(set(customer_ids))
        if not ids:
            return 0
        canon = await graph.canonical_map(uow, ids)
        current: dict[str, set[str]] = {}
        for r in await uow.execute(sa.select(segment_members).where(
                segment_members.c.customer_id.in_(ids))):
            current.setdefault(r.customer_id, set()).add(r.segment_id)
        if not defs and not current:
            return 0
        now = self.k.clock.now()
        changes = 0
        for cid in ids:
            live = canon.get(cid) == cid
            facts = await self._facts(uow, cid) if live and defs else {}
            want = {d.id for d in defs if live and matches(d.rules, facts, now)}
            have = current.get(cid, set())
            names = {d.id: d.name for d in defs}
            for sid in want - have:
                await uow.execute(segment_members.insert().values(
                    segment_id=sid, customer_id=cid, entered_at=now))
                uow.emit(Event.new("segments.entered", {"segment_id": sid, "name": names[sid]},
                                   subject_id=cid, source="profiles"))
            for sid in have - want:
                await uow.execute(segment_members.delete().where(
                    segment_members.c.segment_id == sid, segment_members.c.customer_id == cid))
                uow.emit(Event.new("segments.left",
                                   {"segment_id": sid, "name": names.get(sid, "")},
                                   subject_id=cid, source="profiles"))
            changes += len(want ^ have)
        return changes

    async def _facts(self, uow: UnitOfWork, canonical: str) -> dict[str, Any]:
        ids = await graph.members(uow, canonical)
        computed = await self.profiles._computed(uow.conn, ids)
        trait_values = await self.profiles._traits(uow.conn, ids)
        return {"computed": computed.as_dict() | {"channels": sorted(computed.channels)},
                "traits": {k: v["value"] for k, v in trait_values.items()},
                "event_last": computed.event_last}

    async def refresh_all(self, chunk: int = 500) -> str:
        """Re-evaluate every live customer (periodic job, and after a segment changes)."""
        after = ""
        changes = 0
        while True:
            async with self.k.db.read() as conn:
                ids = [r[0] for r in await conn.execute(
                    sa.select(customers.c.id).where(customers.c.id > after)
                    .order_by(customers.c.id).limit(chunk))]
            if not ids:
                return f"{changes} segment membership changes"
            async with self.k.db.transaction() as uow:
                changes += await self.refresh(uow, ids)
            after = ids[-1]
