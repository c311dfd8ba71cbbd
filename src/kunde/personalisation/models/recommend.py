"""Serving: turn a trained model set plus one customer's own history into ranked items.

The only personal input is the ``History`` of the customer the request is for; nothing
here can reach another customer's interactions, which is what keeps one person's purchases
out of another person's recommendations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from kunde.personalisation.models import ease, itemknn
from kunde.personalisation.models.data import KIND_WEIGHTS, KINDS
from kunde.personalisation.models.rules import Rules, apply, merge_fill


@dataclass(frozen=True)
class ModelSet:
    """Every trained array the server needs, loaded from one model version."""

    version: str
    items: NDArray[np.str_]
    categories: NDArray[np.str_]
    popularity: NDArray[np.float32]
    segment_names: tuple[str, ...]
    segment_popularity: NDArray[np.float32]
    also_idx: NDArray[np.int32]
    also_sim: NDArray[np.float32]
    together_idx: NDArray[np.int32]
    together_sim: NDArray[np.float32]
    ease_items: NDArray[np.int64]
    ease_weights: NDArray[np.float32]
    index: dict[str, int] = field(default_factory=dict)
    ease_pos: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def build(cls, **arrays: object) -> ModelSet:
        ms = cls(**arrays)  # type: ignore[arg-type]
        pos = np.full(ms.items.size, -1, np.int64)
        pos[ms.ease_items] = np.arange(ms.ease_items.size)
        object.__setattr__(ms, "index", {str(s): i for i, s in enumerate(ms.items)})
        object.__setattr__(ms, "ease_pos", pos)
        return ms


@dataclass(frozen=True)
class History:
    """One customer's interactions: item SKUs, kinds and age in days (newest first)."""

    skus: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    age_days: tuple[float, ...] = ()


@dataclass(frozen=True)
class Pick:
    sku: str
    reason: str
    detail: str
    score: float


SESSION_DAYS = 30 / (24 * 60)  # views within the last 30 minutes form the current session


def _pop_pick(ms: ModelSet, rules: Rules, limit: int, segment: str | None,
              exclude_extra: set[int]) -> list[Pick]:
    scores, reason, detail = ms.popularity, "popular", "popular right now"
    if segment and segment in ms.segment_names:
        row = ms.segment_names.index(segment)
        if ms.segment_popularity[row].any():
            scores = ms.segment_popularity[row]
            reason, detail = "popular_in_segment", f"popular with customers like you ({segment})"
    r = Rules(rules.exclude | exclude_extra, rules.categories, rules.boost,
              rules.max_per_category)
    idx = apply(scores, ms.categories, r, limit, floor=-1.0)
    return [Pick(str(ms.items[i]), reason, detail, float(scores[i])) for i in idx]


def _from_seeds(ms: ModelSet, nbr: tuple[NDArray[np.int32], NDArray[np.float32]],
                seeds: list[int], weights: list[float], rules: Rules, limit: int,
                reason: str, template: str) -> list[Pick]:
    if not seeds:
        return []
    s = np.asarray(seeds, np.int64)
    w = np.asarray(weights, np.float64)
    scores = itemknn.score_from_items(nbr[0], nbr[1], s, w, ms.items.size)
    r = Rules(rules.exclude | set(seeds), rules.categories, rules.boost, rules.max_per_category)
    picks = []
    for i in apply(scores, ms.categories, r, limit):
        contrib = [(float(w[k] * nbr[1][sd][nbr[0][sd] == i].sum()), sd)
                   for k, sd in enumerate(seeds)]
        best = max(contrib)[1]
        picks.append(Pick(str(ms.items[i]), reason, template.format(ms.items[best]),
                          float(scores[i])))
    return picks


def _history_seeds(ms: ModelSet, h: History, kinds: set[str], max_days: float
                   ) -> tuple[list[int], list[float]]:
    agg: dict[int, float] = {}
    for sku, kind, age in zip(h.skus, h.kinds, h.age_days, strict=True):
        i = ms.index.get(sku)
        if i is None or kind not in kinds or age > max_days:
            continue
        agg[i] = agg.get(i, 0.0) + KIND_WEIGHTS.get(kind, 1.0) * 2 ** (-age / 90)
    return list(agg), list(agg.values())


def _personal(ms: ModelSet, h: History, rules: Rules, limit: int) -> list[Pick]:
    seeds, weights = _history_seeds(ms, h, set(KINDS), 365.0)
    pos = [(ms.ease_pos[s], w, s) for s, w in zip(seeds, weights, strict=True)
           if ms.ease_pos[s] >= 0]
    if not pos or ms.ease_weights.size == 0:
        return _from_seeds(ms, (ms.also_idx, ms.also_sim), seeds, weights, rules, limit,
                           "because_you_bought", "because you bought or viewed {}")
    e_seeds = np.asarray([p[0] for p in pos], np.int64)
    e_w = np.asarray([p[1] for p in pos], np.float64)
    sub = ease.score(ms.ease_weights, e_seeds, e_w)
    scores = np.zeros(ms.items.size, np.float32)
    scores[ms.ease_items] = sub
    r = Rules(rules.exclude | set(seeds), rules.categories, rules.boost, rules.max_per_category)
    picks = []
    for i in apply(scores, ms.categories, r, limit):
        j = ms.ease_pos[i]
        contrib = ms.ease_weights[e_seeds, j] * e_w
        seed = pos[int(np.argmax(contrib))][2]
        picks.append(Pick(str(ms.items[i]), "because_you_bought",
                          f"because you bought or viewed {ms.items[seed]}", float(scores[i])))
    return picks


def recommend(ms: ModelSet, context: str, limit: int, *, history: History | None,
              cart: tuple[str, ...] = (), rules: Rules = Rules(),
              segment: str | None = None) -> list[Pick]:
    """Ranked picks for a context (``home``, ``cart`` or ``product:SKU``).

    ``history`` is None for a non-personal request (no consent, or anonymous): then only
    the context itself and popularity are used, and nothing is excluded as already bought.
    """
    picks: list[Pick] = []
    bought: set[int] = set()
    if history is not None:
        bought = {ms.index[s] for s, k in zip(history.skus, history.kinds, strict=True)
                  if k == "purchase" and s in ms.index}
    rules = Rules(rules.exclude | bought, rules.categories, rules.boost, rules.max_per_category)
    if context.startswith("product:"):
        seed = ms.index.get(context.split(":", 1)[1])
        if seed is not None:
            picks = _from_seeds(ms, (ms.also_idx, ms.also_sim), [seed], [1.0], rules, limit,
                                "also_bought", "customers who bought {} also bought")
            # The product on the page is never recommended on it, not even as a fill.
            rules = Rules(rules.exclude | {seed}, rules.categories, rules.boost,
                          rules.max_per_category)
    elif context == "cart":
        seeds = [ms.index[s] for s in cart if s in ms.index]
        picks = _from_seeds(ms, (ms.together_idx, ms.together_sim), seeds, [1.0] * len(seeds),
                            rules, limit, "bought_together", "frequently bought together with {}")
        rules = Rules(rules.exclude | set(seeds), rules.categories, rules.boost,
                      rules.max_per_category)
    elif history is not None:
        sess, sw = _history_seeds(ms, history, {"view", "cart"}, SESSION_DAYS)
        picks = _from_seeds(ms, (ms.also_idx, ms.also_sim), sess, sw, rules,
                            max(1, limit // 2), "because_you_viewed",
                            "next step after viewing {}") if sess else []
        personal = _personal(ms, history, rules, limit)
        picks = _merge(picks, personal, limit)
    if len(picks) < limit:
        taken = {ms.index[p.sku] for p in picks}
        fill = _pop_pick(ms, rules, limit, segment if history is not None else None, taken)
        picks = _merge(picks, fill, limit)
    return picks[:limit]


def _merge(first: list[Pick], second: list[Pick], limit: int) -> list[Pick]:
    by_sku = {p.sku: p for p in reversed(second)}
    by_sku.update({p.sku: p for p in first})
    order = merge_fill([p.sku for p in first], [p.sku for p in second], limit)
    return [by_sku[s] for s in order]
