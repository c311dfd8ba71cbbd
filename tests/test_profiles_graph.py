"""Property tests of the identity graph on a real database.

* Merging is order-independent: the same set of links, applied in any order, groups the
  same records under the same live customer.
* No identifier ever points to two live customers, whatever mix of links, merges
  (with guardrails) and unmerges happened.
"""

from __future__ import annotations

import itertools
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.profiles import graph
from kunde.profiles.graph import IdentityGraph
from kunde.profiles.models import IdentifierRule, IdentityRules
from kunde.profiles.tables import customers, identities, identity_owners

_counter = itertools.count()
FAST = settings(max_examples=12, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


async def _records(kernel: Kernel, n: int) -> list[str]:
    ids = [new_id() for _ in range(n)]
    async with kernel.db.transaction() as uow:
        await graph.create_customers(uow, ids, "web", kernel.clock.now())
    return ids


async def _link(kernel: Kernel, g: IdentityGraph, record: str, kind: str, value: str) -> None:
    async with kernel.db.transaction() as uow:
        await g.link(uow, record, kind, value, source="test", reason="property test",
                     event_id=None, now=kernel.clock.now())


async def _partition(kernel: Kernel, records: list[str]) -> list[int]:
    async with kernel.db.read() as conn:
        canon = await graph.canonical_map(conn, records)
    return [records.index(canon[r]) for r in records]


links_strategy = st.integers(min_value=2, max_value=6).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
))


@FAST
@given(case=links_strategy)
async def test_merge_is_order_independent(kernel: Kernel, case: Any) -> None:
    n, links, rnd = case
    g = IdentityGraph(kernel.vault, IdentityRules({"email": IdentifierRule(merge=True)}))
    outcomes = []
    for _ in range(2):
        world = next(_counter)
        records = await _records(kernel, n)
        order = list(enumerate(links))
        rnd.shuffle(order)
        for k, (i, j) in order:
            email = f"w{world}-shared-{k}@example.com"
            # Each link is a shared email presented by both records, in random order too.
            pair = [i, j] if rnd.random() < 0.5 else [j, i]
            for r in pair:
                await _link(kernel, g, records[r], "email", email)
        outcomes.append(await _partition(kernel, records))
    assert outcomes[0] == outcomes[1]
    # The live customer of each group is its oldest record.
    assert all(live <= i for i, live in enumerate(outcomes[0]))


ops_strategy = st.lists(st.one_of(
    st.tuples(st.just("link"), st.integers(0, 4), st.sampled_from(
        ["user_id", "anonymous_id", "email", "phone", "loyalty_card"]), st.integers(0, 3)),
    st.tuples(st.just("unmerge"), st.integers(0, 4), st.just(""), st.just(0)),
), min_size=1, max_size=12)


@FAST
@given(ops=ops_strategy)
async def test_no_identifier_points_to_two_live_customers(kernel: Kernel, ops: Any) -> None:
    from kunde.core.errors import Conflict

    g = IdentityGraph(kernel.vault, IdentityRules())
    world = next(_counter)
    records = await _records(kernel, 5)
    for op, r, kind, v in ops:
        if op == "link":
            await _link(kernel, g, records[r], kind, f"w{world}-{kind}-{v}")
        else:
            try:
                async with kernel.db.transaction() as uow:
                    await g.unmerge(uow, records[r], actor="test", reason="test",
                                    now=kernel.clock.now())
            except Conflict:
                pass
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(customers.c.id, customers.c.canonical_id)
                                   .where(customers.c.id.in_(records)))).all()
        canon = {r.id: r.canonical_id for r in rows}
        owned = (await conn.execute(sa.select(identities.c.value_hash, identities.c.customer_id)
                                    .where(identities.c.customer_id.in_(records)))).all()
        owners = (await conn.execute(
            sa.select(identity_owners.c.value_hash, identity_owners.c.customer_id)
            .where(identity_owners.c.customer_id.in_(records)))).all()
    # Every record's live customer is live itself (flat, no chains).
    assert all(canon[c] == canon[canon[c]] for c in canon)
    # Each identifier belongs to one record, hence to exactly one live customer.
    hashes = [h for h, _ in owned]
    assert len(hashes) == len(set(hashes))
    # The global owner rows (keyed by identifier alone) say the same as the records' rows.
    assert sorted(map(tuple, owners)) == sorted(map(tuple, owned))
    # Guardrail: no live customer holds two user ids.
    per_live: dict[str, int] = {}
    kinds = {h: k for h, k in await _kinds(kernel, records)}
    for h, c in owned:
        if kinds[h] == "user_id":
            per_live[canon[c]] = per_live.get(canon[c], 0) + 1
    assert all(n <= 1 for n in per_live.values())


async def _kinds(kernel: Kernel, records: list[str]) -> list[tuple[str, str]]:
    async with kernel.db.read() as conn:
        rows = await conn.execute(sa.select(identities.c.value_hash, identities.c.kind)
                                  .where(identities.c.customer_id.in_(records)))
        return [(r.value_hash, r.kind) for r in rows]
