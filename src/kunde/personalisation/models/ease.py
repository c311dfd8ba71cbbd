"""EASE (Steck 2019): a closed-form linear item-item model for user→item recommendations.

B = I - P·diag(1/diag(P)) with P = (XᵀX + λI)⁻¹, diag(B) = 0. Trained on the most
popular ``max_items`` products so the dense item x item matrix stays small enough to
memory-map; other products fall back to popularity.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import linalg, sparse


def fit(matrix: sparse.csr_matrix, *, l2: float = 300.0) -> NDArray[np.float32]:
    """The item x item weight matrix for a users x items matrix."""
    x = sparse.csr_matrix(matrix, dtype=np.float64)
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += l2
    p = linalg.inv(gram, overwrite_a=True, check_finite=False)
    b = p / (-np.diag(p))
    b[np.diag_indices_from(b)] = 0.0
    out: NDArray[np.float32] = b.astype(np.float32)
    return out


def score(b: NDArray[np.float32], seeds: NDArray[np.int64],
          weights: NDArray[np.float64] | None = None) -> NDArray[np.float32]:
    """Scores of every (model) item for a user whose history holds ``seeds``."""
    if seeds.size == 0:
        return np.zeros(b.shape[0], np.float32)
    rows = b[seeds]
    if weights is not None:
        rows = rows * weights[:, None].astype(np.float32)
    return np.asarray(rows.sum(axis=0), dtype=np.float32)
