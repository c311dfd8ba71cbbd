"""Item-to-item neighbours: "customers who bought this also bought" and "bought together".

Neighbour lists are computed once at training time, in item chunks so memory stays bounded,
and kept as two small arrays (items x K indices and similarities) for serving.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from kunde.personalisation.models.data import Interactions


def _top_k(dense: NDArray[np.float32], k: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    k = min(k, dense.shape[1])
    idx = np.argpartition(-dense, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(dense, idx, axis=1)
    order = np.argsort(-vals, axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    idx = np.where(vals > 0, idx, -1)
    return idx.astype(np.int32), np.maximum(vals, 0).astype(np.float32)


def neighbours(matrix: sparse.csr_matrix, *, k: int = 50, shrink: float = 10.0,
               min_rows: int = 2, chunk: int = 1024
               ) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Top-``k`` cosine neighbours of every item (columns of a rows x items 0/1 matrix).

    ``shrink`` damps similarities supported by few co-occurrences (Koren's shrinkage);
    items seen in fewer than ``min_rows`` rows neither get nor serve as neighbours, which
    keeps the computation proportional to the useful part of a long-tailed catalogue.
    """
    m = sparse.csc_matrix(matrix, dtype=np.float32)
    m.data[:] = 1.0
    n = m.shape[1]
    counts = np.diff(m.indptr)
    useful = np.flatnonzero(counts >= min_rows)
    kk = max(1, min(k, n))
    idx_out = np.full((n, kk), -1, np.int32)
    sim_out = np.zeros((n, kk), np.float32)
    if useful.size < 2:
        return idx_out, sim_out
    sub = m[:, useful]
    norms = np.sqrt(counts[useful]).astype(np.float32)
    subt = sub.T.tocsr()
    kk_sub = min(kk, useful.size)
    for start in range(0, useful.size, chunk):
        stop = min(start + chunk, useful.size)
        # sim = co / (|i| |j|) * co / (co + shrink), computed in place on one dense block.
        sim = (subt[start:stop] @ sub).toarray()
        denom = sim + shrink
        np.multiply(sim, sim, out=sim)
        np.divide(sim, denom, out=sim)
        del denom
        sim /= norms[None, :]
        sim /= norms[start:stop, None]
        sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
        top, vals = _top_k(sim, kk_sub)
        rows = useful[start:stop]
        idx_out[rows, :kk_sub] = np.where(top >= 0, useful[np.maximum(top, 0)], -1)
        sim_out[rows, :kk_sub] = vals
    return idx_out, sim_out


def basket_matrix(data: Interactions) -> sparse.csr_matrix:
    """Orders x items (1 when the order held the item): the "bought together" signal."""
    keep = data.basket >= 0
    if not keep.any():
        return sparse.csr_matrix((0, data.n_items), dtype=np.float32)
    b = np.unique(data.basket[keep], return_inverse=True)[1]
    m = sparse.csr_matrix((np.ones(int(keep.sum()), np.float32), (b, data.item[keep])),
                          shape=(int(b.max()) + 1, data.n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def score_from_items(nbr_idx: NDArray[np.int32], nbr_sim: NDArray[np.float32],
                     seeds: NDArray[np.int64], weights: NDArray[np.float64] | None,
                     n_items: int) -> NDArray[np.float32]:
    """Sum the neighbour lists of the seed items (weighted) into one score per item."""
    scores = np.zeros(n_items, np.float32)
    if seeds.size == 0:
        return scores
    w = np.ones(seeds.size) if weights is None else weights
    idx = nbr_idx[seeds]
    sims = nbr_sim[seeds] * w[:, None].astype(np.float32)
    ok = idx >= 0
    np.add.at(scores, idx[ok], sims[ok])
    return scores
