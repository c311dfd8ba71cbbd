"""Rule evaluation: a 25-rule programme with 10 active quests, events per second, one process.

Pure evaluation (what the loyalty consumer does per event before touching the
database): the compiled programme picks the rules and quest steps listening to the
event's type, tests their conditions, computes points with tier multipliers and
reasons, and lists quest marks. A realistic mix of event types is replayed.

    .venv/bin/python bench/loyalty_rules.py
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from kunde.loyalty.models import Programme
from kunde.loyalty.rules import CompiledProgramme, EventView
from kunde.loyalty.service_programme import programme_from_data

TARGET = 10_000
SECONDS = 3.0


def programme() -> Programme:
    rules: list[dict[str, Any]] = []
    for i in range(10):
        rules.append({"id": f"spend_{i}", "event": "commerce.order_paid",
                      "where": {"amount_minor": {"gte": i * 1000}},
                      "points_per": {"field": "amount_minor", "per": 100, "points": 1},
                      "tier_multipliers": {"gold": 1.5}, "cap": {"per": "day",
                                                                 "max_points": 5000}})
    for i in range(8):
        rules.append({"id": f"track_{i}", "event": "ingest.track",
                      "where": {"event": f"Event {i}", "properties.value": {"gte": 1}},
                      "points": 5 + i, "channels": ["web", "app"]})
    for i in range(4):
        rules.append({"id": f"interaction_{i}", "event": "interaction.recorded",
                      "where": {"kind": ["product_reviewed", "product_viewed",
                                         "product_added", "checkout_started"][i]},
                      "points": 2, "cap": {"per": "day", "max_times": 3}})
    rules += [{"id": "feedback", "event": "service.feedback_given",
               "where": {"score": {"gte": 4}}, "points": 15},
              {"id": "joined", "event": "profiles.customer_created", "points": 50},
              {"id": "delivered", "event": "fulfilment.shipment_delivered", "points": 1}]
    quests: list[dict[str, Any]] = []
    for i in range(10):
        step = ({"event": "commerce.order_paid", "distinct": "categories", "count": 3}
                if i % 2 == 0 else
                {"event": "ingest.track", "where": {"event": f"Event {i % 8}"}, "count": 2})
        quests.append({"id": f"quest_{i}", "name": f"Quest {i}", "cadence": "weekly",
                       "steps": [step], "reward_points": 50})
    tiers = [{"id": "bronze", "name": "Bronze"}, {"id": "gold", "name": "Gold",
                                                  "min_points": 1000, "earn_multiplier": 1.5}]
    return programme_from_data({"earn_rules": rules, "quests": quests, "tiers": tiers})


def events() -> list[EventView]:
    at = datetime(2026, 11, 20, tzinfo=UTC)
    out = []
    for i in range(1000):
        kind = i % 5
        if kind == 0:
            out.append(EventView("commerce.order_paid", {
                "order_id": str(i), "amount_minor": 1000 + i * 37, "currency": "EUR",
                "categories": ["shoes", "bags"][: 1 + i % 2]}, "web", at))
        elif kind in (1, 2):
            out.append(EventView("ingest.track", {"event": f"Event {i % 9}",
                                                  "properties": {"value": i % 3}}, "app", at))
        elif kind == 3:
            out.append(EventView("interaction.recorded", {"kind": "product_viewed",
                                                          "sku": "S"}, "web", at))
        else:
            out.append(EventView("service.feedback_given", {"score": i % 6}, "web", at))
    return out


def main() -> dict[str, Any]:
    prog = programme()
    cp = CompiledProgramme(prog)
    evs = events()
    n = awards = marks = 0
    start = time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        for ev in evs:
            tier = "gold" if n % 3 == 0 else "bronze"
            awards += len(cp.earn(ev, tier))
            marks += sum(1 for _ in cp.quest_hits(ev))
            n += 1
    elapsed = time.perf_counter() - start
    rate = n / elapsed
    return {"benchmark": "loyalty_rules", "rules": len(prog.earn_rules),
            "quests": len(prog.quests), "events": n, "awards": awards, "quest_marks": marks,
            "events_per_second": round(rate), "target": TARGET, "met": rate >= TARGET}


if __name__ == "__main__":
    print(json.dumps(main()))
