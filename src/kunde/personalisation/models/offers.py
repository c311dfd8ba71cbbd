"""Next-best-offer decisions: eligibility, expected value, churn uplift and fatigue caps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Offer:
    id: str
    kind: str  # reward | voucher | content
    title: str
    value_minor: int  # what the offer is worth to the retailer if taken up (margin)
    cost_minor: int
    propensity: float  # base take-up probability
    channels: frozenset[str] = frozenset({"email", "web", "app", "store"})
    min_tier: str | None = None
    segments: frozenset[str] = frozenset()
    sku: str | None = None
    needs_consent: str | None = None  # purpose that must be granted, e.g. marketing_email
    # Why the source already knows the customer may not have it (a loyalty reward's tier or
    # segment rule, its stock), in the source's own words.
    blocked: tuple[str, ...] = ()


@dataclass(frozen=True)
class CustomerContext:
    tier: str | None
    segments: frozenset[str]
    consents: frozenset[str]
    clv_minor: int
    churn_risk: str | None
    shown_recently: dict[str, int] = field(default_factory=dict)  # channel -> count in window
    out_of_stock: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    offer: Offer
    eligible: bool
    score: float
    reasons: tuple[str, ...]


TIER_ORDER = ("bronze", "silver", "gold", "platinum")


def _tier_ok(have: str | None, need: str | None) -> bool:
    if need is None:
        return True
    if have is None or have not in TIER_ORDER or need not in TIER_ORDER:
        return have == need
    return TIER_ORDER.index(have) >= TIER_ORDER.index(need)


def decide(offers: Sequence[Offer], ctx: CustomerContext, channel: str, *,
           fatigue_cap: int) -> list[Decision]:
    """Every candidate with its eligibility, score and the reasons, best first."""
    out: list[Decision] = []
    fatigued = ctx.shown_recently.get(channel, 0) >= fatigue_cap
    valuable_at_risk = ctx.churn_risk in ("medium", "high") and ctx.clv_minor >= 5000
    for o in offers:
        reasons: list[str] = list(o.blocked)
        if channel not in o.channels:
            reasons.append(f"not offered on {channel}")
        if o.needs_consent and o.needs_consent not in ctx.consents:
            reasons.append(f"no {o.needs_consent} consent")
        if not _tier_ok(ctx.tier, o.min_tier):
            reasons.append(f"needs tier {o.min_tier}")
        if o.segments and not (o.segments & ctx.segments):
            reasons.append("not in a target segment")
        if o.sku and o.sku in ctx.out_of_stock:
            reasons.append(f"{o.sku} out of stock")
        if fatigued:
            reasons.append(f"fatigue cap reached on {channel} ({fatigue_cap})")
        propensity = o.propensity
        if valuable_at_risk:
            propensity = min(1.0, propensity * (1.5 if ctx.churn_risk == "medium" else 2.0))
        score = propensity * o.value_minor - o.cost_minor
        eligible = not reasons
        if eligible:
            reasons.append(f"propensity {propensity:.2f} x value {o.value_minor} − cost "
                           f"{o.cost_minor} = {score:.0f}")
            if valuable_at_risk:
                reasons.append(f"raised: valuable customer at {ctx.churn_risk} churn risk")
            if score <= 0:
                eligible = False
                reasons.append("expected value not positive")
        out.append(Decision(o, eligible, score, tuple(reasons)))
    out.sort(key=lambda d: (not d.eligible, -d.score))
    return out
