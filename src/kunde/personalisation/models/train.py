"""Training: every recommender's arrays from one `Interactions`, with per-model timings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from kunde.personalisation.models import ease, itemknn, popularity
from kunde.personalisation.models.data import Interactions, require


@dataclass(frozen=True)
class TrainConfig:
    half_life_days: float = 30.0
    neighbours: int = 50
    ease_items: int = 4000
    ease_l2: float = 1000.0
    # Products bought or viewed by fewer customers get no neighbours; 0 picks by data size
    # (2 for a small shop, 5 from 1,000 customers on: the long tail costs the most time and
    # its similarities rest on two or three customers anyway).
    knn_min_customers: int = 0


Progress = Callable[[str], None]


def top_items(data: Interactions, n: int) -> NDArray[np.int64]:
    """Indices of the ``n`` items with the most distinct users, sorted by index."""
    m = data.matrix(binary=True)
    users_per_item = np.asarray(m.sum(axis=0)).ravel()
    n = min(n, data.n_items)
    top = np.argpartition(-users_per_item, n - 1)[:n] if n else np.zeros(0, np.int64)
    return np.sort(top).astype(np.int64)


def train_all(data: Interactions, *, now_day: float, segments: dict[str, NDArray[np.bool_]],
              config: TrainConfig = TrainConfig(), progress: Progress | None = None
              ) -> tuple[dict[str, NDArray[np.generic]], dict[str, float]]:
    """Arrays for a `ModelSet` plus seconds spent per model. Raises on too little data."""
    require(data)
    step = progress or (lambda _name: None)
    arrays: dict[str, NDArray[np.generic]] = {"items": data.items,
                                              "categories": data.item_category}
    timings: dict[str, float] = {}

    t = time.perf_counter()
    step("popularity")
    arrays["popularity"] = popularity.decayed_popularity(
        data, now_day=now_day, half_life_days=config.half_life_days)
    names, seg = popularity.segment_popularity(data, segments, now_day=now_day,
                                               half_life_days=config.half_life_days)
    arrays["segment_names"] = np.asarray(names, dtype=np.str_)
    arrays["segment_popularity"] = seg
    timings["popularity"] = time.perf_counter() - t

    t = time.perf_counter()
    step("item-to-item (also bought)")
    min_rows = config.knn_min_customers or (2 if data.n_users < 1000 else 5)
    arrays["also_idx"], arrays["also_sim"] = itemknn.neighbours(
        data.matrix(), k=config.neighbours, min_rows=min_rows)
    timings["itemknn"] = time.perf_counter() - t

    t = time.perf_counter()
    step("bought together")
    baskets = itemknn.basket_matrix(data)
    if baskets.shape[0]:
        arrays["together_idx"], arrays["together_sim"] = itemknn.neighbours(
            baskets, k=config.neighbours // 2, shrink=2.0, min_rows=min_rows)
    else:
        arrays["together_idx"], arrays["together_sim"] = arrays["also_idx"], arrays["also_sim"]
    timings["together"] = time.perf_counter() - t

    t = time.perf_counter()
    step("EASE (user to item)")
    keep = top_items(data, config.ease_items)
    sub = data.matrix(binary=True)[:, keep]
    arrays["ease_items"] = keep
    arrays["ease_weights"] = ease.fit(sub, l2=config.ease_l2)
    timings["ease"] = time.perf_counter() - t
    return arrays, timings
