"""The profile read path: one snapshot, five indexed lookups, on the quick readers.

`GET /v1/profiles/{id}` and the lookup by identifier are the Customer 360's hottest
reads. They run on `Database.quick` (compiled Core statements on the bare driver)
and join through ``customers.canonical_id`` so no statement needs an IN-list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core import jsonutil
from kunde.core.errors import NotFound
from kunde.privacy.tables import subject_keys
from kunde.privacy.vault import Vault
from kunde.profiles.models import TOP_LEVEL_TRAITS, add_orders, combine_activity
from kunde.profiles.tables import (
    customer_activity,
    customers,
    identity_owners,
    profile_orders,
    traits,
)
from kunde.store.quick import Query, QuickSession

if TYPE_CHECKING:
    from kunde.kernel import Kernel

_person = sa.bindparam("canonical", type_=sa.String())

# A subquery, not a join: owners are distributed by the identifier, customers by id.
OWNER_OF_HASH = Query(
    sa.select(customers.c.canonical_id)
    .where(customers.c.id == sa.select(identity_owners.c.customer_id)
           .where(identity_owners.c.value_hash == sa.bindparam("hash", type_=sa.String()))
           .scalar_subquery()))

RECORDS = Query(
    sa.select(customers.c.id, customers.c.canonical_id, customers.c.created_at,
              customers.c.channel)
    .where(customers.c.canonical_id == sa.select(customers.c.canonical_id)
           .where(customers.c.id == sa.bindparam("cid", type_=sa.String()))
           .scalar_subquery())
    .order_by(customers.c.id))

SEALED_TRAITS = Query(
    sa.select(traits.c.customer_id, traits.c.name, traits.c.value_enc, traits.c.source,
              traits.c.observed_at, subject_keys.c.wrapped_key, subject_keys.c.master_key_id)
    .select_from(traits.join(customers, customers.c.id == traits.c.customer_id)
                 .join(subject_keys, subject_keys.c.subject_id == traits.c.customer_id))
    .where(customers.c.canonical_id == _person))

ACTIVITY = Query(
    sa.select(customer_activity)
    .select_from(customer_activity.join(customers,
                                        customers.c.id == customer_activity.c.customer_id))
    .where(customers.c.canonical_id == _person))

ORDERS = Query(
    sa.select(profile_orders)
    .select_from(profile_orders.join(customers, customers.c.id == profile_orders.c.customer_id))
    .where(customers.c.canonical_id == _person))


async def read_profile(kernel: Kernel, customer_id: str) -> dict[str, Any]:
    async with kernel.db.quick.session() as q:
        return await _profile(kernel.vault, q, customer_id)


async def read_profile_by_hash(kernel: Kernel, value_hash: str) -> dict[str, Any]:
    async with kernel.db.quick.session() as q:
        owner = await q.fetch_one(OWNER_OF_HASH, hash=value_hash)
        if owner is None:
            raise NotFound("no customer holds that identifier",
                           code="profiles.customer_not_found")
        return await _profile(kernel.vault, q, owner["canonical_id"])


async def _profile(vault: Vault, q: QuickSession, customer_id: str) -> dict[str, Any]:
    records = await q.fetch(RECORDS, cid=customer_id)
    if not records:
        raise NotFound("no customer with that id", code="profiles.customer_not_found")
    canonical = records[0]["canonical_id"]
    ids = [r["id"] for r in records]
    live = next(r for r in records if r["id"] == canonical)
    best: dict[str, dict[str, Any]] = {}
    for r in await q.fetch(SEALED_TRAITS, canonical=canonical):
        cur = best.get(r["name"])
        if cur is not None and (cur["observed_at"], cur["source"]) > (r["observed_at"],
                                                                      r["source"]):
            continue
        sid = r["customer_id"]
        key = vault.subject_key(sid, r["wrapped_key"], r["master_key_id"])
        value = jsonutil.loads(Vault.open_(key, r["value_enc"], sid.encode()))
        best[r["name"]] = {"value": value, "source": r["source"],
                           "observed_at": r["observed_at"]}
    computed = add_orders(combine_activity(await q.fetch(ACTIVITY, canonical=canonical)),
                          await q.fetch(ORDERS, canonical=canonical))
    profile: dict[str, Any] = {
        "id": canonical, "customer_id": canonical,
        "merged_ids": [m for m in ids if m != canonical],
        "created_at": live["created_at"], "channel": live["channel"],
        "traits": {k: v["value"] for k, v in best.items()},
        "trait_sources": {k: {"source": v["source"], "observed_at": v["observed_at"]}
                          for k, v in best.items()},
        "computed": computed.as_dict(),
    }
    for name in TOP_LEVEL_TRAITS:
        profile[name] = profile["traits"].get(name)
    return profile
