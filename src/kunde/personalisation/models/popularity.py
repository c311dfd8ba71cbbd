"""Popularity: global, per segment, time-decayed. The cold-start fallback of every context."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from kunde.personalisation.models.data import Interactions


def decayed_popularity(data: Interactions, *, now_day: float, half_life_days: float = 30.0,
                       users: NDArray[np.bool_] | None = None) -> NDArray[np.float32]:
    """Sum of interaction weights, each halved for every ``half_life_days`` of age.

    ``users`` (a mask over user indices) restricts it to a segment's members.
    """
    w = data.weights().astype(np.float64)
    age = np.maximum(now_day - data.day, 0.0)
    w = w * np.exp2(-age / half_life_days)
    if users is not None:
        w = w * users[data.user]
    return np.bincount(data.item, weights=w, minlength=data.n_items).astype(np.float32)


def segment_popularity(data: Interactions, members: dict[str, NDArray[np.bool_]], *,
                       now_day: float, half_life_days: float = 30.0
                       ) -> tuple[list[str], NDArray[np.float32]]:
    """One decayed popularity row per segment (segments x items)."""
    names = sorted(members)
    rows = [decayed_popularity(data, now_day=now_day, half_life_days=half_life_days,
                               users=members[n]) for n in names]
    matrix = np.vstack(rows) if rows else np.zeros((0, data.n_items), np.float32)
    return names, matrix.astype(np.float32)
