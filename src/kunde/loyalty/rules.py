"""Earn rules and quest steps evaluated against events: pure, fast, explainable.

`compile_programme` turns a `Programme` into per-event-type lists of matchers
once (per programme version), so evaluating an event only looks at the rules
that listen to its type. Every decision carries the reasons a person can read
("1 per 100 of amount_minor (2500) = 25; x 1.5 for tier gold").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kunde.loyalty.models import Cap, EarnRule, Programme, Quest, QuestStep

MISSING = object()


@dataclass(frozen=True)
class EventView:
    """What the rules see of an event."""

    type: str
    payload: dict[str, Any]
    channel: str | None
    occurred_at: datetime


@dataclass
class Earn:
    rule_id: str
    points: int
    xp: int
    pending: bool
    cap: Cap | None
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StepHit:
    quest: Quest
    step_index: int
    mark: str


def lookup(payload: Any, path: str) -> Any:
    """Dotted path into dicts; through lists it collects every element's value."""
    cur: Any = payload
    for part in path.split("."):
        if isinstance(cur, list):
            vals = [lookup(x, part) for x in cur]
            cur = [v for v in vals if v is not MISSING]
        elif isinstance(cur, dict):
            cur = cur.get(part, MISSING)
        else:
            return MISSING
        if cur is MISSING:
            return MISSING
    return cur


def _op(op: str, value: Any, arg: Any) -> bool:
    if op == "eq":
        return bool(value == arg)
    if op == "ne":
        return bool(value != arg)
    if op == "in":
        return value in arg
    if op == "not_in":
        return value not in arg
    if op == "exists":
        return (value is not MISSING) == bool(arg)
    if op == "contains":
        return isinstance(value, list | str) and arg in value
    if value is MISSING:
        return False
    if op == "gte":
        return bool(value >= arg)
    if op == "gt":
        return bool(value > arg)
    if op == "lte":
        return bool(value <= arg)
    if op == "lt":
        return bool(value < arg)
    return False


def _test(value: Any, cond: Any) -> bool:
    if not isinstance(cond, dict):
        if isinstance(value, list):
            return cond in value
        return bool(value == cond)
    try:
        return all(_op(op, value, arg) for op, arg in cond.items())
    except TypeError:
        return False


def matches(where: dict[str, Any], payload: dict[str, Any]) -> bool:
    return all(_test(lookup(payload, path), cond) for path, cond in where.items())


def _in_window(start: datetime | None, end: datetime | None, at: datetime) -> bool:
    return (start is None or at >= start) and (end is None or at < end)


class CompiledProgramme:
    def __init__(self, programme: Programme) -> None:
        self.programme = programme
        self.rules: dict[str, list[EarnRule]] = {}
        for r in programme.earn_rules:
            self.rules.setdefault(r.event, []).append(r)
        self.steps: dict[str, list[tuple[Quest, int, QuestStep]]] = {}
        for q in programme.quests:
            for i, s in enumerate(q.steps):
                self.steps.setdefault(s.event, []).append((q, i, s))
        self.tier_mult = {t.id: t.earn_multiplier for t in programme.tiers}
        # Referral rules, checked against the identity graph before they award.
        self.referrals = {r.id: r for r in programme.earn_rules if r.referee}
        self.event_types = frozenset(self.rules) | frozenset(self.steps)

    def earn(self, ev: EventView, tier: str | None) -> list[Earn]:
        """Every rule's award for this event (before caps), with its reasons."""
        out: list[Earn] = []
        for r in self.rules.get(ev.type, ()):
            e = self.explain(r, ev, tier)
            if e is not None:
                out.append(e)
        return out

    def explain(self, r: EarnRule, ev: EventView, tier: str | None) -> Earn | None:
        if not _in_window(r.valid_from, r.valid_until, ev.occurred_at):
            return None
        if r.channels and ev.channel not in r.channels:
            return None
        if r.where and not matches(r.where, ev.payload):
            return None
        label = r.label or r.id
        reasons: list[str] = []
        base = r.points
        if r.points:
            reasons.append(f"{r.points} for {label}")
        if r.points_per is not None:
            amount = lookup(ev.payload, r.points_per.field)
            if isinstance(amount, int | float) and amount > 0:
                per = int(amount) // r.points_per.per * r.points_per.points
                base += per
                reasons.append(f"{r.points_per.points} per {r.points_per.per} of "
                               f"{r.points_per.field} ({int(amount)}) = {per}")
        mult = r.tier_multipliers.get(tier or "", self.tier_mult.get(tier or "", 1.0))
        points = int(base * mult)
        if mult != 1.0:
            reasons.append(f"x {mult:g} for tier {tier}")
        pending = r.pending if r.pending is not None else ev.type == "commerce.order_paid"
        if pending:
            reasons.append(f"pending for {self.programme.return_window_days} days")
        if points <= 0 and r.xp <= 0:
            return None
        return Earn(r.id, points, r.xp, pending, r.cap, reasons)

    def quest_hits(self, ev: EventView) -> Iterator[StepHit]:
        for q, i, s in self.steps.get(ev.type, ()):
            if not _in_window(q.valid_from, q.valid_until, ev.occurred_at):
                continue
            if s.where and not matches(s.where, ev.payload):
                continue
            if s.distinct:
                value = lookup(ev.payload, s.distinct)
                values = value if isinstance(value, list) else [value]
                for v in values:
                    if v is not MISSING and v is not None:
                        yield StepHit(q, i, str(v)[:100])
            else:
                yield StepHit(q, i, "")


def window_key(per: str, at: datetime) -> str:
    if per == "day":
        return at.strftime("d%Y-%m-%d")
    if per == "week":
        y, w, _ = at.isocalendar()
        return f"w{y}-{w:02d}"
    if per == "month":
        return at.strftime("m%Y-%m")
    if per == "year":
        return at.strftime("y%Y")
    return "ever"


def quest_round(q: Quest, at: datetime) -> str:
    """The round a quest event counts toward; a failed round is retried in the next one."""
    if q.cadence == "daily":
        return window_key("day", at)
    if q.cadence == "weekly":
        return window_key("week", at)
    if q.cadence == "monthly":
        return window_key("month", at)
    if q.cadence == "season":
        return f"s:{q.season}"
    return "once"
