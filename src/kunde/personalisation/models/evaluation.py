"""Offline evaluation on a temporal split: train on the past, test on the following period.

Ground truth for a user is the set of products they bought in the test period that they
had not bought in the training period: the "exclude already bought" rule every response
applies makes repeat purchases unreachable, so they are not counted either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from kunde.personalisation.models import ease, itemknn, popularity
from kunde.personalisation.models.data import Interactions
from kunde.personalisation.models.metrics import ranking_metrics
from kunde.personalisation.models.train import top_items

Scorer = Callable[[sparse.csr_matrix], NDArray[np.float32]]


@dataclass(frozen=True)
class Split:
    train: Interactions
    test_users: NDArray[np.int64]
    truth: list[set[int]]
    split_day: float


def _subset(d: Interactions, mask: NDArray[np.bool_]) -> Interactions:
    return Interactions(d.users, d.items, d.user[mask], d.item[mask], d.kind[mask],
                        d.day[mask], d.basket[mask], d.item_category)


def temporal_split(data: Interactions, *, test_days: float, max_users: int | None = None,
                   seed: int = 7) -> Split:
    """Everything before the last ``test_days`` trains; later purchases are the truth."""
    split_day = float(data.day.max()) - test_days
    train = _subset(data, data.day < split_day)
    test_mask = (data.day >= split_day) & (data.kind == 2)
    seen = sparse.csr_matrix(
        (np.ones(train.user.size, np.float32), (train.user, train.item)),
        shape=(data.n_users, data.n_items))
    truth: dict[int, set[int]] = {}
    for u, i in zip(data.user[test_mask], data.item[test_mask], strict=True):
        truth.setdefault(int(u), set()).add(int(i))
    users = [u for u, items in truth.items() if seen[u].nnz > 0]
    truth_sets = []
    kept = []
    for u in sorted(users):
        novel = {i for i in truth[u] if seen[u, i] == 0}
        if novel:
            kept.append(u)
            truth_sets.append(novel)
    arr = np.asarray(kept, np.int64)
    if max_users and arr.size > max_users:
        pick = np.sort(np.random.default_rng(seed).choice(arr.size, max_users, replace=False))
        arr = arr[pick]
        truth_sets = [truth_sets[i] for i in pick]
    return Split(train, arr, truth_sets, split_day)


def _top(scores: NDArray[np.float32], history: sparse.csr_matrix, k: int
         ) -> list[NDArray[np.int64]]:
    s = np.asarray(scores, dtype=np.float32).copy()
    k = min(k, s.shape[1])
    rows, cols = history.nonzero()
    s[rows, cols] = -np.inf
    idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, idx, axis=1), axis=1)
    return [row.astype(np.int64) for row in np.take_along_axis(idx, order, axis=1)]


def evaluate_scorer(name: str, fit: Callable[[], Scorer], split: Split, *, k: int = 20,
                    batch: int = 512) -> dict[str, float | str]:
    """Fit (timed), score the test users in batches, and compute the ranking metrics."""
    t = time.perf_counter()
    scorer = fit()
    train_s = time.perf_counter() - t
    x = split.train.matrix().tocsr()
    recs: list[NDArray[np.int64]] = []
    for start in range(0, split.test_users.size, batch):
        users = split.test_users[start:start + batch]
        hist = x[users]
        recs.extend(_top(scorer(hist), hist, k))
    result: dict[str, float | str] = {"model": name, "train_seconds": round(train_s, 3)}
    result.update(ranking_metrics(recs, split.truth, split.train.n_items))
    return result


def popularity_fit(split: Split) -> Scorer:
    pop = popularity.decayed_popularity(split.train, now_day=split.split_day,
                                        half_life_days=10_000.0)
    return lambda hist: np.tile(pop, (hist.shape[0], 1))


def itemknn_fit(split: Split, k: int = 100, shrink: float = 10.0, min_rows: int = 3
                ) -> Scorer:
    idx, sim = itemknn.neighbours(split.train.matrix(), k=k, shrink=shrink, min_rows=min_rows)
    n = split.train.n_items
    rows = np.repeat(np.arange(n), idx.shape[1])
    ok = idx.ravel() >= 0
    s = sparse.csr_matrix((sim.ravel()[ok], (rows[ok], idx.ravel()[ok])), shape=(n, n))
    return lambda hist: np.asarray((hist @ s).toarray(), np.float32)


def ease_fit(split: Split, l2: float, n_items: int) -> Scorer:
    keep = top_items(split.train, n_items)
    x = split.train.matrix(binary=True)[:, keep]
    b = ease.fit(x, l2=l2)
    n = split.train.n_items

    def score(hist: sparse.csr_matrix) -> NDArray[np.float32]:
        h = hist[:, keep].copy()
        h.data[:] = 1.0
        out = np.full((hist.shape[0], n), -1e9, np.float32)
        out[:, keep] = np.asarray(h @ b, np.float32)
        return out

    return score


def als_fit(split: Split, factors: int, iterations: int = 15) -> Scorer:
    """`implicit`'s ALS (optional dependency, used only as a comparison in evaluation)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    x = split.train.matrix(binary=True).tocsr()
    # implicit parallelises itself; a BLAS thread pool on top of it only slows it down.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=0.05,
                                        iterations=iterations, random_state=1)
        model.fit(x * 20.0, show_progress=False)
    items = np.asarray(model.item_factors)

    def score(hist: sparse.csr_matrix) -> NDArray[np.float32]:
        users = np.asarray(model.recalculate_user(np.arange(hist.shape[0]),
                                                  (hist > 0).astype(np.float32) * 20.0))
        return np.asarray(users @ items.T, np.float32)

    return score
