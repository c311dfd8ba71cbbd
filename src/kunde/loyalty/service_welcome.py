"""The reward-first welcome: points on joining or on granting marketing consent.

One welcome per verified identity (the canonical customer behind merged records), at
most ``max_per_hour`` across the programme against sign-up farms; an anonymous visitor
has not joined.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.loyalty import ledger
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.tables import welcomes
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

MARKETING = ("marketing_email", "marketing_sms", "marketing_push")
# Identifiers that make a customer record a person who can join (not anonymous ids).
JOINING_IDENTIFIERS = frozenset({"user_id", "email", "phone"})


class WelcomeReward:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.svc = kernel.service(LoyaltyService)

    async def grant(self, uow: UnitOfWork, cid: str, event: Event, now: datetime) -> None:
        """Welcome the person once, on joining or on granting marketing consent."""
        prog = await self.svc.programme()
        w = prog.welcome
        p = event.payload or {}
        if w.points <= 0:
            return
        if event.type in ("profiles.customer_created", "ingest.identify"):
            # Joining is holding a real identifier (user id, email, phone), on creation or
            # at the first identify: an anonymous visitor is not a member, and must not
            # use up the welcome budget of the hour.
            if w.trigger == "consent" or not await self._known_person(uow, cid):
                return
            trigger = "joined"
        else:
            if w.trigger == "joined" or not (p.get("granted") and p.get("purpose") in MARKETING):
                return
            trigger = "consent"
        identity = await canonical(self.kernel, cid)
        recent = (await uow.execute(sa.select(sa.func.count()).select_from(welcomes).where(
            welcomes.c.granted_at > now - timedelta(hours=1)))).scalar_one()
        if recent >= w.max_per_hour:  # velocity guard against sign-up farms
            return
        won = await uow.execute(insert_ignore(uow.dialect, welcomes), {
            "identity": identity, "customer_id": cid, "trigger": trigger, "granted_at": now})
        if won.rowcount != 1:
            return
        await self.svc.ensure_member(uow, cid, now)
        posted = await ledger.credit(
            uow, kind="welcome", source="s:issued", customer_id=cid, points=w.points,
            cause_id=identity, rule="welcome", reason=f"welcome reward ({trigger})", now=now,
            expires_at=await self.svc.expiry_for(now))
        if posted:
            uow.emit(Event.new("loyalty.welcome_granted", {
                "entry_id": posted.txn_id, "points": w.points, "trigger": trigger,
            }, subject_id=cid, source="loyalty"))

    async def _known_person(self, uow: UnitOfWork, cid: str) -> bool:
        try:
            from kunde.profiles.service import ProfileService
        except ImportError:  # profiles not installed: every customer id is a person
            return True
        kinds = await self.kernel.service(ProfileService).identifier_kinds(uow, cid)
        return bool(kinds & JOINING_IDENTIFIERS)


async def canonical(kernel: Kernel, customer_id: str) -> str:
    """The verified identity behind a customer id (survivor of merges), when profiles runs."""
    try:
        from kunde.profiles.service import ProfileService
    except ImportError:  # profiles not installed: the id itself is the identity
        return customer_id
    return await kernel.service(ProfileService).canonical_id(customer_id)
