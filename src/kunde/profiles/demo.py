"""Demo data: one shopper's history across web, store and app, stitched into one customer.

Ana browses the web shop anonymously, signs up (and gives marketing consent), buys in
the Berlin store with her loyalty card, and uses the app on her phone. A shared store
tablet shows the over-merge guardrail: two shoppers who used it stay two customers.
Everything goes through the Tracking API's service with fixed message ids, so loading
twice stores nothing twice.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rich.console import Console

from kunde.core.errors import Conflict
from kunde.ingest.models import normalise

if TYPE_CHECKING:
    from kunde.kernel import Kernel

SOURCES = (("demo-webshop", "web"), ("demo-app", "app"), ("demo-store-berlin", "store"))
ANA = {"email": "ana.schmidt@example.com", "first_name": "Ana", "last_name": "Schmidt",
       "locale": "de-DE", "city": "Berlin", "loyalty_card": "LC-100042"}
SEGMENTS = (
    ("Recent buyers", "Ordered in the last 30 days",
     {"all": [{"field": "computed.last_order_at", "op": "within_days", "value": 30}]}),
    ("Berlin shoppers", "City trait is Berlin",
     {"all": [{"field": "trait.city", "op": "eq", "value": "Berlin"}]}),
    ("Multi-channel", "Seen on the app and in a store",
     {"all": [{"field": "computed.channels", "op": "contains", "value": "app"},
              {"field": "computed.channels", "op": "contains", "value": "store"}]}),
)


def _story(days_ago: Any) -> dict[str, list[dict[str, Any]]]:
    def t(days: float, minutes: int = 0) -> str:
        return str((days_ago(days) + timedelta(minutes=minutes)).isoformat())

    laptop, phone = "demo-anon-ana-laptop", "demo-anon-ana-phone"
    product = {"sku": "TRAIL-42", "product_id": "p-trail", "name": "Trail runner",
               "category": "shoes", "price": 89.95, "currency": "EUR"}
    return {
        "web": [
            {"type": "page", "anonymousId": laptop, "name": "Running shoes", "timestamp": t(21)},
            {"type": "track", "anonymousId": laptop, "event": "Products Searched",
             "properties": {"query": "trail runner"}, "timestamp": t(21, 1)},
            {"type": "track", "anonymousId": laptop, "event": "Product Viewed",
             "properties": product, "timestamp": t(21, 2)},
            {"type": "track", "anonymousId": laptop, "event": "Product Added",
             "properties": {**product, "quantity": 1}, "timestamp": t(21, 3)},
            {"type": "identify", "anonymousId": laptop, "userId": "demo-user-ana",
             "timestamp": t(20), "traits": ANA,
             "context": {"consent": {"categoryPreferences": {
                 "marketing_email": True, "analytics": True, "personalisation": True},
                 "text_version": "privacy-2026-09", "method": "checkbox"}}},
            {"type": "track", "userId": "demo-user-ana", "event": "Signed Up",
             "timestamp": t(20, 1)},
            {"type": "page", "anonymousId": "demo-anon-visitor", "name": "Sale",
             "timestamp": t(2)},
        ],
        "store": [
            {"type": "identify", "anonymousId": "demo-till-receipt-7731", "timestamp": t(9),
             "traits": {"loyalty_card": ANA["loyalty_card"]}},
            {"type": "track", "anonymousId": "demo-till-receipt-7731", "event": "Order Completed",
             "timestamp": t(9, 1), "properties": {
                 "order_id": "demo-store-7731", "total": 134.90, "currency": "EUR",
                 "products": [{**product, "quantity": 1},
                              {"sku": "SOCK-3", "product_id": "p-sock", "category": "socks",
                               "price": 44.95, "quantity": 1}]}},
            {"type": "identify", "userId": "demo-user-ben", "anonymousId": "demo-store-tablet",
             "timestamp": t(5), "traits": {"first_name": "Ben", "city": "Berlin"}},
            {"type": "identify", "userId": "demo-user-chloe", "anonymousId": "demo-store-tablet",
             "timestamp": t(4), "traits": {"first_name": "Chloé"}},
        ],
        "app": [
            {"type": "screen", "anonymousId": phone, "name": "Home", "timestamp": t(3)},
            {"type": "identify", "anonymousId": phone, "userId": "demo-user-ana",
             "timestamp": t(3, 1), "traits": {"device": "phone"},
             "context": {"consent": {"categoryPreferences": {"marketing_push": True},
                                     "text_version": "app-2026-08", "method": "app_settings"}}},
            {"type": "track", "userId": "demo-user-ana", "event": "Product Viewed",
             "properties": {**product, "sku": "TRAIL-43", "product_id": "p-trail-2"},
             "timestamp": t(1)},
            {"type": "screen", "userId": "demo-user-ana", "name": "Loyalty card",
             "timestamp": t(1, 2)},
        ],
    }


async def load(kernel: Kernel) -> None:
    from kunde.ingest.importer import source_id_for
    from kunde.ingest.service import IngestService
    from kunde.profiles.service_segments import SegmentService

    console = Console(stderr=True)
    for name, channel in SOURCES:
        with contextlib.suppress(Conflict):
            _, key = await kernel.access.create_source(name, channel)
            console.print(f"demo source {name} ({channel}) write key: [cyan]{key}[/]")
    now = kernel.clock.now()
    story = _story(lambda days: now - timedelta(days=days))
    service = kernel.service(IngestService)
    for name, channel in SOURCES:
        source_id, _ = await source_id_for(kernel, name, channel)
        messages = [
            normalise({**m, "messageId": f"demo-{channel}-{i}"}, index=i, kind=None,
                      received_at=now, batch_sent_at=None, channel=channel, check_size=False)
            for i, m in enumerate(story[channel])
        ]
        await service.accept(source_id, channel, messages)
    segments = kernel.service(SegmentService)
    for name, description, rules in SEGMENTS:
        with contextlib.suppress(Conflict):
            await segments.create(name, rules, description)
