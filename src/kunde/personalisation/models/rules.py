"""Business rules applied to every recommendation list, whatever model produced the scores."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True)
class Rules:
    """What a response may contain and how it is reordered.

    ``exclude`` holds item indices never shown (bought, unavailable, out of stock, the seed);
    ``boost`` multiplies scores of items (>1 boosts, <1 buries); ``categories`` keeps only
    those categories when given; ``max_per_category`` enforces diversity.
    """

    exclude: frozenset[int] = frozenset()
    categories: frozenset[str] = frozenset()
    boost: Mapping[int, float] = field(default_factory=dict)
    max_per_category: int = 3


def apply(scores: NDArray[np.float32], categories: NDArray[np.str_], rules: Rules,
          limit: int, *, floor: float = 0.0) -> list[int]:
    """Indices of the top ``limit`` items after exclusions, filters, boosts and diversity.

    Items scoring ``floor`` or less are never returned (a model with no opinion says nothing).
    """
    s = scores.astype(np.float64, copy=True)
    for i, factor in rules.boost.items():
        if 0 <= i < s.size:
            s[i] *= factor
    if rules.exclude:
        ex = np.fromiter((i for i in rules.exclude if 0 <= i < s.size), dtype=np.int64)
        s[ex] = -np.inf
    if rules.categories:
        s[~np.isin(categories, list(rules.categories))] = -np.inf
    candidates = min(s.size, max(limit * 8, 50))
    if candidates == 0:
        return []
    top = np.argpartition(-s, candidates - 1)[:candidates]
    top = top[np.argsort(-s[top], kind="stable")]
    chosen: list[int] = []
    per_cat: dict[str, int] = {}
    held_back: list[int] = []
    for i in top:
        if not np.isfinite(s[i]) or s[i] <= floor:
            break
        cat = str(categories[i])
        if cat and per_cat.get(cat, 0) >= rules.max_per_category:
            held_back.append(int(i))
            continue
        per_cat[cat] = per_cat.get(cat, 0) + 1
        chosen.append(int(i))
        if len(chosen) == limit:
            return chosen
    # Diversity is a preference, not a reason to return fewer items than asked.
    return chosen + held_back[: limit - len(chosen)]


def merge_fill(primary: Iterable[T], fallback: Iterable[T], limit: int) -> list[T]:
    """Primary picks first, then fallback picks not already present, up to ``limit``."""
    out: list[T] = []
    seen: set[T] = set()
    for i in (*primary, *fallback):
        if i not in seen:
            seen.add(i)
            out.append(i)
            if len(out) == limit:
                break
    return out
