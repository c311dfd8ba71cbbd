"""Admission control by criticality: the adaptive concurrency limit and who it admits.

Pure logic (stdlib only), driven by the ASGI middleware in `kunde.ops.admission`.

The limit follows Netflix concurrency-limits' *Gradient2*: it compares a short
average of request latency with a long one. When recent requests are slower
than usual the limit shrinks in proportion (never below half per step); when
they are not, it grows by a small queue allowance. A failure that signals
overload (a 503 from inside) cuts the limit multiplicatively, AIMD style.

Criticality follows Google SRE's load-shedding by criticality: background and
interactive may fill only a share of the limit, so as in-flight requests rise
the lowest class is refused first; *critical* counts only against itself and is
refused last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum


class Criticality(IntEnum):
    """Load classes, lowest first. Values index per-class arrays."""

    BACKGROUND = 0
    INTERACTIVE = 1
    CRITICAL = 2

    @classmethod
    def parse(cls, value: object) -> Criticality:
        if value is None:
            return cls.INTERACTIVE
        try:
            return cls[str(value).upper()]
        except KeyError:
            raise ValueError(
                f"criticality must be critical, interactive or background, not {value!r}"
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


CLASSES = tuple(Criticality)
# Share of the limit each class may fill. A class is refused once in-flight requests
# reach its share, so background goes first, then interactive, critical last.
SHARE = {Criticality.BACKGROUND: 0.6, Criticality.INTERACTIVE: 0.85, Criticality.CRITICAL: 1.0}
# Seconds a client should wait before retrying, by class.
RETRY_AFTER = {Criticality.BACKGROUND: 5, Criticality.INTERACTIVE: 2, Criticality.CRITICAL: 1}


class LoadState(IntEnum):
    NORMAL = 0
    WARN = 1
    THROTTLE = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass
class _Ewma:
    window: int
    warmup: int = 10
    value: float = 0.0
    count: int = 0

    def add(self, sample: float) -> float:
        if self.count < self.warmup:
            self.count += 1
            self.value += (sample - self.value) / self.count
        else:
            factor = 2.0 / (self.window + 1)
            self.value = self.value * (1 - factor) + sample * factor
        return self.value


@dataclass
class GradientLimit:
    """A concurrency limit that tracks latency (Gradient2).

    ``update`` is called with the mean latency of a sampling window and the
    highest in-flight count seen in it; it returns the new limit.
    """

    initial: float = 20.0
    min_limit: float = 4.0
    max_limit: float = 1000.0
    smoothing: float = 0.2
    tolerance: float = 1.5
    long_window: int = 600
    short_window: int = 10
    limit: float = field(init=False)
    long_rtt: _Ewma = field(init=False)
    short_rtt: _Ewma = field(init=False)

    def __post_init__(self) -> None:
        self.limit = float(self.initial)
        self.long_rtt = _Ewma(self.long_window)
        self.short_rtt = _Ewma(self.short_window, warmup=1)

    def queue_allowance(self) -> float:
        return max(1.0, math.sqrt(self.limit))

    def update(self, rtt: float, max_inflight: int) -> float:
        if rtt <= 0:
            return self.limit
        short = self.short_rtt.add(rtt)
        long_ = self.long_rtt.add(rtt)
        # After a long slow period the baseline has drifted up: pull it back down.
        if long_ / short > 2.0:
            self.long_rtt.value = long_ * 0.95
        # Do not grow while the application does not use what it has.
        if max_inflight < self.limit / 2:
            return self.limit
        gradient = max(0.5, min(1.0, self.tolerance * self.long_rtt.value / short))
        target = self.limit * gradient + self.queue_allowance()
        new = self.limit * (1 - self.smoothing) + target * self.smoothing
        self.limit = max(self.min_limit, min(self.max_limit, new))
        return self.limit

    def on_overload(self) -> float:
        """An explicit overload signal (a 503 from downstream): back off multiplicatively."""
        self.limit = max(self.min_limit, self.limit * 0.9)
        return self.limit


@dataclass
class Admission:
    """Per-process admission: in-flight counting, the limit, and the load state.

    Single-threaded by design (one asyncio loop per process), so no locks.
    Times are seconds from a monotonic clock supplied by the caller.
    """

    limiter: GradientLimit = field(default_factory=GradientLimit)
    # Critical requests slower than this shrink the limit for the other classes: their
    # latency is the one the shop cannot give up, so the rest of the load makes room.
    critical_objective: float = 0.05
    # Critical requests are refused only beyond this many in flight, however far the
    # limit has shrunk for the others: making room must not turn into shedding checkouts.
    critical_floor: int = 32
    window_seconds: float = 0.1
    window_min_samples: int = 5
    recent_seconds: float = 1.0
    inflight: int = 0
    by_class: list[int] = field(default_factory=lambda: [0] * len(CLASSES))
    _window_start: float = 0.0
    _window_sum: float = 0.0
    _window_n: int = 0
    _window_peak: int = 0
    _last_shed: list[float] = field(default_factory=lambda: [-math.inf] * len(CLASSES))

    @property
    def limit(self) -> float:
        return self.limiter.limit

    def try_acquire(self, cls: Criticality, now: float) -> bool:
        """Admit a request of class ``cls`` (and count it in flight) or refuse it.

        Lower classes are measured against everything in flight; critical only against
        other critical requests, so a flood of lower classes can never starve it (the
        latency it adds shrinks the limit, which then refuses the lower classes more).
        """
        if cls is Criticality.CRITICAL:
            allowed = max(self.limiter.limit, self.critical_floor)
            used = self.by_class[cls]
        else:
            allowed, used = self.limiter.limit * SHARE[cls], self.inflight
        if used >= allowed:
            self._last_shed[cls] = now
            return False
        self.inflight += 1
        self.by_class[cls] += 1
        if self.inflight > self._window_peak:
            self._window_peak = self.inflight
        return True

    def release(self, cls: Criticality, rtt: float, now: float, *,
                overloaded: bool = False) -> None:
        """A request of class ``cls`` admitted by `try_acquire` finished after ``rtt`` s."""
        self.inflight -= 1
        self.by_class[cls] -= 1
        if overloaded or (cls is Criticality.CRITICAL and rtt > self.critical_objective):
            self.limiter.on_overload()
            return
        self._window_sum += rtt
        self._window_n += 1
        if (now - self._window_start >= self.window_seconds
                and self._window_n >= self.window_min_samples):
            self.limiter.update(self._window_sum / self._window_n, self._window_peak)
            self._window_start = now
            self._window_sum = 0.0
            self._window_n = 0
            self._window_peak = self.inflight

    def state(self, now: float) -> LoadState:
        """normal, warn (background is being refused or nearly) or throttle (more than that)."""
        recent = now - self.recent_seconds
        if (self._last_shed[Criticality.INTERACTIVE] > recent
                or self._last_shed[Criticality.CRITICAL] > recent):
            return LoadState.THROTTLE
        use = self.inflight / self.limiter.limit
        if use >= SHARE[Criticality.INTERACTIVE]:
            return LoadState.THROTTLE
        if self._last_shed[Criticality.BACKGROUND] > recent or use >= SHARE[
                Criticality.BACKGROUND]:
            return LoadState.WARN
        return LoadState.NORMAL
