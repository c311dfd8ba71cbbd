"""Rewards catalog and redemption: atomic, idempotent, no overspend, no oversell.

A redemption is one transaction: the stock counter is decremented with a
``available >= 1`` guard, the points are debited with a ``balance >= cost``
guard, the voucher is issued through commerce's `VoucherService` in the same
transaction, and the redemption row (id derived from the member and the
Idempotency-Key) is inserted. Any refusal rolls the whole thing back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.core.ids import derived_id, new_id
from kunde.loyalty import ledger
from kunde.loyalty.errors import NotEligible, OutOfStock, UnknownReward
from kunde.loyalty.models import Programme, Quest, Reward
from kunde.loyalty.read import ranked_rewards
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.tables import (
    member_segments,
    members,
    purchases,
    quest_marks,
    redemptions,
    reward_stock,
)
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

VOUCHER_KINDS = {"voucher_amount": "amount", "voucher_percent": "percent",
                 "free_shipping": "free_shipping"}


@runtime_checkable
class MemberTaste(Protocol):
    """What a ranker knows of a member: the port personalisation plugs a model into."""

    def rank_rewards(self, history: dict[str, Any], rewards: list[Reward]) -> list[Reward]: ...

    def rank_quests(self, history: dict[str, Any], quests: list[Quest]) -> list[Quest]: ...


class AffinityTaste:
    """Ranks by the member's own history: categories bought, events done, affordability."""

    def rank_rewards(self, history: dict[str, Any], rewards: list[Reward]) -> list[Reward]:
        cats: dict[str, int] = history.get("categories", {})
        balance = int(history.get("balance", 0))

        def score(r: Reward) -> tuple[float, str]:
            affinity = cats.get(r.category or "", 0)
            affordable = 1.0 if r.cost <= balance else balance / r.cost
            return (-(affinity * 2 + affordable), r.id)
        return sorted(rewards, key=score)

    def rank_quests(self, history: dict[str, Any], quests: list[Quest]) -> list[Quest]:
        done: dict[str, int] = history.get("quest_steps", {})
        return sorted(quests, key=lambda q: (-done.get(q.id, 0), q.id))


def eligible(prog: Programme, reward: Reward, tier: str | None, segments: set[str]) -> str | None:
    """Why the member may not have this reward, or None when they may."""
    if reward.min_tier and prog.tier_rank(tier) < prog.tier_rank(reward.min_tier):
        need = prog.tier(reward.min_tier)
        return f"needs tier {need.name if need else reward.min_tier}"
    if reward.segments and not segments & set(reward.segments):
        return "only for members of " + ", ".join(reward.segments)
    return None


class _AlreadyRedeemed(Exception):
    """A concurrent request with the same Idempotency-Key committed first."""


class RewardService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.svc = kernel.service(LoyaltyService)
        self.taste: MemberTaste = AffinityTaste()

    async def _segments(self, conn: Any, cid: str) -> set[str]:
        return set((await conn.execute(sa.select(member_segments.c.segment).where(
            member_segments.c.customer_id == cid))).scalars().all())

    async def redeem(self, customer_id: str, reward_id: str, idempotency_key: str | None
                     ) -> dict[str, Any]:
        prog = await self.svc.programme()
        reward = prog.reward(reward_id)
        if reward is None:
            raise UnknownReward(f"no reward {reward_id!r} in the catalog")
        rid = derived_id("redemption", customer_id, idempotency_key or new_id())
        async with self.kernel.db.read() as conn:
            done = (await conn.execute(sa.select(redemptions).where(
                redemptions.c.customer_id == customer_id, redemptions.c.id == rid))).first()
        if done is not None:
            return self._out(done._mapping)
        try:
            return await self._redeem(customer_id, reward, rid, prog)
        except _AlreadyRedeemed:
            async with self.kernel.db.read() as conn:
                done = (await conn.execute(sa.select(redemptions).where(
                    redemptions.c.customer_id == customer_id, redemptions.c.id == rid))).first()
            if done is None:
                raise
            return self._out(done._mapping)

    async def _redeem(self, customer_id: str, reward: Reward, rid: str, prog: Programme
                      ) -> dict[str, Any]:
        now = self.kernel.clock.now()
        async with self.kernel.db.transaction() as uow:
            tier = await self.svc.ensure_member(uow, customer_id, now)
            why = eligible(prog, reward, tier, await self._segments(uow, customer_id))
            if why:
                raise NotEligible(f"{reward.name}: {why}", reward_id=reward.id)
            await self._take_stock(uow, reward)
            spent = await ledger.debit(
                uow, kind="redeem", sink="s:redeemed", customer_id=customer_id,
                points=reward.cost, cause_id=rid, rule=reward.id,
                reason=f"redeemed {reward.name}", now=now, ref=reward.id)
            if spent is None:  # the same key won meanwhile: roll back, answer with it
                raise _AlreadyRedeemed
            code = await self._voucher(uow, customer_id, reward, rid)
            row = {"id": rid, "customer_id": customer_id, "reward_id": reward.id,
                   "points": reward.cost, "code": code, "created_at": now}
            await uow.execute(redemptions.insert().values(**row))
            uow.emit(Event.new("loyalty.reward_redeemed", {
                "redemption_id": rid, "reward_id": reward.id, "kind": reward.kind,
                "points": reward.cost, "voucher_code": code,
            }, subject_id=customer_id, source="loyalty"))
        return self._out(row)

    @staticmethod
    def _out(row: Any) -> dict[str, Any]:
        return {"id": row["id"], "reward_id": row["reward_id"], "points": int(row["points"]),
                "code": row["code"], "created_at": row["created_at"]}

    async def _take_stock(self, uow: UnitOfWork, reward: Reward) -> None:
        await uow.execute(insert_ignore(uow.dialect, reward_stock),
                          {"reward_id": reward.id, "available": reward.stock, "redeemed": 0})
        took = await uow.execute(reward_stock.update().where(
            reward_stock.c.reward_id == reward.id,
            sa.or_(reward_stock.c.available.is_(None), reward_stock.c.available >= 1),
        ).values(available=reward_stock.c.available - 1,
                 redeemed=reward_stock.c.redeemed + 1))
        if took.rowcount != 1:
            raise OutOfStock(f"{reward.name} is out of stock", reward_id=reward.id)

    async def _voucher(self, uow: UnitOfWork, cid: str, reward: Reward, rid: str) -> str | None:
        kind = VOUCHER_KINDS.get(reward.kind)
        if kind is None:
            return None  # experiences, donations, free products: fulfilled from the event
        from kunde.commerce.service_vouchers import VoucherService

        return await self.kernel.service(VoucherService).issue(
            uow, customer_id=cid, kind=kind, value=reward.value, currency=reward.currency,
            source="loyalty", source_ref=rid, expires_at=None)

    async def catalog(self, customer_id: str) -> list[dict[str, Any]]:
        """The catalog for one member, ranked for them, each with eligibility and stock."""
        prog = await self.svc.programme()
        async with self.kernel.db.read() as conn:
            history = await self.history(conn, customer_id)
            row = (await conn.execute(sa.select(members.c.tier).where(
                members.c.customer_id == customer_id))).first()
            stock = dict((await conn.execute(sa.select(
                reward_stock.c.reward_id, reward_stock.c.available))).all())
            segs = await self._segments(conn, customer_id)
        tier = row.tier if row else None
        out = []
        for r in await ranked_rewards(self.kernel, self.taste, customer_id, history,
                                      list(prog.rewards)):
            left = stock.get(r.id, r.stock)
            out.append({"id": r.id, "name": r.name, "kind": r.kind, "cost": r.cost,
                        "value": r.value, "currency": r.currency, "description": r.description,
                        "stock": left, "affordable": r.cost <= history["balance"],
                        "ineligible_because": eligible(prog, r, tier, segs),
                        "in_stock": left is None or left > 0})
        return out

    async def history(self, conn: Any, cid: str) -> dict[str, Any]:
        cats: dict[str, int] = {}
        for (c,) in (await conn.execute(sa.select(purchases.c.categories).where(
                purchases.c.customer_id == cid).limit(200))).all():
            for cat in c or []:
                cats[cat] = cats.get(cat, 0) + 1
        steps = dict((await conn.execute(sa.select(quest_marks.c.quest_id, sa.func.count())
                                         .where(quest_marks.c.customer_id == cid)
                                         .group_by(quest_marks.c.quest_id))).all())
        bal = await ledger.balances(conn, cid)
        return {"categories": cats, "quest_steps": steps, "balance": bal["available"]}
