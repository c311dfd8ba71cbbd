"""Offline ranking metrics over users: hit rate, NDCG, recall, catalogue coverage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


def ranking_metrics(recommended: Sequence[NDArray[np.int64]], truth: Sequence[set[int]],
                    n_items: int) -> dict[str, float]:
    """HR@10, NDCG@10 (binary relevance), Recall@20 and coverage@10 over the evaluated users."""
    hits10 = ndcg = recall = 0.0
    shown: set[int] = set()
    discounts = 1.0 / np.log2(np.arange(2, 22))
    users = 0
    for recs, rel in zip(recommended, truth, strict=True):
        if not rel:
            continue
        users += 1
        top10 = [int(i) for i in recs[:10]]
        top20 = [int(i) for i in recs[:20]]
        shown.update(top10)
        gains = np.array([1.0 if i in rel else 0.0 for i in top10])
        hits10 += float(gains.any())
        ideal = discounts[: min(len(rel), 10)].sum()
        ndcg += float((gains * discounts[: gains.size]).sum() / ideal) if ideal else 0.0
        recall += sum(1 for i in top20 if i in rel) / min(len(rel), 20)
    if users == 0:
        return {"users": 0, "hr@10": 0.0, "ndcg@10": 0.0, "recall@20": 0.0, "coverage": 0.0}
    return {"users": users, "hr@10": hits10 / users, "ndcg@10": ndcg / users,
            "recall@20": recall / users, "coverage": len(shown) / max(n_items, 1)}
