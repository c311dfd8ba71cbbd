"""Per-destination circuit breakers for outbound calls (webhooks, SMTP, Redis, carriers).

A destination that keeps failing is not called for a while: callers fail fast
(`CircuitOpen`) and leave the retry to their outbox, instead of holding a
request or a consumer for a timeout on every attempt. After ``reset_seconds``
one trial call is let through (half-open); its success closes the circuit.

    breakers = Breakers()
    async with breakers.guard("https://hooks.example.com"):
        await client.post(...)

The state machine is pure; times come from a monotonic clock that tests may replace.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from kunde.core.errors import Unavailable

State = Literal["closed", "open", "half_open"]


class CircuitOpen(Unavailable):
    code = "service.circuit_open"


@dataclass
class CircuitBreaker:
    """Opens after ``failures`` consecutive failures; retries one call after ``reset_seconds``."""

    destination: str
    failures: int = 5
    reset_seconds: float = 30.0
    state: State = "closed"
    consecutive: int = 0
    opened_at: float = 0.0
    trial_running: bool = False
    opened_count: int = 0

    def allow(self, now: float) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open" and now - self.opened_at >= self.reset_seconds:
            self.state = "half_open"
            self.trial_running = False
        if self.state == "half_open" and not self.trial_running:
            self.trial_running = True
            return True
        return False

    def success(self) -> None:
        self.state = "closed"
        self.consecutive = 0
        self.trial_running = False

    def failure(self, now: float) -> None:
        self.consecutive += 1
        if self.state == "half_open" or self.consecutive >= self.failures:
            if self.state != "open":
                self.opened_count += 1
            self.state = "open"
            self.opened_at = now
            self.trial_running = False

    def retry_in(self, now: float) -> float:
        return max(0.0, self.reset_seconds - (now - self.opened_at)) if self.state == "open" \
            else 0.0


@dataclass
class Breakers:
    """One breaker per destination (a URL's scheme://host:port or any stable name)."""

    failures: int = 5
    reset_seconds: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _by_destination: dict[str, CircuitBreaker] = field(default_factory=dict)

    def get(self, destination: str) -> CircuitBreaker:
        breaker = self._by_destination.get(destination)
        if breaker is None:
            breaker = self._by_destination[destination] = CircuitBreaker(
                destination, self.failures, self.reset_seconds)
        return breaker

    def states(self) -> dict[str, State]:
        return {d: b.state for d, b in self._by_destination.items()}

    @asynccontextmanager
    async def guard(self, destination: str) -> AsyncIterator[CircuitBreaker]:
        """Run the body if the destination's circuit allows it; record how it went."""
        breaker = self.get(destination)
        now = self.clock()
        if not breaker.allow(now):
            raise CircuitOpen(
                f"{destination} is failing; not called for {breaker.retry_in(now):.0f} s",
                retry_after=max(1, round(breaker.retry_in(now))),
            )
        try:
            yield breaker
        except BaseException:
            breaker.failure(self.clock())
            raise
        breaker.success()
