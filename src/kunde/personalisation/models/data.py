"""Interaction data as compact arrays: the one input every recommender trains on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

# Implicit-feedback strength of each interaction kind.
KIND_WEIGHTS = {"view": 1.0, "cart": 3.0, "purchase": 5.0}
KINDS = ("view", "cart", "purchase")


class TrainingDataError(ValueError):
    """Too little data to train a model; the message says what is missing."""


@dataclass(frozen=True)
class Interactions:
    """Interactions with users and items coded as dense integer indices.

    ``users``/``items`` hold the external ids (customer ids, SKUs) for each index;
    ``basket`` groups the lines of one order (-1 for views and cart adds).
    """

    users: NDArray[np.str_]
    items: NDArray[np.str_]
    user: NDArray[np.int32]
    item: NDArray[np.int32]
    kind: NDArray[np.int8]
    day: NDArray[np.float64]
    basket: NDArray[np.int64]
    item_category: NDArray[np.str_]

    @property
    def n_users(self) -> int:
        return int(self.users.size)

    @property
    def n_items(self) -> int:
        return int(self.items.size)

    def weights(self) -> NDArray[np.float32]:
        table = np.array([KIND_WEIGHTS[k] for k in KINDS], dtype=np.float32)
        return table[self.kind]

    def matrix(self, *, binary: bool = False, kinds: tuple[str, ...] = KINDS
               ) -> sparse.csr_matrix:
        """User x item matrix (summed weights, or 1/0 with ``binary``)."""
        codes = [KINDS.index(k) for k in kinds]
        keep = np.isin(self.kind, codes)
        data = np.ones(int(keep.sum()), np.float32) if binary else self.weights()[keep]
        m = sparse.csr_matrix((data, (self.user[keep], self.item[keep])),
                              shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m


def build(customer: list[str] | NDArray[np.str_], sku: list[str] | NDArray[np.str_],
          kind: list[str] | NDArray[np.str_], day: list[float] | NDArray[np.float64],
          basket: list[str] | NDArray[np.str_] | None = None,
          category: list[str] | NDArray[np.str_] | None = None) -> Interactions:
    """Code raw interaction columns into an `Interactions` (ids sorted, so builds are stable)."""
    c = np.asarray(customer, dtype=np.str_)
    s = np.asarray(sku, dtype=np.str_)
    users, u = np.unique(c, return_inverse=True)
    items, i = np.unique(s, return_inverse=True)
    k = np.asarray([KINDS.index(x) for x in kind], dtype=np.int8) if len(c) else np.zeros(
        0, np.int8)
    if basket is None:
        b = np.full(c.size, -1, np.int64)
    else:
        ba = np.asarray(basket, dtype=np.str_)
        codes = np.unique(ba, return_inverse=True)[1].astype(np.int64)
        b = np.where(ba == "", -1, codes)
    cats = np.full(items.size, "", dtype=object)
    if category is not None:
        cats[i] = np.asarray(category, dtype=np.str_)
    return Interactions(users=users, items=items, user=u.astype(np.int32),
                        item=i.astype(np.int32), kind=k,
                        day=np.asarray(day, dtype=np.float64), basket=b,
                        item_category=cats.astype(np.str_))


def require(data: Interactions, *, min_users: int = 2, min_items: int = 2,
            min_rows: int = 5) -> None:
    """Refuse to train on an empty or tiny dataset with a message a person can act on."""
    if data.user.size < min_rows or data.n_users < min_users or data.n_items < min_items:
        raise TrainingDataError(
            f"not enough interactions to train: {data.user.size} interactions from "
            f"{data.n_users} customers on {data.n_items} products (need at least {min_rows} "
            f"from {min_users} customers on {min_items} products); load more data or run "
            "`kunde demo --load-only` for sample data")
