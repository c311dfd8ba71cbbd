"""Who a data-subject request is about: the survivor id, the ids merged into it, identifiers.

Profiles owns the identity graph. When its `ProfileService` offers ``member_ids`` we
ask it; otherwise the merge history is read from the event log
(``profiles.customers_merged`` / ``profiles.customers_unmerged``), which every
profiles implementation emits by contract.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.store.tables import events

if TYPE_CHECKING:
    from kunde.kernel import Kernel

log = logging.getLogger("kunde.privacy")
MERGE_TYPES = ("profiles.customers_merged", "profiles.customers_unmerged")
# Profile fields that identify a person and go on the suppression list after erasure.
IDENTIFIER_FIELDS = ("email", "phone", "user_id")


def profile_service(kernel: Kernel) -> Any | None:
    """The profiles feature's `ProfileService`, or None while it does not exist."""
    try:
        module = importlib.import_module("kunde.profiles.service")
    except ImportError:
        return None
    cls = getattr(module, "ProfileService", None)
    return kernel.service(cls) if cls is not None else None


async def subject_ids(kernel: Kernel, customer_id: str) -> list[str]:
    """The customer id first, then every id merged into it (and not unmerged since)."""
    profiles = profile_service(kernel)
    merged_ids: list[str] = []
    for method in ("member_ids", "merged_ids"):
        if profiles is not None and hasattr(profiles, method):
            merged_ids = [str(m) for m in await getattr(profiles, method)(customer_id)
                          if str(m) != customer_id]
            break
    # The merge history in the log as well: it also covers merges profiles has not
    # projected yet.
    seen = {customer_id, *merged_ids}
    frontier = [customer_id]
    async with kernel.db.read() as conn:
        while frontier:
            current = frontier.pop()
            rows = (await conn.execute(
                sa.select(events).where(events.c.subject_id == current,
                                        events.c.type.in_(MERGE_TYPES))
                .order_by(events.c.position))).all()
            live: dict[str, bool] = {}
            for e in await kernel.log.decode(conn, rows):
                p = e.payload or {}
                if e.type == "profiles.customers_merged" and p.get("survivor_id") == current:
                    live[str(p.get("merged_id"))] = True
                elif e.type == "profiles.customers_unmerged" and p.get("survivor_id") == current:
                    live[str(p.get("restored_id"))] = False
            for mid, alive in live.items():
                if alive and mid not in seen:
                    seen.add(mid)
                    merged_ids.append(mid)
                    frontier.append(mid)
    return [customer_id, *merged_ids]


async def identifiers_of(kernel: Kernel, customer_ids: list[str]) -> dict[str, set[str]]:
    """Clear identifiers known for these customers, by kind (held only in memory)."""
    found: dict[str, set[str]] = {"customer_id": set(customer_ids)}
    profiles = profile_service(kernel)
    if profiles is None or not hasattr(profiles, "get_profile"):
        return found
    for cid in customer_ids:
        try:
            profile = await profiles.get_profile(cid)
        except Exception as exc:  # an unknown or erased customer has no profile to read
            log.info("no profile for an erasure subject: %s", type(exc).__name__)
            continue
        if not isinstance(profile, dict):
            continue
        for name in IDENTIFIER_FIELDS:
            value = profile.get(name)
            if isinstance(value, str) and value:
                found.setdefault(name, set()).add(value)
        linked = list(profile.get("identities") or [])
        if hasattr(profiles, "identities"):
            # The identity graph: user ids, anonymous ids and custom ids are not traits.
            linked += await profiles.identities(cid)
        for ident in linked:
            if isinstance(ident, dict) and ident.get("kind") and ident.get("value"):
                found.setdefault(str(ident["kind"]), set()).add(str(ident["value"]))
    return found
