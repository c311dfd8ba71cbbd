"""Export and erasure of what the profiles feature holds about a customer (GDPR)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.profiles.routes import identity_report
from kunde.profiles.service import ProfileService
from kunde.profiles.service_consent import ConsentService
from kunde.profiles.service_segments import SegmentService
from kunde.profiles.tables import (
    consent_records,
    consent_state,
    customer_activity,
    customers,
    identities,
    identity_links,
    identity_owners,
    merge_blocks,
    merges,
    profile_orders,
    segment_members,
    traits,
)
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.kernel import Kernel


async def export(kernel: Kernel, customer_ids: Sequence[str]) -> dict[str, Any]:
    """Profile, identities with provenance, consent history and segments of each live customer."""
    profiles = kernel.service(ProfileService)
    out: dict[str, Any] = {"customers": []}
    seen: set[str] = set()
    for cid in customer_ids:
        canonical = await profiles.canonical_id(cid)
        if canonical in seen or not await profiles.member_ids(canonical):
            continue
        seen.add(canonical)
        out["customers"].append({
            "profile": await profiles.get_profile(canonical),
            "identities": await identity_report(kernel, canonical),
            "consent": await kernel.service(ConsentService).history(canonical),
            "segments": await kernel.service(SegmentService).of_customer(canonical),
        })
    return out


async def erase(kernel: Kernel, uow: UnitOfWork, customer_ids: Sequence[str]) -> dict[str, int]:
    """Delete every profiles row about these customer records; returns rows per kind."""
    ids = list(customer_ids)
    counts: dict[str, int] = {}
    # The owner rows of their identifiers first (keyed by the identifier: found by hash).
    hashes = [r[0] for r in await uow.execute(
        sa.select(identities.c.value_hash).where(identities.c.customer_id.in_(ids)))]
    for i in range(0, len(hashes), 500):
        await uow.execute(identity_owners.delete().where(
            identity_owners.c.value_hash.in_(hashes[i:i + 500]),
            identity_owners.c.customer_id.in_(ids)))
    for name, table, column in (
        ("traits", traits, traits.c.customer_id),
        ("identities", identities, identities.c.customer_id),
        ("identity_links", identity_links, identity_links.c.customer_id),
        ("consent_records", consent_records, consent_records.c.customer_id),
        ("consent_state", consent_state, consent_state.c.customer_id),
        ("activity", customer_activity, customer_activity.c.customer_id),
        ("orders", profile_orders, profile_orders.c.customer_id),
        ("segment_memberships", segment_members, segment_members.c.customer_id),
    ):
        result = await uow.execute(table.delete().where(column.in_(ids)))
        counts[name] = int(result.rowcount or 0)
    result = await uow.execute(merges.delete().where(
        sa.or_(merges.c.survivor_id.in_(ids), merges.c.merged_id.in_(ids))))
    counts["merges"] = int(result.rowcount or 0)
    await uow.execute(merge_blocks.delete().where(
        sa.or_(merge_blocks.c.a_id.in_(ids), merge_blocks.c.b_id.in_(ids))))
    result = await uow.execute(customers.delete().where(customers.c.id.in_(ids)))
    counts["customers"] = int(result.rowcount or 0)
    return counts
