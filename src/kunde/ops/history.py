"""The last hour of load figures, per second, in a fixed ring buffer (pure, stdlib only).

The admission middleware records every request here; the operations page draws
from it and the Prometheus collector exposes its running totals, so both always
show the same figures. Memory is bounded: 3,600 slots of a few small lists.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from kunde.ops.models import CLASSES

# Latency histogram bounds in seconds (upper bounds; the last bin is "slower").
BOUNDS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075,
          0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NBINS = len(BOUNDS) + 1
K = len(CLASSES)


def _zeros() -> list[int]:
    return [0] * K


def _hists() -> list[list[int]]:
    return [[0] * NBINS for _ in range(K)]


@dataclass
class Slot:
    second: int = -1
    admitted: list[int] = field(default_factory=_zeros)
    shed: list[int] = field(default_factory=_zeros)
    errors: list[int] = field(default_factory=_zeros)
    hist: list[list[int]] = field(default_factory=_hists)
    lag: int | None = None

    def reset(self, second: int) -> None:
        self.second = second
        self.admitted = _zeros()
        self.shed = _zeros()
        self.errors = _zeros()
        self.hist = _hists()
        self.lag = None


@dataclass
class Point:
    """Figures of one bucket of a series, per class where it says so."""

    start: int
    seconds: int
    admitted: list[int]
    shed: list[int]
    errors: list[int]
    p50: list[float | None]
    p99: list[float | None]
    lag: int | None


def percentile(hist: list[int], q: float) -> float | None:
    """Upper bound (seconds) of the bin holding the q-quantile; None without samples."""
    total = sum(hist)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank and n:
            return BOUNDS[i] if i < len(BOUNDS) else BOUNDS[-1] * 2
    return BOUNDS[-1] * 2


class LoadHistory:
    def __init__(self, seconds: int = 3600) -> None:
        self.seconds = seconds
        self.slots = [Slot() for _ in range(seconds)]
        self.total_admitted = _zeros()
        self.total_shed = _zeros()
        self.total_errors = _zeros()
        self.total_hist = _hists()
        self.total_latency = [0.0] * K

    def _slot(self, now: float) -> Slot:
        sec = int(now)
        slot = self.slots[sec % self.seconds]
        if slot.second != sec:
            slot.reset(sec)
        return slot

    def record(self, cls: int, latency: float, status: int, now: float) -> None:
        """One admitted request of class ``cls`` that answered ``status`` after ``latency``."""
        slot = self._slot(now)
        b = bisect_left(BOUNDS, latency)
        slot.admitted[cls] += 1
        slot.hist[cls][b] += 1
        self.total_admitted[cls] += 1
        self.total_hist[cls][b] += 1
        self.total_latency[cls] += latency
        if status >= 500:
            slot.errors[cls] += 1
            self.total_errors[cls] += 1

    def record_shed(self, cls: int, now: float) -> None:
        self._slot(now).shed[cls] += 1
        self.total_shed[cls] += 1

    def record_lag(self, lag: int, now: float) -> None:
        self._slot(now).lag = lag

    def series(self, now: float, *, span: int = 3600, bucket: int = 60) -> list[Point]:
        """``span`` seconds up to ``now`` in buckets of ``bucket`` seconds, oldest first."""
        span = min(span, self.seconds)
        end = int(now)
        first = end - span + 1
        points: list[Point] = []
        for start in range(first, end + 1, bucket):
            admitted, shed, errors = _zeros(), _zeros(), _zeros()
            hist = _hists()
            lag: int | None = None
            for sec in range(start, min(start + bucket, end + 1)):
                slot = self.slots[sec % self.seconds]
                if slot.second != sec:
                    continue
                for c in range(K):
                    admitted[c] += slot.admitted[c]
                    shed[c] += slot.shed[c]
                    errors[c] += slot.errors[c]
                    row = slot.hist[c]
                    acc = hist[c]
                    for i in range(NBINS):
                        acc[i] += row[i]
                if slot.lag is not None:
                    lag = slot.lag
            points.append(Point(
                start=start, seconds=bucket, admitted=admitted, shed=shed, errors=errors,
                p50=[percentile(h, 0.5) for h in hist], p99=[percentile(h, 0.99) for h in hist],
                lag=lag,
            ))
        return points
