"""Read functions other features use instead of loyalty's tables (next-best-offer, ranking).

`member_rewards` is the rewards catalogue as one member sees it, unranked: cost in points,
stock left, and why the member may not have each reward (tier, segment), decided by the
programme's own rules. `ranked_rewards` orders rewards for a member through personalisation's
ranking port when that feature is installed, else with the programme's own taste.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.loyalty.models import Reward
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.tables import member_segments, members, reward_stock

if TYPE_CHECKING:
    from kunde.kernel import Kernel
    from kunde.loyalty.service_rewards import MemberTaste


async def member_rewards(kernel: Kernel, customer_id: str) -> dict[str, Any]:
    """``{tier, segments, balance, categories, rewards: [{id, name, kind, cost, value,
    currency, category, stock, in_stock, ineligible_because}]}`` for one member."""
    from kunde.loyalty.service_rewards import RewardService, eligible

    prog = await kernel.service(LoyaltyService).programme()
    rewards = kernel.service(RewardService)
    async with kernel.db.read() as conn:
        history = await rewards.history(conn, customer_id)
        tier = (await conn.execute(sa.select(members.c.tier).where(
            members.c.customer_id == customer_id))).scalar()
        segs = set((await conn.execute(sa.select(member_segments.c.segment).where(
            member_segments.c.customer_id == customer_id))).scalars().all())
        stock = dict((await conn.execute(sa.select(
            reward_stock.c.reward_id, reward_stock.c.available))).all())
    out = []
    for r in prog.rewards:
        left = stock.get(r.id, r.stock)
        out.append({"id": r.id, "name": r.name, "kind": r.kind, "cost": r.cost,
                    "value": r.value, "currency": r.currency, "category": r.category,
                    "stock": left, "in_stock": left is None or left > 0,
                    "ineligible_because": eligible(prog, r, tier, segs)})
    return {"tier": tier, "segments": sorted(segs), "balance": int(history["balance"]),
            "categories": dict(history["categories"]), "rewards": out}


async def ranked_rewards(kernel: Kernel, taste: MemberTaste, customer_id: str,
                         history: dict[str, Any], rewards: list[Reward]) -> list[Reward]:
    """Rewards in the order to show them to this member (personalised extras)."""
    try:
        cls = importlib.import_module("kunde.personalisation.service_offers").OfferService
    except (ImportError, AttributeError):
        cls = None
    rank = getattr(kernel.service(cls), "rank_rewards", None) if cls is not None else None
    if rank is None:
        return taste.rank_rewards(history, rewards)
    ranked: list[Reward] = await rank(
        customer_id, rewards, fallback=lambda rs: taste.rank_rewards(history, rs))
    return ranked
