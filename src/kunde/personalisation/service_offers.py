"""Next-best-offer: candidates from ports, eligibility and scoring, fatigue, decision log."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa

from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.personalisation.models.offers import CustomerContext, Decision, Offer, decide
from kunde.personalisation.ports import ProjectedMembership, consent_port, stock_port
from kunde.personalisation.service_scores import ScoresService
from kunde.personalisation.tables import offer_decisions, offers

FATIGUE_CAP = 3  # offers shown per channel per customer within FATIGUE_WINDOW
FATIGUE_WINDOW = timedelta(days=7)
PURPOSES = ("marketing_email", "marketing_sms", "marketing_push", "personalisation")
# Channels that are marketing messages need the matching consent for loyalty rewards too.
CHANNEL_CONSENT = {"email": "marketing_email", "sms": "marketing_sms", "push": "marketing_push"}
POINT_VALUE_MINOR = 1.0  # what one point is worth in minor units (500 points buy 5.00 EUR)
REWARD_PROPENSITY = 0.2  # take-up of a reward the member can afford, before affinity
MONEY_VALUED = frozenset({"voucher_amount", "free_product", "experience", "donation"})
R = TypeVar("R")


class OfferSource(Protocol):
    """Where candidates come from: loyalty rewards, vouchers, content."""

    async def candidates(self, customer_id: str, channel: str) -> list[Offer]: ...


class ConfiguredOffers:
    """Offers configured in Kunde (``p13n_offers``); the source used when no port answers."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def candidates(self, customer_id: str, channel: str) -> list[Offer]:
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(sa.select(offers).where(offers.c.active.is_(True))
                                       .order_by(offers.c.id))).all()
        return [Offer(id=r.id, kind=r.kind, title=r.title, value_minor=int(r.value_minor),
                      cost_minor=int(r.cost_minor), propensity=float(r.propensity),
                      channels=frozenset(r.channels), min_tier=r.min_tier,
                      segments=frozenset(r.segments), sku=r.sku,
                      needs_consent=r.needs_consent) for r in rows]


class LoyaltyRewards:
    """The loyalty rewards catalogue as offers, through loyalty's read function.

    A reward's value is its cost in points at ``POINT_VALUE_MINOR`` (the points liability a
    redemption settles); its cost is what it is worth beyond those points (a 10.00 voucher
    for 500 points costs 5.00). Propensity is ``REWARD_PROPENSITY`` scaled by affordability
    (balance / cost, at most 1) and, with personalisation consent, raised by the member's
    share of purchases in the reward's category. Tier, segment and stock come from the
    programme's own rules (``blocked``); marketing channels need their consent.
    """

    def __init__(self, kernel: Kernel, read: Callable[..., Any]) -> None:
        self.kernel = kernel
        self.read = read

    async def candidates(self, customer_id: str, channel: str) -> list[Offer]:
        member = await self.read(self.kernel, customer_id)
        personal = await consent_port(self.kernel).is_allowed(customer_id, "personalisation")
        cats: dict[str, int] = member["categories"] if personal else {}
        bought = sum(cats.values())
        out = []
        for r in member["rewards"]:
            value = r["cost"] * POINT_VALUE_MINOR
            face = r["value"] if r["kind"] in MONEY_VALUED else 0
            affordable = 1.0 if r["cost"] <= member["balance"] else (
                max(member["balance"], 0) / r["cost"])
            affinity = cats.get(r["category"] or "", 0) / bought if bought else 0.0
            blocked = [r["ineligible_because"]] if r["ineligible_because"] else []
            if not r["in_stock"]:
                blocked.append("reward out of stock")
            out.append(Offer(
                id=f"reward:{r['id']}", kind="reward", title=r["name"], value_minor=int(value),
                cost_minor=int(max(0.0, face - value)),
                propensity=min(1.0, REWARD_PROPENSITY * affordable * (1.0 + affinity)),
                needs_consent=CHANNEL_CONSENT.get(channel), blocked=tuple(blocked)))
        return out


def loyalty_source(kernel: Kernel) -> LoyaltyRewards | None:
    """Loyalty's rewards when the loyalty feature is installed."""
    try:
        read = importlib.import_module("kunde.loyalty.read").member_rewards
    except (ImportError, AttributeError):
        return None
    return LoyaltyRewards(kernel, read)


def _considered(decisions: list[Decision]) -> list[dict[str, Any]]:
    return [{"offer_id": d.offer.id, "eligible": d.eligible, "score": round(d.score, 2),
             "reasons": list(d.reasons)} for d in decisions]


class OfferService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.sources: list[OfferSource] = [ConfiguredOffers(kernel)]
        self.rewards = loyalty_source(kernel)
        if self.rewards is not None:
            self.sources.append(self.rewards)

    async def rank_rewards(self, customer_id: str, rewards: Sequence[R],
                           fallback: Callable[[list[R]], list[R]]) -> list[R]:
        """Loyalty's personalised extras: its rewards (anything with an ``id``) in
        next-best-offer order — eligible first by expected value, then the rest. Without
        personalisation consent the programme's own order (``fallback``) is kept. Ranking
        for display is not an offer sent: no decision is logged and no fatigue counted."""
        if self.rewards is None or not await consent_port(self.kernel).is_allowed(
                customer_id, "personalisation"):
            return fallback(list(rewards))
        candidates = await self.rewards.candidates(customer_id, "web")
        ctx = await self._context(customer_id, candidates)
        decisions = decide(candidates, ctx, "web", fatigue_cap=1 << 30)
        order = {d.offer.id.removeprefix("reward:"): i for i, d in enumerate(decisions)}
        rest = fallback([r for r in rewards if getattr(r, "id", None) not in order])
        return sorted((r for r in rewards if getattr(r, "id", None) in order),
                      key=lambda r: order[getattr(r, "id", "")]) + rest

    async def _context(self, customer_id: str, candidates: list[Offer]) -> CustomerContext:
        membership = ProjectedMembership(self.kernel)
        consent = consent_port(self.kernel)
        needed = {o.needs_consent for o in candidates if o.needs_consent} | {"personalisation"}
        granted = frozenset([p for p in sorted(needed)
                             if await consent.is_allowed(customer_id, p)])
        score = await self.kernel.service(ScoresService).scores(customer_id)
        since = self.kernel.clock.now() - FATIGUE_WINDOW
        async with self.kernel.db.read() as conn:
            shown: dict[str, int] = {str(c): int(n) for c, n in (await conn.execute(
                sa.select(offer_decisions.c.channel, sa.func.count())
                .where(offer_decisions.c.customer_id == customer_id,
                       offer_decisions.c.offer_id.is_not(None),
                       offer_decisions.c.decided_at >= since)
                .group_by(offer_decisions.c.channel))).all()}
        skus = [o.sku for o in candidates if o.sku]
        gone = await stock_port(self.kernel).unavailable(skus) if skus else set()
        return CustomerContext(
            tier=await membership.tier(customer_id),
            segments=frozenset(await membership.segments(customer_id)), consents=granted,
            clv_minor=int(score["clv"]) if score else 0,
            churn_risk=score["churn_risk"] if score else None,
            shown_recently={str(k): int(v) for k, v in shown.items()},
            out_of_stock=frozenset(gone))

    async def next_best_offers(self, customer_id: str, channel: str, limit: int = 3
                               ) -> dict[str, Any]:
        """Ranked eligible offers with reasons; the decision (all candidates) is logged."""
        decisions = await self._decide(customer_id, channel)
        chosen = [d for d in decisions if d.eligible][:limit]
        log = _considered(decisions)
        decision_id = new_id()
        async with self.kernel.db.transaction() as uow:
            await uow.execute(offer_decisions.insert().values(
                id=decision_id, customer_id=customer_id, channel=channel,
                offer_id=chosen[0].offer.id if chosen else None,
                score=chosen[0].score if chosen else None, decisions=log,
                decided_at=self.kernel.clock.now()))
        return {"decision_id": decision_id, "customer_id": customer_id, "channel": channel,
                "offers": [{"id": d.offer.id, "kind": d.offer.kind, "title": d.offer.title,
                            "score": round(d.score, 2), "reasons": list(d.reasons)}
                           for d in chosen],
                "considered": log}

    async def _decide(self, customer_id: str, channel: str) -> list[Decision]:
        candidates = [o for s in self.sources for o in await s.candidates(customer_id, channel)]
        ctx = await self._context(customer_id, candidates)
        return decide(candidates, ctx, channel, fatigue_cap=FATIGUE_CAP)

    async def preview(self, customer_id: str, channel: str) -> list[dict[str, Any]]:
        """Every candidate as the next decision would see it, for staff: nothing is logged
        and nothing counts towards the fatigue cap."""
        decisions = await self._decide(customer_id, channel)
        return [{**d, "kind": x.offer.kind, "title": x.offer.title}
                for d, x in zip(_considered(decisions), decisions, strict=True)]

    async def configure(self, offer: Offer) -> None:
        from kunde.store.sql import upsert

        row = {"id": offer.id, "kind": offer.kind, "title": offer.title,
               "value_minor": offer.value_minor, "cost_minor": offer.cost_minor,
               "propensity": offer.propensity, "channels": sorted(offer.channels),
               "min_tier": offer.min_tier, "segments": sorted(offer.segments),
               "sku": offer.sku, "needs_consent": offer.needs_consent, "active": True}
        async with self.kernel.db.transaction() as uow:
            await uow.execute(upsert(uow.dialect, offers, ["id"],
                                     [k for k in row if k != "id"]), row)
