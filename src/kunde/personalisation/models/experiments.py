"""Experiments and flags: deterministic assignment and per-variant results with intervals."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass


def bucket(customer_id: str, key: str) -> float:
    """A stable number in [0, 1) for a customer and an experiment or flag key."""
    digest = hashlib.sha256(f"{key}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(customer_id: str, key: str, variants: Sequence[tuple[str, float]]) -> str:
    """The variant of ``customer_id`` in experiment ``key``: same input, same answer, always."""
    total = sum(w for _, w in variants)
    if not variants or total <= 0:
        raise ValueError("an experiment needs variants with positive weights")
    point = bucket(customer_id, key) * total
    acc = 0.0
    for name, weight in variants:
        acc += weight
        if point < acc:
            return name
    return variants[-1][0]


@dataclass(frozen=True)
class VariantResult:
    variant: str
    customers: int
    conversions: int
    conversion_rate: float
    conversion_ci: tuple[float, float]
    revenue_per_customer: float
    revenue_ci: tuple[float, float]


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (good at small n and rates near 0 or 1)."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci(values: Sequence[float], z: float = 1.96) -> tuple[float, tuple[float, float]]:
    """Mean and normal-approximation interval (revenue per customer, zeros included)."""
    n = len(values)
    if n == 0:
        return 0.0, (0.0, 0.0)
    mean = sum(values) / n
    if n == 1:
        return mean, (mean, mean)
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = z * math.sqrt(var / n)
    return mean, (mean - half, mean + half)


def variant_result(variant: str, revenues: Sequence[float]) -> VariantResult:
    """Results of one variant from each exposed customer's revenue after exposure."""
    n = len(revenues)
    conv = sum(1 for r in revenues if r > 0)
    mean, ci = mean_ci(revenues)
    return VariantResult(variant, n, conv, conv / n if n else 0.0, wilson(conv, n), mean, ci)


def flag_enabled(customer_id: str | None, key: str, *, enabled: bool, rollout_percent: float,
                 cohort_member: bool, opted_in: bool, beta: bool, tier_granted: bool) -> bool:
    """Whether a flag is on for a customer (anonymous callers get the rollout of nobody)."""
    if not enabled:
        return False
    if cohort_member or tier_granted or (beta and opted_in):
        return True
    if customer_id is None:
        return rollout_percent >= 100
    return bucket(customer_id, key) * 100 < rollout_percent
