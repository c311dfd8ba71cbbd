"""Segment rules: validation and evaluation over a customer's facts. Pure.

A rule is ``{"all": [condition, ...]}`` or ``{"any": [...]}`` (nestable); a condition
is ``{"field": "computed.revenue_minor", "op": "gt", "value": 10000}``. Fields:
``computed.<name>`` (orders, revenue_minor, aov_minor, last_order_at, first_seen_at,
last_seen_at, channels, top_categories, events_count), ``trait.<name>`` and
``event.<Event Name>`` (the last time the customer performed it).

Example, "ordered in the last 30 days and revenue > 100 EUR"::

    {"all": [{"field": "computed.last_order_at", "op": "within_days", "value": 30},
             {"field": "computed.revenue_minor", "op": "gt", "value": 10000}]}
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "exists", "within_days",
       "not_within_days", "in")
PREFIXES = ("computed.", "trait.", "event.")


class RuleError(ValueError):
    pass


def validate(rule: Any, depth: int = 0) -> None:
    if depth > 5:
        raise RuleError("rules nest at most 5 levels")
    if not isinstance(rule, dict):
        raise RuleError("a rule is an object")
    if "all" in rule or "any" in rule:
        parts = rule.get("all", rule.get("any"))
        if not isinstance(parts, list) or not parts or len(rule) != 1:
            raise RuleError("'all'/'any' hold a non-empty list and nothing else")
        for p in parts:
            validate(p, depth + 1)
        return
    field, op = rule.get("field"), rule.get("op")
    if not isinstance(field, str) or not field.startswith(PREFIXES):
        raise RuleError(f"field must start with one of {', '.join(PREFIXES)}")
    if op not in OPS:
        raise RuleError(f"op must be one of {', '.join(OPS)}")
    if op in ("within_days", "not_within_days") and not isinstance(rule.get("value"), int | float):
        raise RuleError(f"{op} needs a number of days")
    if set(rule) - {"field", "op", "value"}:
        raise RuleError("a condition has only field, op and value")


def _lookup(field: str, facts: Mapping[str, Any]) -> Any:
    prefix, _, name = field.partition(".")
    if prefix == "computed":
        return facts.get("computed", {}).get(name)
    if prefix == "trait":
        return facts.get("traits", {}).get(name)
    at = facts.get("event_last", {}).get(name)
    return datetime.fromisoformat(at) if isinstance(at, str) else at


def _compare(op: str, actual: Any, expected: Any, now: datetime) -> bool:
    if op == "exists":
        return actual is not None and actual != [] and actual != ""
    if op in ("within_days", "not_within_days"):
        recent = isinstance(actual, datetime) and now - actual <= timedelta(days=float(expected))
        return recent if op == "within_days" else not recent
    if op == "contains":
        return isinstance(actual, list | str) and expected in actual
    if op == "in":
        return isinstance(expected, list) and actual in expected
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if actual is None:
        return False
    try:
        if op == "gt":
            return bool(actual > expected)
        if op == "gte":
            return bool(actual >= expected)
        if op == "lt":
            return bool(actual < expected)
        return bool(actual <= expected)
    except TypeError:
        return False


def matches(rule: Mapping[str, Any], facts: Mapping[str, Any], now: datetime) -> bool:
    if "all" in rule:
        return all(matches(r, facts, now) for r in rule["all"])
    if "any" in rule:
        return any(matches(r, facts, now) for r in rule["any"])
    return _compare(rule["op"], _lookup(rule["field"], facts), rule.get("value"), now)
