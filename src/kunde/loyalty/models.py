"""The loyalty programme as data: what a retailer configures, validated, pure.

A `Programme` is read from YAML or JSON (`parse_programme`) and stored as one
versioned document. Everything the engine does — earning, tiers, quests,
seasons, rewards — is decided from it; nothing is hard-coded per retailer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

# Event types the engine can react to. A rule or quest naming anything else is refused,
# so a typo cannot silently create a rule that never fires.
KNOWN_EVENTS = frozenset({
    "commerce.order_placed", "commerce.order_paid", "commerce.refund_issued",
    "interaction.recorded", "ingest.track", "ingest.identify", "ingest.page", "ingest.screen",
    "service.feedback_given", "profiles.customer_created", "consent.changed",
    "fulfilment.shipment_delivered", "fulfilment.return_requested",
    "loyalty.reward_redeemed", "loyalty.quest_completed",
})

# Times in a programme must say their zone ("2026-12-01T00:00:00Z").
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
Window = Literal["day", "week", "month", "year", "ever"]
Cadence = Literal["once", "daily", "weekly", "monthly", "season"]
RewardKind = Literal["voucher_amount", "voucher_percent", "free_shipping", "free_product",
                     "experience", "donation"]


class Struct(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    pass


class PerAmount(Struct):
    """``points`` for every ``per`` minor units of the payload field ``field``."""

    field: str = "amount_minor"
    per: int = 100
    points: int = 1


class Cap(Struct):
    per: Window = "day"
    max_points: int | None = None
    max_times: int | None = None


class EarnRule(Struct):
    id: str
    event: str
    label: str = ""
    where: dict[str, Any] = {}
    points: int = 0
    points_per: PerAmount | None = None
    # Multiplier per tier id; tiers not named use the tier's own earn_multiplier.
    tier_multipliers: dict[str, float] = {}
    cap: Cap | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    channels: list[str] = []
    # Held as pending until the return window has passed (default: purchases only).
    pending: bool | None = None
    xp: int = 0
    # A referral rule: identifier kind (user_id, email, phone, ...) -> payload path of the
    # referred person's identifier. A referral of someone the identity graph resolves to
    # the referrer (or who shares the referrer's email or phone) earns nothing.
    referee: dict[str, str] = {}


class Tier(Struct):
    id: str
    name: str
    min_points: int = 0
    min_spend_minor: int = 0
    min_orders: int = 0
    earn_multiplier: float = 1.0
    free_shipping: bool = False
    early_access: bool = False


class TierPolicy(Struct):
    window_days: int = 365
    review_days: int = 365
    grace_days: int = 30


class Expiry(Struct):
    # Points expire this many days after they became available (None: never).
    days: int | None = 365


class QuestStep(Struct):
    event: str
    where: dict[str, Any] = {}
    count: int = 1
    # Count distinct values of this payload path (e.g. "lines.category"), not events.
    distinct: str | None = None
    label: str = ""


class Quest(Struct):
    id: str
    name: str
    steps: list[QuestStep]
    cadence: Cadence = "once"
    season: str | None = None
    reward_points: int = 0
    xp: int = 0
    badge: str | None = None
    team: bool = False
    # Team quests: at most this many marks per member per round (anti-farming).
    member_cap: int | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None


class LevelReward(Struct):
    """What reaching ``level`` of a season's level track earns, granted at season end."""

    level: int
    points: int = 0
    badge: str | None = None


class Season(Struct):
    id: str
    name: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    # XP needed for level 1, 2, … (ascending).
    levels: list[int] = []
    level_rewards: list[LevelReward] = []


class Reward(Struct):
    id: str
    name: str
    kind: RewardKind
    cost: int
    value: int = 0
    currency: str = "EUR"
    stock: int | None = None
    min_tier: str | None = None
    segments: list[str] = []
    category: str | None = None
    description: str = ""


class Welcome(Struct):
    points: int = 0
    # What grants it: joining, granting marketing consent, or whichever comes first.
    trigger: Literal["joined", "consent", "either"] = "either"
    max_per_hour: int = 500


class Teams(Struct):
    enabled: bool = True
    max_size: int = 5


class Programme(Struct):
    points_name: str = "Points"
    currency: str = "EUR"
    return_window_days: int = 14
    expiry: Expiry = msgspec.field(default_factory=Expiry)
    earn_rules: list[EarnRule] = []
    tiers: list[Tier] = []
    tier_policy: TierPolicy = msgspec.field(default_factory=TierPolicy)
    quests: list[Quest] = []
    seasons: list[Season] = []
    rewards: list[Reward] = []
    welcome: Welcome = msgspec.field(default_factory=Welcome)
    teams: Teams = msgspec.field(default_factory=Teams)

    def tier(self, tier_id: str | None) -> Tier | None:
        return next((t for t in self.tiers if t.id == tier_id), None)

    def tier_rank(self, tier_id: str | None) -> int:
        return next((i for i, t in enumerate(self.tiers) if t.id == tier_id), -1)

    def reward(self, reward_id: str) -> Reward | None:
        return next((r for r in self.rewards if r.id == reward_id), None)

    def active_season(self, now: datetime) -> Season | None:
        return next((s for s in self.seasons if s.starts_at <= now < s.ends_at), None)

    def season(self, season_id: str | None) -> Season | None:
        return next((s for s in self.seasons if s.id == season_id), None)


class ProgrammeProblem(msgspec.Struct):
    path: str
    message: str
    line: int | None = None


OPERATORS = frozenset({"eq", "ne", "in", "not_in", "exists", "contains", "gte", "gt", "lte",
                       "lt"})


def _where_problems(path: str, where: dict[str, Any]) -> list[ProgrammeProblem]:
    return [ProgrammeProblem(f"{path}.where.{field}", f"unknown operator {op!r}; use one of "
                             + ", ".join(sorted(OPERATORS)))
            for field, cond in where.items() if isinstance(cond, dict)
            for op in cond if op not in OPERATORS]


def semantic_problems(p: Programme) -> list[ProgrammeProblem]:
    """Checks the schema cannot express: unique ids, known events and references."""
    out: list[ProgrammeProblem] = []

    def unique(kind: str, ids: list[str]) -> None:
        seen: set[str] = set()
        for i, x in enumerate(ids):
            if x in seen:
                out.append(ProgrammeProblem(f"$.{kind}[{i}].id", f"duplicate id {x!r}"))
            seen.add(x)

    unique("earn_rules", [r.id for r in p.earn_rules])
    unique("tiers", [t.id for t in p.tiers])
    unique("quests", [q.id for q in p.quests])
    unique("seasons", [s.id for s in p.seasons])
    unique("rewards", [r.id for r in p.rewards])
    tiers = {t.id for t in p.tiers}
    seasons = {s.id for s in p.seasons}
    for i, r in enumerate(p.earn_rules):
        if r.event not in KNOWN_EVENTS:
            out.append(ProgrammeProblem(f"$.earn_rules[{i}].event",
                                        f"unknown event {r.event!r}"))
        out += _where_problems(f"$.earn_rules[{i}]", r.where)
        for t in r.tier_multipliers:
            if t not in tiers:
                out.append(ProgrammeProblem(f"$.earn_rules[{i}].tier_multipliers",
                                            f"unknown tier {t!r}"))
        for kind, path in r.referee.items():
            if not kind or not path:
                out.append(ProgrammeProblem(f"$.earn_rules[{i}].referee",
                                            "map an identifier kind to a payload path"))
        if r.points < 0 or (r.points_per and (r.points_per.per <= 0 or r.points_per.points < 0)):
            out.append(ProgrammeProblem(f"$.earn_rules[{i}]", "points must not be negative"))
    for i, q in enumerate(p.quests):
        if not q.steps:
            out.append(ProgrammeProblem(f"$.quests[{i}].steps", "a quest needs a step"))
        for j, s in enumerate(q.steps):
            if s.event not in KNOWN_EVENTS:
                out.append(ProgrammeProblem(f"$.quests[{i}].steps[{j}].event",
                                            f"unknown event {s.event!r}"))
            out += _where_problems(f"$.quests[{i}].steps[{j}]", s.where)
            if s.count < 1:
                out.append(ProgrammeProblem(f"$.quests[{i}].steps[{j}].count",
                                            "count must be at least 1"))
        if (q.season or q.cadence == "season") and q.season not in seasons:
            out.append(ProgrammeProblem(f"$.quests[{i}].season",
                                        f"unknown season {q.season!r}"))
    for i, season in enumerate(p.seasons):
        if season.ends_at <= season.starts_at:
            out.append(ProgrammeProblem(f"$.seasons[{i}].ends_at", "ends before it starts"))
        if season.levels != sorted(season.levels):
            out.append(ProgrammeProblem(f"$.seasons[{i}].levels", "levels must ascend"))
        for j, lr in enumerate(season.level_rewards):
            if not 1 <= lr.level <= len(season.levels):
                out.append(ProgrammeProblem(f"$.seasons[{i}].level_rewards[{j}].level",
                                            f"no level {lr.level} on this track"))
            if lr.points < 0:
                out.append(ProgrammeProblem(f"$.seasons[{i}].level_rewards[{j}].points",
                                            "points must not be negative"))
    for i, reward in enumerate(p.rewards):
        if reward.cost <= 0:
            out.append(ProgrammeProblem(f"$.rewards[{i}].cost", "cost must be positive"))
        if reward.min_tier and reward.min_tier not in tiers:
            out.append(ProgrammeProblem(f"$.rewards[{i}].min_tier",
                                        f"unknown tier {reward.min_tier!r}"))
        if reward.stock is not None and reward.stock < 0:
            out.append(ProgrammeProblem(f"$.rewards[{i}].stock", "stock must not be negative"))
    return out
