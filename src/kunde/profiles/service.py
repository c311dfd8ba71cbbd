"""ProfileService: who a customer is, found by any identifier, and their 360° profile.

Other features use `resolve`, `ensure_customer`, `canonical_id` and `get_profile`;
ingestion uses `resolve_for_ingest` inside its own transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from kunde.core import jsonutil
from kunde.core.errors import InvalidInput, NotFound
from kunde.core.ids import new_id
from kunde.privacy.vault import Vault
from kunde.profiles import graph, reads
from kunde.profiles.graph import IdentityGraph
from kunde.profiles.models import (
    TRAIT_IDENTIFIERS,
    Computed,
    IdentityRules,
    add_orders,
    combine_activity,
)
from kunde.profiles.tables import (
    customer_activity,
    customers,
    identities,
    identity_owners,
    profile_orders,
    traits,
)
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

# Traits surfaced at the top level of `get_profile` for other features' convenience.
LOOKUP_ORDER = ("user_id", "email", "phone")


def identity_rules_from_settings(raw: str) -> IdentityRules:
    """Rules from ``KUNDE_IDENTITY_RULES`` (JSON) over the defaults, read at service start."""
    try:
        return IdentityRules.from_json(raw)
    except ValueError as exc:
        raise InvalidInput(f"KUNDE_IDENTITY_RULES: {exc}", code="profiles.invalid_rules") from exc


class ProfileService:
    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.rules = identity_rules_from_settings(kernel.settings.identity_rules)
        self.graph = IdentityGraph(kernel.vault, self.rules)

    # -- lookups -----------------------------------------------------------------
    async def resolve(self, kind: str, value: str) -> str | None:
        """The live customer id holding this identifier, or None."""
        if not value or not value.strip():
            return None
        h = self.k.vault.blind_index(kind, value)
        async with self.k.db.read() as conn:
            found = (await graph.owners(conn, [h])).get(h)
        return None if found is None else found[1]

    async def canonical_id(self, customer_id: str) -> str:
        """The live customer a (possibly merged) customer id belongs to; unknown ids unchanged."""
        async with self.k.db.read() as conn:
            return await graph.canonical_of(conn, customer_id) or customer_id

    async def member_ids(self, customer_id: str) -> list[str]:
        """Every customer record stitched into this customer (the live one first)."""
        async with self.k.db.read() as conn:
            canonical = await graph.canonical_of(conn, customer_id)
            if canonical is None:
                return []
            rest = [m for m in await graph.members(conn, canonical) if m != canonical]
        return [canonical, *rest]

    # -- creating ----------------------------------------------------------------
    async def ensure_customer(
        self, identifiers: Mapping[str, str], channel: str, *,
        traits: Mapping[str, Any] | None = None, uow: UnitOfWork | None = None,
    ) -> str:
        """Find the customer holding any of these identifiers, or create one; link the rest.

        ``identifiers`` maps kinds (email, phone, user_id, anonymous_id or a configured
        custom kind) to values. Email and phone also become traits. Returns the live id.
        """
        clean = {k: v for k, v in identifiers.items() if v and str(v).strip()}
        if not clean:
            raise InvalidInput("at least one identifier is needed",
                               code="profiles.no_identifier")
        for kind in clean:
            if not self.rules.is_known(kind):
                raise InvalidInput(f"unknown identifier kind {kind!r}",
                                   code="profiles.unknown_identifier_kind")
        if uow is None:
            async with self.k.db.transaction() as own:
                return await self._ensure(own, clean, channel, traits)
        return await self._ensure(uow, clean, channel, traits)

    async def _ensure(self, uow: UnitOfWork, ids: dict[str, str], channel: str,
                      extra: Mapping[str, Any] | None) -> str:
        now = self.k.clock.now()
        hashes = {k: self.k.vault.blind_index(k, v) for k, v in ids.items()}
        found = await graph.owners(uow, list(hashes.values()))
        order = sorted(ids, key=lambda k: LOOKUP_ORDER.index(k) if k in LOOKUP_ORDER else 9)
        customer = next((found[hashes[k]][1] for k in order if hashes[k] in found), None)
        if customer is None:
            customer = new_id()
            await graph.create_customers(uow, [customer], channel, now)
        for kind in order:
            customer = await self.graph.link(
                uow, customer, kind, ids[kind], source=channel, reason="ensure_customer",
                event_id=None, now=now)
        values: dict[str, Any] = {k: ids[k].strip() for k in TRAIT_IDENTIFIERS if k in ids}
        values.update(extra or {})
        if values:
            await self.set_traits(uow, customer, values, source=channel, observed_at=now)
        return customer

    async def resolve_for_ingest(
        self, uow: UnitOfWork, pairs: Sequence[tuple[str | None, str | None]], channel: str,
    ) -> list[str]:
        """The live customer id of each (userId, anonymousId) pair; unknown people are created.

        One lookup for the whole batch. Links that join two known customers are left to
        the identity consumer (it applies the merge rules); here a new user id gets a
        customer of its own and a new anonymous id joins the event's customer.
        """
        vault = self.k.vault
        hashes: dict[tuple[str, str], str] = {}
        for uid, aid in pairs:
            if uid:
                hashes[("user_id", uid)] = vault.blind_index("user_id", uid)
            if aid:
                hashes[("anonymous_id", aid)] = vault.blind_index("anonymous_id", aid)
        known = {h: c for h, (_, c) in (await graph.owners(uow, list(hashes.values()))).items()}
        minted: list[str] = []
        new_links: list[tuple[str, str, str, str]] = []  # hash, kind, value, customer
        out: list[str] = []
        for uid, aid in pairs:
            hu = hashes.get(("user_id", uid)) if uid else None
            ha = hashes.get(("anonymous_id", aid)) if aid else None
            cust = (known.get(hu) if hu else None) or (known.get(ha) if ha and not hu else None)
            if cust is None:
                cust = new_id()
                minted.append(cust)
            for h, kind, value in ((hu, "user_id", uid), (ha, "anonymous_id", aid)):
                if h and value and h not in known:
                    known[h] = cust
                    new_links.append((h, kind, value, cust))
            out.append(cust)
        if new_links:
            out = await self._store_links(uow, new_links, minted, out, channel)
        return out

    async def _store_links(
        self, uow: UnitOfWork, links: list[tuple[str, str, str, str]], minted: list[str],
        out: list[str], channel: str,
    ) -> list[str]:
        now = self.k.clock.now()
        await uow.execute(insert_ignore(uow.dialect, identity_owners),
                          [{"value_hash": h, "customer_id": c} for h, _, _, c in links])
        # Another request may have linked the same new identifier first: use its owner.
        actual = await uow.execute(
            sa.select(identity_owners.c.value_hash, identity_owners.c.customer_id)
            .where(identity_owners.c.value_hash.in_([h for h, *_ in links])))
        owner = {r.value_hash: r.customer_id for r in actual}
        remap: dict[str, str] = {}
        for h, _, _, c in links:
            if owner.get(h, c) != c and c in minted:
                remap[c] = owner[h]
        ours = [link for link in links if owner.get(link[0]) == link[3]]
        if ours:
            sealed = await self.graph.seal_values(uow, [(c, v) for _, _, v, c in ours])
            await uow.execute(identities.insert(), [
                {"id": new_id(), "value_hash": h, "customer_id": c, "kind": kind,
                 "value_enc": s, "source": channel, "reason": "first seen in an event",
                 "event_id": None, "created_at": now}
                for (h, kind, _, c), s in zip(ours, sealed, strict=True)
            ])
        fresh = [c for c in dict.fromkeys(minted) if c not in remap]
        await graph.create_customers(uow, fresh, channel, now)
        if remap:
            canon = await graph.canonical_map(uow, set(remap.values()))
            out = [canon.get(remap[c], remap[c]) if c in remap else c for c in out]
        return out

    # -- traits ------------------------------------------------------------------
    async def set_traits(
        self, uow: UnitOfWork, customer_id: str, values: Mapping[str, Any], *, source: str,
        observed_at: datetime,
    ) -> None:
        """Store traits sealed under the customer's key; last write by event time wins."""
        if not values:
            return
        keys = await self.k.vault.keys_for(uow, [customer_id], create=True)
        key = keys[customer_id]
        now = self.k.clock.now()
        rows = [{"customer_id": customer_id, "name": str(name)[:100],
                 "value_enc": Vault.seal(key, jsonutil.dumps(value), customer_id.encode()),
                 "source": source[:64], "observed_at": observed_at, "updated_at": now}
                for name, value in values.items()]
        ins: Any = (postgresql.insert(traits) if uow.dialect == "postgresql"
                    else sqlite.insert(traits))
        stmt = ins.on_conflict_do_update(
            index_elements=["customer_id", "name"],
            set_={c: getattr(ins.excluded, c)
                  for c in ("value_enc", "source", "observed_at", "updated_at")},
            where=traits.c.observed_at <= ins.excluded.observed_at,
        )
        await uow.execute(stmt, rows)

    # -- reading -----------------------------------------------------------------
    async def identifier_kinds(self, ex: Any, customer_id: str) -> set[str]:
        """Kinds of identifier the person behind ``customer_id`` holds (email, user_id, ...),
        read on the caller's connection or unit of work."""
        canonical = (sa.select(customers.c.canonical_id)
                     .where(customers.c.id == customer_id).scalar_subquery())
        rows = await ex.execute(
            sa.select(identities.c.kind).distinct()
            .select_from(identities.join(customers, customers.c.id == identities.c.customer_id))
            .where(customers.c.canonical_id == canonical))
        return {str(r[0]) for r in rows}

    async def get_profile(self, customer_id: str) -> dict[str, Any]:
        """The live customer's profile: traits (decrypted), computed traits, merged ids.

        ``email``, ``phone``, ``first_name``, ``last_name``, ``name`` and ``locale`` are
        also at the top level (None when unknown). Raises NotFound for an unknown id.
        """
        return await reads.read_profile(self.k, customer_id)

    async def profile_by_identifier(self, kind: str, value: str) -> dict[str, Any]:
        """`get_profile` of the customer holding an identifier (one read snapshot)."""
        if not value or not value.strip():
            raise NotFound("no customer holds that identifier",
                           code="profiles.customer_not_found")
        return await reads.read_profile_by_hash(self.k, self.k.vault.blind_index(kind, value))

    async def _traits(self, conn: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
        rows = (await conn.execute(sa.select(traits).where(traits.c.customer_id.in_(ids)))).all()
        uow = UnitOfWork(conn, self.k.db.dialect)
        keys = await self.k.vault.keys_for(uow, ids, create=False)
        best: dict[str, dict[str, Any]] = {}
        for r in rows:
            key = keys.get(r.customer_id)
            if key is None:
                continue
            cur = best.get(r.name)
            if cur is not None and (cur["observed_at"], cur["source"]) > (r.observed_at, r.source):
                continue
            value = jsonutil.loads(Vault.open_(key, r.value_enc, r.customer_id.encode()))
            best[r.name] = {"value": value, "source": r.source, "observed_at": r.observed_at}
        return best

    async def _computed(self, conn: Any, ids: list[str]) -> Computed:
        act = (await conn.execute(sa.select(customer_activity)
                                  .where(customer_activity.c.customer_id.in_(ids)))).all()
        orders = (await conn.execute(sa.select(profile_orders)
                                     .where(profile_orders.c.customer_id.in_(ids)))).all()
        out = combine_activity([r._mapping for r in act])
        return add_orders(out, [r._mapping for r in orders])

    async def computed(self, customer_id: str) -> Computed:
        async with self.k.db.read() as conn:
            canonical = await graph.canonical_of(conn, customer_id) or customer_id
            return await self._computed(conn, await graph.members(conn, canonical))

    async def identities(self, customer_id: str) -> list[dict[str, Any]]:
        """Every identifier of the customer with its provenance (value decrypted)."""
        ids = await self.member_ids(customer_id)
        async with self.k.db.read() as conn:
            rows = (await conn.execute(sa.select(identities)
                                       .where(identities.c.customer_id.in_(ids))
                                       .order_by(identities.c.created_at))).all()
            uow = UnitOfWork(conn, self.k.db.dialect)
            keys = await self.k.vault.keys_for(uow, ids, create=False)
        out = []
        for r in rows:
            key = keys.get(r.customer_id)
            value = (Vault.open_(key, r.value_enc, r.customer_id.encode()).decode()
                     if key else None)
            out.append({"kind": r.kind, "value": value, "customer_record": r.customer_id,
                        "source": r.source, "reason": r.reason, "event_id": r.event_id,
                        "linked_at": r.created_at})
        return out


async def timeline(
    kernel: Kernel, customer_id: str, *, before: int | None = None,
    types: Sequence[str] | None = None, channels: Sequence[str] | None = None, limit: int = 50,
) -> dict[str, Any]:
    """Every event of the customer (all stitched records), newest first.

    Paged by ``before`` (a log position; the ``next`` cursor of the previous page).
    ``types`` match exactly or by prefix ending in a dot (``ingest.``).
    """
    from kunde.store.tables import events

    ids = await kernel.service(ProfileService).member_ids(customer_id)
    if not ids:
        raise NotFound("no customer with that id", code="profiles.customer_not_found")
    limit = max(1, min(limit, 200))
    q = sa.select(events).where(events.c.subject_id.in_(ids))
    if before:
        q = q.where(events.c.position < before)
    if types:
        exact = [t for t in types if not t.endswith(".")]
        prefixes = [events.c.type.startswith(t) for t in types if t.endswith(".")]
        q = q.where(sa.or_(events.c.type.in_(exact), *prefixes))
    if channels:
        q = q.where(events.c.source.in_(list(channels)))
    async with kernel.db.read() as conn:
        rows = (await conn.execute(q.order_by(events.c.position.desc()).limit(limit))).all()
        decoded = await kernel.log.decode(conn, rows)
    items = [{"id": e.id, "position": e.position, "type": e.type, "channel": e.source,
              "occurred_at": e.occurred_at, "received_at": e.received_at,
              "customer_record": e.subject_id, "payload": e.payload, "erased": e.erased}
             for e in decoded]
    return {"items": items, "next": items[-1]["position"] if len(items) == limit else None}
