"""Loyalty's consumers of the event log and its periodic jobs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from kunde.core.events import Event
from kunde.loyalty.models import KNOWN_EVENTS
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_earn import EarnEngine
from kunde.loyalty.service_merge import MERGE_EVENTS
from kunde.loyalty.service_seasons import SeasonEnd
from kunde.loyalty.service_tiers import TierReviews
from kunde.loyalty.webhooks import LoyaltyWebhooks, consumer
from kunde.store.consumers import Consumer
from kunde.store.database import UnitOfWork
from kunde.store.jobs import PeriodicJob

if TYPE_CHECKING:
    from kunde.kernel import Kernel

# Purchases come only from commerce events (never interaction order_completed), so an
# external order recorded by commerce is counted once.
CONSUMED = frozenset(KNOWN_EVENTS | MERGE_EVENTS | {"fulfilment.goodwill_granted",
                                                    "segments.entered", "segments.left"}) - {
    "loyalty.reward_redeemed", "loyalty.quest_completed"}


def consumers(kernel: Kernel) -> Sequence[Consumer]:
    engine = kernel.service(EarnEngine)

    async def handle(uow: UnitOfWork, events: Sequence[Event]) -> None:
        await engine.handle_batch(uow, events)

    return [Consumer(name="loyalty.engine", handle=handle, types=CONSUMED), consumer(kernel)]


def jobs(kernel: Kernel) -> Sequence[PeriodicJob]:
    async def lots_due() -> str:
        done = await kernel.service(LoyaltyService).run_due()
        return f"released {done['released']}, expired {done['expired']}"

    async def tier_reviews() -> str:
        return f"downgraded {await kernel.service(TierReviews).run_due()}"

    async def seasons_due() -> str:
        return f"finished {await kernel.service(SeasonEnd).run_due()} season standings"

    async def webhooks_due() -> str:
        return await kernel.service(LoyaltyWebhooks).send_due()

    return [
        PeriodicJob("loyalty.webhooks", timedelta(seconds=5), webhooks_due),
        PeriodicJob("loyalty.lots", timedelta(minutes=5), lots_due),
        PeriodicJob("loyalty.tier_reviews", timedelta(hours=1), tier_reviews),
        PeriodicJob("loyalty.season_end", timedelta(minutes=10), seasons_due),
    ]
