"""Event-log consumers: the compact interaction store and the projections we rely on.

Purchases come only from ``commerce.order_placed`` (native and external orders); the
``order_completed`` interaction is skipped so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.core.ids import derived_id
from kunde.kernel import Kernel
from kunde.personalisation.tables import (
    consents,
    erased,
    interactions,
    items,
    searches,
    segment_members,
    tiers,
)
from kunde.store.consumers import Consumer
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore, upsert

VIEW_KINDS = {"product_viewed": "view", "product_reviewed": "view", "product_added": "cart"}
TYPES = frozenset({
    "interaction.recorded", "commerce.order_placed", "consent.changed", "segments.entered",
    "segments.left", "profiles.customers_merged", "loyalty.tier_changed",
})


def _text(value: Any, limit: int) -> str:
    return str(value or "")[:limit]


def _interaction_rows(e: Event) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    p = e.payload or {}
    kind = VIEW_KINDS.get(str(p.get("kind")))
    rows: list[dict[str, Any]] = []
    found: list[dict[str, Any]] = []
    if kind and p.get("sku"):
        rows.append({"id": derived_id(e.id, "0"), "customer_id": e.subject_id,
                     "sku": _text(p["sku"], 120), "kind": kind,
                     "category": _text(p.get("category"), 120), "basket": "",
                     "quantity": int(p.get("quantity") or 1),
                     "value_minor": int(p.get("price_minor") or 0),
                     "currency": _text(p.get("currency"), 3), "occurred_at": e.occurred_at})
        found.append({"sku": _text(p["sku"], 120), "category": _text(p.get("category"), 120)})
    return rows, found


def _order_rows(e: Event) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    p = e.payload or {}
    rows, found = [], []
    for n, line in enumerate(p.get("lines") or []):
        if not line.get("sku"):
            continue
        rows.append({"id": derived_id(e.id, str(n)), "customer_id": e.subject_id,
                     "sku": _text(line["sku"], 120), "kind": "purchase",
                     "category": _text(line.get("category"), 120),
                     "basket": _text(p.get("order_id"), 64),
                     "quantity": int(line.get("quantity") or 1),
                     "value_minor": int(line.get("total_minor") or 0),
                     "currency": _text(p.get("currency"), 3), "occurred_at": e.occurred_at})
        found.append({"sku": _text(line["sku"], 120), "category": _text(line.get("category"), 120),
                      "title": _text(line.get("title"), 200)})
    return rows, found


async def _erased_ids(uow: UnitOfWork, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    rows = await uow.execute(sa.select(erased.c.customer_id).where(
        erased.c.customer_id.in_(sorted(ids))))
    return {r[0] for r in rows}


async def _profile_event(uow: UnitOfWork, e: Event) -> None:
    p = e.payload or {}
    cid = e.subject_id
    if e.type == "consent.changed" and cid and p.get("purpose"):
        await uow.execute(
            upsert(uow.dialect, consents, ["customer_id", "purpose"], ["granted", "updated_at"]),
            {"customer_id": cid, "purpose": _text(p["purpose"], 40),
             "granted": bool(p.get("granted")), "updated_at": e.occurred_at})
    elif e.type == "segments.entered" and cid:
        await uow.execute(insert_ignore(uow.dialect, segment_members),
                          {"customer_id": cid, "segment": _text(p.get("name"), 120)})
    elif e.type == "segments.left" and cid:
        await uow.execute(segment_members.delete().where(
            segment_members.c.customer_id == cid,
            segment_members.c.segment == _text(p.get("name"), 120)))
    elif e.type == "loyalty.tier_changed" and cid:
        tier = p.get("tier") or p.get("new_tier") or p.get("to")
        if tier:
            await uow.execute(upsert(uow.dialect, tiers, ["customer_id"], ["tier"]),
                              {"customer_id": cid, "tier": _text(tier, 40)})
    elif e.type == "profiles.customers_merged":
        survivor, merged = p.get("survivor_id"), p.get("merged_id")
        if survivor and merged:
            for table in (interactions, searches):
                await _move(uow, table, str(merged), str(survivor))


async def _move(uow: UnitOfWork, table: sa.Table, merged: str, survivor: str) -> None:
    """Give the merged customer's rows to the survivor: copied under the survivor's id
    (an id it holds already, from a replayed event, is kept once), then deleted. The
    distribution column of a sharded table cannot be updated in place."""
    others = [c for c in table.c if c.name != "customer_id"]
    copy = sa.select(sa.literal(survivor, sa.String(36)), *others).where(
        table.c.customer_id == merged)
    await uow.execute(insert_ignore(uow.dialect, table).from_select(
        ["customer_id", *(c.name for c in others)], copy))
    await uow.execute(table.delete().where(table.c.customer_id == merged))


async def record(uow: UnitOfWork, events: Sequence[Event], touched: set[str]) -> None:
    """Store the batch's interactions idempotently; ``touched`` collects customers affected."""
    live = [e for e in events if not e.erased and e.payload is not None]
    skip = await _erased_ids(uow, {e.subject_id for e in live if e.subject_id})
    rows: list[dict[str, Any]] = []
    found: list[dict[str, Any]] = []
    for e in live:
        if e.subject_id in skip:
            continue
        if e.type == "interaction.recorded" and e.subject_id:
            p = e.payload or {}
            if p.get("kind") == "products_searched" and p.get("query"):
                await uow.execute(insert_ignore(uow.dialect, searches), {
                    "id": derived_id(e.id, "q"), "customer_id": e.subject_id,
                    "query": _text(p["query"], 200), "occurred_at": e.occurred_at})
                continue
            r, f = _interaction_rows(e)
        elif e.type == "commerce.order_placed" and e.subject_id:
            r, f = _order_rows(e)
        else:
            if e.type == "profiles.customers_merged" and rows:
                # What the batch recorded before the merge moves with it.
                await uow.execute(insert_ignore(uow.dialect, interactions), rows)
                rows = []
            await _profile_event(uow, e)
            if e.type == "consent.changed" and e.subject_id:
                touched.add(e.subject_id)  # cached responses were decided under the old one
            continue
        rows += r
        found += f
        if r and e.subject_id:
            touched.add(e.subject_id)
    if rows:
        await uow.execute(insert_ignore(uow.dialect, interactions), rows)
    known: dict[str, dict[str, Any]] = {}
    for product in found:
        known.setdefault(product["sku"], {"sku": product["sku"],
                                          "category": product["category"],
                                          "title": product.get("title", "")})
    if known:
        await uow.execute(insert_ignore(uow.dialect, items), list(known.values()))


def consumers(kernel: Kernel) -> list[Consumer]:
    from kunde.personalisation.service import RecommendationService

    async def handle(uow: UnitOfWork, events: Sequence[Event]) -> None:
        touched: set[str] = set()
        await record(uow, events, touched)
        if touched:
            service = kernel.service(RecommendationService)
            uow.after_commit(lambda: service.forget(touched))

    return [Consumer(name="personalisation.interactions", handle=handle, types=TYPES)]
