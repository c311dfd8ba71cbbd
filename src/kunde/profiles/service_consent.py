"""ConsentService: per-purpose consent with a full history, and the one question others ask.

A purpose is allowed only after an explicit grant that was not withdrawn later (no
record means no). Each change is a history row (when, how, channel, text version,
actor) and a ``consent.changed`` event. For a stitched customer the most recent
decision across its records counts.

The read side asked on hot paths (`is_allowed`, `granted`, `state`) runs on the quick
readers (`kunde.store.quick`): one statement that joins through ``customers.canonical_id``
to every record of the person, or, for an id no customer record holds, reads that id's own
decisions. It reads the committed state at every call (nothing is cached), so a decision
recorded in this process counts for the next check.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.errors import InvalidInput
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.profiles import graph
from kunde.profiles.models import PURPOSES
from kunde.profiles.tables import consent_record_ids, consent_records, consent_state, customers
from kunde.store.database import UnitOfWork
from kunde.store.quick import Query, QuickSession
from kunde.store.sql import insert_ignore, upsert

if TYPE_CHECKING:
    from kunde.kernel import Kernel


def _person_state(with_record: bool) -> Query:
    """A person's consent_state rows: through every record sharing the canonical id of
    ``cid``, or the rows of ``cid`` itself when no customer record has that id (decisions
    recorded for an unknown id are stored under it). With ``with_record``, the decision
    record's method, channel and text version (NULL ``record`` when the record is gone)."""
    cid = sa.bindparam("cid", type_=sa.String())
    member = customers.alias("member")
    cols: list[Any] = [consent_state.c.customer_id, consent_state.c.purpose,
                       consent_state.c.granted, consent_state.c.at]
    if with_record:
        cols += [consent_records.c.id.label("record"), consent_records.c.method,
                 consent_records.c.channel, consent_records.c.text_version]

    def records(source: Any) -> Any:
        if not with_record:
            return source
        return source.outerjoin(consent_records, sa.and_(
            consent_records.c.customer_id == consent_state.c.customer_id,
            consent_records.c.id == consent_state.c.record_id))

    # The person's canonical id by a subquery, so the join stays on the distribution
    # column (customer id) and co-located under Citus.
    person = sa.select(customers.c.canonical_id).where(customers.c.id == cid).scalar_subquery()
    merged = (sa.select(*cols).select_from(records(
        member.join(consent_state, consent_state.c.customer_id == member.c.id)))
        .where(member.c.canonical_id == person))
    unknown = (sa.select(*cols).select_from(records(consent_state))
               .where(consent_state.c.customer_id == cid,
                      ~sa.exists().where(customers.c.id == cid)))
    return Query(sa.select(sa.union_all(merged, unknown).subquery()))


PERSON_GRANTS = _person_state(with_record=False)
PERSON_STATE = _person_state(with_record=True)


def _latest(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per purpose, the row of the most recent decision across the person's records (ties
    broken by record id, so the answer does not depend on the plan)."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: (r["at"], r["customer_id"])):
        out[r["purpose"]] = r
    return out


async def granted_in(q: QuickSession, customer_id: str) -> dict[str, bool]:
    """Every purpose of `PURPOSES` → whether the person's latest decision is a grant, read
    in the caller's quick session (one statement)."""
    latest = _latest(await q.fetch(PERSON_GRANTS, cid=customer_id))
    return {**dict.fromkeys(PURPOSES, False),
            **{p: bool(r["granted"]) for p, r in latest.items()}}


class ConsentService:
    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel

    async def is_allowed(self, customer_id: str, purpose: str) -> bool:
        """True only when the customer's latest decision for ``purpose`` is a grant."""
        return (await self.granted(customer_id)).get(purpose, False)

    async def granted(self, customer_id: str) -> dict[str, bool]:
        """Every purpose → whether the customer's latest decision is a grant."""
        async with self.k.db.quick.session() as q:
            return await granted_in(q, customer_id)

    async def is_allowed_in(self, q: QuickSession, customer_id: str, purpose: str) -> bool:
        """`is_allowed` inside a caller's quick session (hot paths reading more besides)."""
        return (await granted_in(q, customer_id)).get(purpose, False)

    async def grant(self, customer_id: str, purpose: str, **how: Any) -> bool:
        """Record a grant; see `record` for the keyword arguments. True when it changed."""
        return await self.record(customer_id, purpose, True, **how)

    async def withdraw(self, customer_id: str, purpose: str, **how: Any) -> bool:
        """Record a withdrawal, exactly as easy as a grant. True when it changed."""
        return await self.record(customer_id, purpose, False, **how)

    async def record(
        self, customer_id: str, purpose: str, granted: bool, *, method: str = "api",
        channel: str = "web", text_version: str = "", actor: str = "customer",
        at: datetime | None = None, cause_id: str | None = None, uow: UnitOfWork | None = None,
    ) -> bool:
        """Store a consent decision (in ``uow`` when given). ``cause_id`` makes it idempotent."""
        if purpose not in PURPOSES:
            raise InvalidInput(f"purpose must be one of {', '.join(PURPOSES)}",
                               code="consent.unknown_purpose")
        if uow is None:
            async with self.k.db.transaction() as own:
                return await self._record(own, customer_id, purpose, granted, method, channel,
                                          text_version, actor, at, cause_id)
        return await self._record(uow, customer_id, purpose, granted, method, channel,
                                  text_version, actor, at, cause_id)

    async def _record(
        self, uow: UnitOfWork, customer_id: str, purpose: str, granted: bool, method: str,
        channel: str, text_version: str, actor: str, at: datetime | None, cause_id: str | None,
    ) -> bool:
        at = at or self.k.clock.now()
        canonical = await graph.canonical_of(uow, customer_id) or customer_id
        ids = await graph.members(uow, canonical) or [canonical]
        current = (await uow.execute(
            sa.select(consent_state.c.granted, consent_state.c.at)
            .where(consent_state.c.customer_id.in_(ids), consent_state.c.purpose == purpose)
            .order_by(consent_state.c.at.desc()).limit(1))).first()
        if current is not None and current.at > at:
            return False  # an older decision arriving late never overrides a newer one
        # Deterministic per cause, so a redelivered identify records its decision once.
        record_id = (str(uuid.uuid5(uuid.NAMESPACE_URL, f"kunde:consent:{cause_id}:{purpose}"))
                     if cause_id else new_id())
        # The id is claimed globally first: the customer it was recorded under may differ.
        result = await uow.execute(insert_ignore(uow.dialect, consent_record_ids),
                                   {"id": record_id})
        if not result.rowcount:
            return False
        await uow.execute(consent_records.insert().values(
            id=record_id, customer_id=canonical, purpose=purpose, granted=granted,
            method=method[:40], channel=channel[:32], text_version=text_version[:64],
            actor=actor[:100], at=at))
        await uow.execute(upsert(uow.dialect, consent_state, ["customer_id", "purpose"],
                                 ["granted", "at", "record_id"]),
                          {"customer_id": canonical, "purpose": purpose, "granted": granted,
                           "at": at, "record_id": record_id})
        changed = current is None or bool(current.granted) != granted
        if changed:
            uow.emit(Event.new("consent.changed", {
                "purpose": purpose, "granted": granted, "method": method, "channel": channel,
                "text_version": text_version, "actor": actor}, subject_id=canonical,
                source=channel, occurred_at=at))
        return changed

    async def state(self, customer_id: str) -> dict[str, dict[str, Any]]:
        """Current decision per purpose (every purpose listed; never decided = not granted)."""
        async with self.k.db.quick.session() as q:
            rows = await q.fetch(PERSON_STATE, cid=customer_id)
        out: dict[str, dict[str, Any]] = {p: {"granted": False, "at": None, "method": None,
                                              "channel": None, "text_version": None}
                                          for p in PURPOSES}
        for purpose, r in _latest([r for r in rows if r["record"] is not None]).items():
            out[purpose] = {"granted": bool(r["granted"]), "at": r["at"], "method": r["method"],
                            "channel": r["channel"], "text_version": r["text_version"]}
        return out

    async def history(self, customer_id: str) -> list[dict[str, Any]]:
        """Every decision of the customer, newest first."""
        async with self.k.db.read() as conn:
            ids = await self._ids(conn, customer_id)
            rows = (await conn.execute(
                sa.select(consent_records).where(consent_records.c.customer_id.in_(ids))
                .order_by(consent_records.c.at.desc(), consent_records.c.id.desc()))).all()
        return [{"purpose": r.purpose, "granted": bool(r.granted), "method": r.method,
                 "channel": r.channel, "text_version": r.text_version, "actor": r.actor,
                 "at": r.at, "customer_record": r.customer_id} for r in rows]

    async def _ids(self, conn: Any, customer_id: str) -> Sequence[str]:
        canonical = await graph.canonical_of(conn, customer_id) or customer_id
        return await graph.members(conn, canonical) or [canonical]
