"""The identity graph: identifiers → customer records → the live customer they belong to.

Every function runs inside the caller's unit of work (or read connection), so a link,
the merge it causes and the events describing both commit together.

Invariants (property-tested in tests/test_profiles_graph.py):
* an identifier (its blind index) belongs to exactly one customer record (the primary
  key of ``identity_owners``, written with the ``identities`` row);
* every record's ``canonical_id`` names a live record, and the live record of a group is
  its oldest (smallest UUIDv7) member, so the outcome does not depend on link order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from kunde.core.errors import Conflict, NotFound
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.privacy.vault import Vault
from kunde.profiles.models import IdentityRules, merge_refusal, survivor_of
from kunde.profiles.tables import (
    customers,
    identities,
    identity_links,
    identity_owners,
    merge_blocks,
    merges,
)
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

Executor = Any  # a UnitOfWork or an AsyncConnection: both have ``await .execute(stmt)``
GRAPH_LOCK_KEY = 0x4B554E44_4944  # "KUNDID": serialises merges across workers


async def lock_graph(uow: UnitOfWork) -> None:
    """Serialise merges and unmerges (rare) so concurrent workers never interleave them.

    SQLite has a single writer already; on PostgreSQL a transaction-scoped advisory lock.
    """
    if uow.dialect == "postgresql":
        await uow.execute(sa.select(sa.func.pg_advisory_xact_lock(GRAPH_LOCK_KEY)))


async def canonical_map(ex: Executor, ids: Iterable[str]) -> dict[str, str]:
    wanted = list(set(ids))
    out: dict[str, str] = {}
    for i in range(0, len(wanted), 500):
        rows = await ex.execute(sa.select(customers.c.id, customers.c.canonical_id)
                                .where(customers.c.id.in_(wanted[i:i + 500])))
        out.update({r.id: r.canonical_id for r in rows})
    return out


async def canonical_of(ex: Executor, customer_id: str) -> str | None:
    row = (await ex.execute(sa.select(customers.c.canonical_id)
                            .where(customers.c.id == customer_id))).first()
    return None if row is None else str(row[0])


async def members(ex: Executor, canonical: str) -> list[str]:
    rows = await ex.execute(sa.select(customers.c.id).where(customers.c.canonical_id == canonical)
                            .order_by(customers.c.id))
    return [r[0] for r in rows]


async def owners(ex: Executor, hashes: Sequence[str]) -> dict[str, tuple[str, str]]:
    """value_hash → (record id, canonical id) for identifiers already known.

    Two reads, not a join: owners are distributed by the identifier, customers by id."""
    found: dict[str, str] = {}
    for i in range(0, len(hashes), 500):
        q = (sa.select(identity_owners.c.value_hash, identity_owners.c.customer_id)
             .where(identity_owners.c.value_hash.in_(list(hashes[i:i + 500]))))
        found.update({r.value_hash: r.customer_id for r in await ex.execute(q)})
    canon = await canonical_map(ex, found.values())
    return {h: (c, canon[c]) for h, c in found.items() if c in canon}


async def create_customers(uow: UnitOfWork, ids: Sequence[str], channel: str, now: Any) -> None:
    if not ids:
        return
    await uow.execute(customers.insert(), [
        {"id": cid, "canonical_id": cid, "channel": channel, "created_at": now} for cid in ids
    ])
    for cid in ids:
        uow.emit(Event.new("profiles.customer_created", {"customer_id": cid, "channel": channel},
                           subject_id=cid, source=channel, occurred_at=now))


class IdentityGraph:
    def __init__(self, vault: Vault, rules: IdentityRules) -> None:
        self.vault = vault
        self.rules = rules

    async def seal_values(
        self, uow: UnitOfWork, items: Sequence[tuple[str, str]]
    ) -> list[bytes]:
        """Seal (customer id, value) pairs under each customer's data key."""
        keys = await self.vault.keys_for(uow, {c for c, _ in items}, create=True)
        return [Vault.seal(keys[c], v.encode(), c.encode()) for c, v in items]

    async def link(
        self, uow: UnitOfWork, customer_id: str, kind: str, value: str, *, source: str,
        reason: str, event_id: str | None, now: Any,
    ) -> str:
        """Attach an identifier to a customer (merging where the rules allow).

        Returns the live customer id the caller's customer belongs to afterwards.
        """
        h = self.vault.blind_index(kind, value)
        current = await canonical_of(uow, customer_id) or customer_id
        found = (await owners(uow, [h])).get(h)
        if found is not None and found[1] == current:
            return current
        rule = self.rules.rule(kind)
        if found is None:
            counts = await self._kinds(uow, current)
            limit = rule.max_per_customer
            if limit is not None and len(counts.get(kind, set())) >= limit:
                await self._audit(uow, h, kind, customer_id, "refused",
                                  f"customer already holds {limit} identifier(s) of kind {kind}",
                                  source, event_id, now)
                return current
            result = await uow.execute(insert_ignore(uow.dialect, identity_owners),
                                       {"value_hash": h, "customer_id": customer_id})
            if result.rowcount:
                (sealed,) = await self.seal_values(uow, [(customer_id, value)])
                await uow.execute(identities.insert().values(
                    id=new_id(), value_hash=h, customer_id=customer_id, kind=kind,
                    value_enc=sealed, source=source, reason=reason[:200],
                    event_id=event_id, created_at=now))
                await self._audit(uow, h, kind, customer_id, "linked", reason, source,
                                  event_id, now)
                return current
            found = (await owners(uow, [h]))[h]  # a concurrent writer linked it first
            if found[1] == current:
                return current
        other = found[1]
        if not rule.merge:
            await self._audit(uow, h, kind, customer_id, "refused",
                              f"identifiers of kind {kind} do not merge customers",
                              source, event_id, now)
            return current
        claimants = await self._claimants(uow, h) | {found[0]}
        if rule.max_customers is not None and len(claimants | {customer_id}) > rule.max_customers:
            await self._audit(uow, h, kind, customer_id, "shared",
                              f"{kind} presented by more than {rule.max_customers} customers: "
                              "treated as shared, no merge", source, event_id, now)
            return current
        survivor, refusal = await self.merge(
            uow, other, current, kind=kind, reason=reason, actor=f"rule:{kind}",
            event_id=event_id, now=now)
        outcome = "refused" if refusal else "merged"
        await self._audit(uow, h, kind, customer_id, outcome, refusal or reason, source,
                          event_id, now)
        return survivor

    async def merge(
        self, uow: UnitOfWork, a: str, b: str, *, kind: str, reason: str, actor: str,
        event_id: str | None, now: Any, force: bool = False,
    ) -> tuple[str, str | None]:
        """Merge the customers of records a and b. Returns (live id of b's side, refusal)."""
        await lock_graph(uow)
        ca = await canonical_of(uow, a)
        cb = await canonical_of(uow, b)
        if ca is None or cb is None:
            raise NotFound("no such customer", code="profiles.customer_not_found")
        if ca == cb:
            return ca, None
        ma, mb = await members(uow, ca), await members(uow, cb)
        if await self._blocked(uow, ma, mb):
            return cb, "staff separated these customers; they are not merged again"
        if not force:
            refusal = merge_refusal(self.rules, await self._kinds(uow, ca),
                                    await self._kinds(uow, cb))
            if refusal:
                return cb, refusal
        survivor, merged = survivor_of(ca, cb)
        await uow.execute(customers.update().where(customers.c.canonical_id == merged)
                          .values(canonical_id=survivor))
        await uow.execute(customers.update().where(customers.c.id == merged).values(merged_at=now))
        await uow.execute(merges.insert().values(
            id=new_id(), survivor_id=survivor, merged_id=merged, kind=kind, reason=reason[:300],
            actor=actor[:100], event_id=event_id, created_at=now))
        uow.emit(Event.new("profiles.customers_merged",
                           {"survivor_id": survivor, "merged_id": merged, "reason": reason},
                           subject_id=survivor, source="profiles", occurred_at=now))
        return survivor, None

    async def unmerge(
        self, uow: UnitOfWork, restored_id: str, *, actor: str, reason: str, now: Any
    ) -> tuple[str, str]:
        """Split a merged record (and what was merged into it) off again; (survivor, restored)."""
        await lock_graph(uow)
        row = (await uow.execute(
            sa.select(merges).where(merges.c.merged_id == restored_id, merges.c.undone_at.is_(None))
        )).first()
        if row is None:
            raise Conflict("this customer record is not merged into another",
                           code="profiles.not_merged")
        group_id = await canonical_of(uow, restored_id)
        assert group_id is not None
        group = await members(uow, group_id)
        await uow.execute(merges.update().where(
                merges.c.merged_id == row.merged_id, merges.c.id == row.id).values(
            undone_at=now, undone_by=actor[:100], undo_reason=reason[:300]))
        a, b = sorted((row.survivor_id, restored_id))
        await uow.execute(insert_ignore(uow.dialect, merge_blocks),
                          {"a_id": a, "b_id": b, "actor": actor[:100], "created_at": now})
        await self._recompute(uow, group)
        survivor = await canonical_of(uow, row.survivor_id) or row.survivor_id
        restored = await canonical_of(uow, restored_id) or restored_id
        await uow.execute(customers.update().where(customers.c.id == restored)
                          .values(merged_at=None))
        uow.emit(Event.new("profiles.customers_unmerged",
                           {"survivor_id": survivor, "restored_id": restored},
                           subject_id=survivor, source="profiles", occurred_at=now))
        return survivor, restored

    async def _recompute(self, uow: UnitOfWork, group: list[str]) -> None:
        """Canonical ids of a group from its active merges: each part's oldest record."""
        parent = {m: m for m in group}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        rows = await uow.execute(sa.select(merges.c.survivor_id, merges.c.merged_id).where(
            merges.c.merged_id.in_(group), merges.c.undone_at.is_(None)))
        for r in rows:
            if r.survivor_id in parent:
                ra, rb = find(r.survivor_id), find(r.merged_id)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
        for m in group:
            await uow.execute(customers.update().where(customers.c.id == m)
                              .values(canonical_id=find(m)))

    async def _kinds(self, ex: Executor, canonical: str) -> dict[str, set[str]]:
        q = (sa.select(identities.c.kind, identities.c.value_hash)
             .select_from(identities.join(customers, customers.c.id == identities.c.customer_id))
             .where(customers.c.canonical_id == canonical))
        out: dict[str, set[str]] = {}
        for r in await ex.execute(q):
            out.setdefault(r.kind, set()).add(r.value_hash)
        return out

    async def _claimants(self, ex: Executor, value_hash: str) -> set[str]:
        rows = await ex.execute(sa.select(identity_links.c.customer_id).distinct()
                                .where(identity_links.c.value_hash == value_hash))
        return {r[0] for r in rows}

    async def _blocked(self, ex: Executor, a: list[str], b: list[str]) -> bool:
        q = sa.select(merge_blocks.c.a_id).where(sa.or_(
            sa.and_(merge_blocks.c.a_id.in_(a), merge_blocks.c.b_id.in_(b)),
            sa.and_(merge_blocks.c.a_id.in_(b), merge_blocks.c.b_id.in_(a)),
        )).limit(1)
        return (await ex.execute(q)).first() is not None

    async def _audit(
        self, uow: UnitOfWork, value_hash: str, kind: str, customer_id: str, outcome: str,
        reason: str, source: str, event_id: str | None, now: Any,
    ) -> None:
        await uow.execute(identity_links.insert().values(
            id=new_id(), value_hash=value_hash, kind=kind, customer_id=customer_id,
            outcome=outcome, reason=reason[:300], source=source[:64], event_id=event_id, at=now))
