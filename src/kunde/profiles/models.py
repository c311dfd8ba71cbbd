"""Pure rules of the Customer 360: identity rules, consent purposes, computed traits.

Nothing here does I/O; the services feed these functions what they read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PURPOSES = ("analytics", "personalisation", "marketing_email", "marketing_sms",
            "marketing_push")
CONSENT_METHODS = ("form", "checkbox", "api", "import", "staff", "identify", "email_link",
                   "in_store", "app_settings")
# Identifier kinds Kunde knows without configuration. Custom kinds (loyalty_card,
# till_customer_no, ...) come from the identity rules.
BUILTIN_KINDS = ("user_id", "anonymous_id", "email", "phone")
# Traits that are also identifiers when they arrive in identify/ensure_customer.
TRAIT_IDENTIFIERS = ("email", "phone")

# Traits also served at the top level of a profile (None when unknown).
TOP_LEVEL_TRAITS = ("email", "phone", "first_name", "last_name", "name", "locale")


@dataclass(frozen=True)
class IdentifierRule:
    """How one identifier kind takes part in stitching.

    ``merge``: a second customer presenting this identifier is merged into the first.
    ``max_per_customer``: a merge that would give one customer more identifiers of this
    kind is refused (a customer has one user id; a store tablet's anonymous id must not
    fuse the strangers who logged in on it).
    ``max_customers``: once this many different customers presented the identifier it
    is treated as shared and never merges again.
    """

    merge: bool = True
    max_per_customer: int | None = None
    max_customers: int | None = None


DEFAULT_RULES: dict[str, IdentifierRule] = {
    "user_id": IdentifierRule(merge=True, max_per_customer=1),
    "anonymous_id": IdentifierRule(merge=True, max_customers=3),
    "email": IdentifierRule(merge=True, max_per_customer=5, max_customers=3),
    "phone": IdentifierRule(merge=True, max_per_customer=3, max_customers=3),
    "loyalty_card": IdentifierRule(merge=True, max_per_customer=2, max_customers=2),
}


@dataclass(frozen=True)
class IdentityRules:
    kinds: dict[str, IdentifierRule] = field(default_factory=lambda: dict(DEFAULT_RULES))

    def rule(self, kind: str) -> IdentifierRule:
        return self.kinds.get(kind, IdentifierRule(merge=False))

    def is_known(self, kind: str) -> bool:
        return kind in self.kinds or kind in BUILTIN_KINDS

    @property
    def custom_kinds(self) -> tuple[str, ...]:
        return tuple(k for k in self.kinds if k not in BUILTIN_KINDS)

    @classmethod
    def from_json(cls, text: str) -> IdentityRules:
        """Defaults overridden by ``{"kind": {"merge": true, "max_per_customer": 1}}``."""
        kinds = dict(DEFAULT_RULES)
        data = json.loads(text) if text.strip() else {}
        if not isinstance(data, dict):
            raise ValueError("identity rules must be a JSON object keyed by identifier kind")
        for kind, spec in data.items():
            if not isinstance(spec, dict):
                raise ValueError(f"rule for {kind!r} must be an object")
            unknown = set(spec) - {"merge", "max_per_customer", "max_customers"}
            if unknown:
                raise ValueError(f"unknown keys in rule for {kind!r}: {sorted(unknown)}")
            kinds[str(kind)] = IdentifierRule(**spec)
        return cls(kinds)


def merge_refusal(
    rules: IdentityRules, a_counts: Mapping[str, set[str]], b_counts: Mapping[str, set[str]]
) -> str | None:
    """Why two customers (their identifier hashes by kind) must not be merged, or None."""
    for kind in set(a_counts) | set(b_counts):
        limit = rules.rule(kind).max_per_customer
        if limit is None:
            continue
        combined = a_counts.get(kind, set()) | b_counts.get(kind, set())
        if len(combined) > limit:
            return f"a merged customer would hold {len(combined)} identifiers of kind {kind} " \
                   f"(limit {limit})"
    return None


def survivor_of(a: str, b: str) -> tuple[str, str]:
    """(survivor, merged): the older customer survives. Ids are UUIDv7, so older sorts first.

    Choosing by a total order makes the outcome independent of the order links arrive in.
    """
    return (a, b) if a <= b else (b, a)


# -- traits --------------------------------------------------------------------------
def lww(current: tuple[datetime, str] | None, incoming: tuple[datetime, str]) -> bool:
    """Last write wins by event time; ties broken by source name so replays agree."""
    return current is None or incoming >= current


# -- computed traits -------------------------------------------------------------------
@dataclass
class Computed:
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    channels: set[str] = field(default_factory=set)
    events_count: int = 0
    orders: int = 0
    revenue_minor: int = 0
    currency: str | None = None
    last_order_at: datetime | None = None
    last_order_id: str | None = None
    categories: dict[str, int] = field(default_factory=dict)
    event_last: dict[str, str] = field(default_factory=dict)

    @property
    def aov_minor(self) -> int:
        return self.revenue_minor // self.orders if self.orders else 0

    def top_categories(self, n: int = 3) -> list[str]:
        ranked = sorted(self.categories.items(), key=lambda kv: (-kv[1], kv[0]))
        return [name for name, _ in ranked[:n]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "first_seen_at": self.first_seen_at, "last_seen_at": self.last_seen_at,
            "channels": sorted(self.channels), "events_count": self.events_count,
            "orders": self.orders, "revenue_minor": self.revenue_minor,
            "currency": self.currency, "aov_minor": self.aov_minor,
            "last_order_at": self.last_order_at, "last_order_id": self.last_order_id,
            "top_categories": self.top_categories(),
        }


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def combine_activity(parts: Iterable[Mapping[str, Any]]) -> Computed:
    """Fold the activity rows of every customer record of one person."""
    out = Computed()
    for p in parts:
        out.first_seen_at = _min(out.first_seen_at, p.get("first_seen_at"))
        out.last_seen_at = _max(out.last_seen_at, p.get("last_seen_at"))
        out.channels |= set(p.get("channels") or ())
        out.events_count += int(p.get("events_count") or 0)
        for name, at in (p.get("event_last") or {}).items():
            if at > out.event_last.get(name, ""):
                out.event_last[name] = at
    return out


def add_orders(out: Computed, orders: Iterable[Mapping[str, Any]]) -> Computed:
    """Orders placed and not cancelled count; revenue is what was paid minus refunds."""
    for o in orders:
        if o.get("cancelled"):
            continue
        out.orders += 1
        if o.get("paid"):
            refunded = sum(int(v) for v in (o.get("refunds") or {}).values())
            out.revenue_minor += int(o.get("total_minor") or 0) - refunded
        out.currency = out.currency or o.get("currency")
        placed = o.get("placed_at")
        if placed is not None and (out.last_order_at is None or placed > out.last_order_at):
            out.last_order_at = placed
            out.last_order_id = o.get("order_id")
        for cat, qty in (o.get("categories") or {}).items():
            out.categories[cat] = out.categories.get(cat, 0) + int(qty)
    return out
