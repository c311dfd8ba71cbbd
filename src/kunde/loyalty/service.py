"""LoyaltyService: the use cases other features and the API call.

Contract for other features (docs/loyalty.md):
``grant_goodwill(uow, customer_id, points, reason, cause_id)`` and
``member_summary(customer_id) -> dict`` (tier, balance, pending, …).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa

from kunde.core.events import Event
from kunde.loyalty import ledger
from kunde.loyalty.models import Programme
from kunde.loyalty.tables import members, programmes, transactions
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

PROGRAMME_ID = "current"
PROGRAMME_TTL = 2.0  # seconds another process may serve a superseded programme


class LoyaltyService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._programme: Programme | None = None
        self._version = -1
        self._checked = 0.0

    # -- programme -------------------------------------------------------------
    async def programme(self) -> Programme:
        if self._programme is not None and time.monotonic() - self._checked < PROGRAMME_TTL:
            return self._programme
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(programmes.c.version, programmes.c.config)
                                      .where(programmes.c.id == PROGRAMME_ID))).first()
        if row is None:
            self._programme, self._version = Programme(), 0
        elif row.version != self._version:
            self._programme = msgspec.convert(row.config, Programme)
            self._version = int(row.version)
        self._checked = time.monotonic()
        assert self._programme is not None
        return self._programme

    def set_cached(self, programme: Programme, version: int) -> None:
        self._programme, self._version, self._checked = programme, version, time.monotonic()

    def now(self) -> datetime:
        return self.kernel.clock.now()

    # -- members ---------------------------------------------------------------
    async def ensure_member(self, uow: UnitOfWork, customer_id: str, now: datetime) -> str:
        """Enrol the customer (in the lowest tier) if needed; returns the current tier id."""
        prog = await self.programme()
        base = prog.tiers[0].id if prog.tiers else "member"
        await uow.execute(insert_ignore(uow.dialect, members), {
            "customer_id": customer_id, "tier": base, "tier_since": now,
            "tier_review_at": now + timedelta(days=prog.tier_policy.review_days),
            "joined_at": now,
        })
        row = (await uow.execute(sa.select(members.c.tier).where(
            members.c.customer_id == customer_id))).first()
        return str(row[0]) if row else base

    async def expiry_for(self, available_at: datetime) -> datetime | None:
        days = (await self.programme()).expiry.days
        return available_at + timedelta(days=days) if days else None

    # -- contracts -------------------------------------------------------------
    async def grant_goodwill(
        self, uow: UnitOfWork, customer_id: str, points: int, reason: str, cause_id: str
    ) -> str | None:
        """Credit goodwill points now, exactly once per ``cause_id``; returns the entry id
        (None when that cause was already granted or ``points`` <= 0)."""
        now = self.now()
        await self.ensure_member(uow, customer_id, now)
        posted = await ledger.credit(
            uow, kind="goodwill", source="s:goodwill", customer_id=customer_id, points=points,
            cause_id=cause_id, rule="goodwill", reason=reason or "goodwill", now=now,
            expires_at=await self.expiry_for(now),
        )
        if posted is None:
            return None
        self.emit_awarded(uow, customer_id, posted.txn_id, points, "goodwill", reason, cause_id,
                          pending=False)
        return posted.txn_id

    async def member_summary(self, customer_id: str) -> dict[str, Any]:
        """``{customer_id, member, tier, tier_name, balance, pending, points_name, benefits}``."""
        from kunde.loyalty import reads

        prog = await self.programme()
        # One indexed query on the hot path: the member row joined to its two accounts.
        rows = await self.kernel.db.quick.fetch(reads.SUMMARY, cid=customer_id)
        return self.summary_of(prog, customer_id, rows)

    @staticmethod
    def summary_of(prog: Programme, customer_id: str, rows: list[dict[str, Any]]
                   ) -> dict[str, Any]:
        row = rows[0] if rows else None
        bal = {"available": 0, "pending": 0}
        bal.update({r["bucket"]: int(r["balance"]) for r in rows if r["bucket"]})
        tier = prog.tier(row["tier"] if row else None)
        return {
            "customer_id": customer_id,
            "member": row is not None,
            "tier": row["tier"] if row else None,
            "tier_name": tier.name if tier else None,
            "balance": bal["available"],
            "pending": bal["pending"],
            "points_name": prog.points_name,
            "benefits": benefits(tier),
        }

    # -- events ----------------------------------------------------------------
    def emit_awarded(self, uow: UnitOfWork, customer_id: str, entry_id: str, points: int,
                     rule: str, reason: str, cause_id: str, *, pending: bool) -> None:
        uow.emit(Event.new("loyalty.points_awarded", {
            "entry_id": entry_id, "points": points, "rule": rule, "reason": reason,
            "cause_id": cause_id, "pending": pending,
        }, subject_id=customer_id, source="loyalty"))

    # -- history ---------------------------------------------------------------
    async def history(self, customer_id: str, limit: int = 50) -> list[dict[str, Any]]:
        async with self.kernel.db.read() as conn:
            rows = await conn.execute(
                sa.select(transactions).where(transactions.c.customer_id == customer_id)
                .order_by(transactions.c.created_at.desc(), transactions.c.id).limit(limit))
            return [{"id": r.id, "kind": r.kind, "points": int(r.points), "rule": r.rule,
                     "reason": r.reason, "ref": r.ref, "at": r.created_at} for r in rows]

    # -- periodic --------------------------------------------------------------
    async def run_due(self, limit: int = 500) -> dict[str, int]:
        """Release pending lots whose return window passed and expire old lots (FIFO)."""
        now = self.now()
        done = {"released": 0, "expired": 0}
        async with self.kernel.db.read() as conn:
            uow = UnitOfWork(conn, self.kernel.db.dialect)
            due = await ledger.due_lots(uow, now, limit)
        for cid, lot_id in due["release"]:
            async with self.kernel.db.transaction() as uow:
                if await ledger.release_lot(uow, cid, lot_id, now):
                    done["released"] += 1
        async with self.kernel.db.read() as conn:
            due = await ledger.due_lots(UnitOfWork(conn, self.kernel.db.dialect), now, limit)
        for cid, lot_id in due["expire"]:
            async with self.kernel.db.transaction() as uow:
                posted = await ledger.expire_lot(uow, cid, lot_id, now)
                if posted:
                    done["expired"] += 1
                    uow.emit(Event.new("loyalty.points_expired", {
                        "entry_id": posted.txn_id, "points": -posted.points, "lot_id": lot_id,
                    }, subject_id=cid, source="loyalty"))
        return done


def benefits(tier: Any) -> dict[str, Any]:
    if tier is None:
        return {"earn_multiplier": 1.0, "free_shipping": False, "early_access": False}
    return {"earn_multiplier": tier.earn_multiplier, "free_shipping": tier.free_shipping,
            "early_access": tier.early_access}
