"""Earning from events end to end: rules, caps, pending, clawback, tiers, welcome, quests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import kunde.loyalty
from kunde.core.clock import FrozenClock
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.loyalty.handlers import consumers
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_members import MemberViews
from kunde.loyalty.service_programme import ProgrammeService, parse_programme
from kunde.profiles.service import ProfileService
from kunde.store.consumers import ConsumerRunner, replay
from loyalty_helpers import loyalty_client

EXAMPLE = Path(kunde.loyalty.__file__).parent / "programme.example.yaml"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[Any]:
    async for c in loyalty_client(kernel):
        yield c


async def setup_programme(kernel: Kernel) -> None:
    kernel.clock = FrozenClock(NOW)
    await kernel.service(ProgrammeService).apply(parse_programme(EXAMPLE.read_text()),
                                                 actor="test")


async def emit(kernel: Kernel, cid: str, type_: str, payload: dict[str, Any],
               source: str = "web") -> str:
    ev = Event.new(type_, payload, subject_id=cid, source=source,
                   occurred_at=kernel.clock.now())
    async with kernel.db.transaction() as uow:
        uow.emit(ev)
    return ev.id


async def drain(kernel: Kernel) -> None:
    parts = frozenset(range(kernel.settings.partitions))
    await ConsumerRunner(kernel.db, kernel.log, consumers(kernel), lambda: parts).drain()


async def order(kernel: Kernel, cid: str, total: int, categories: list[str]) -> str:
    oid = new_id()
    lines = [{"line_id": str(i), "sku": f"S{i}", "product_id": f"P{i}", "title": c,
              "category": c, "quantity": 1, "unit_price_minor": total // len(categories),
              "total_minor": total // len(categories)} for i, c in enumerate(categories)]
    await emit(kernel, cid, "commerce.order_placed", {
        "order_id": oid, "number": "1", "customer_id": cid, "channel": "web",
        "currency": "EUR", "external": False, "lines": lines, "subtotal_minor": total,
        "discount_minor": 0, "shipping_minor": 0, "total_minor": total,
        "shipping_method": "standard"})
    await emit(kernel, cid, "commerce.order_paid", {
        "order_id": oid, "amount_minor": total, "currency": "EUR", "external": False})
    return oid


async def summary(kernel: Kernel, cid: str) -> dict[str, Any]:
    return await kernel.service(LoyaltyService).member_summary(cid)


async def test_purchase_earns_pending_points_then_they_become_available(kernel: Kernel) -> None:
    await setup_programme(kernel)
    cid = new_id()
    await order(kernel, cid, 12_345, ["shoes"])
    await drain(kernel)
    s = await summary(kernel, cid)
    assert (s["balance"], s["pending"], s["tier"]) == (0, 123, "bronze")
    history = await kernel.service(LoyaltyService).history(cid)
    assert "1 per 100 of amount_minor (12345) = 123" in history[0]["reason"]

    # A replay of the whole log awards nothing twice.
    await replay(kernel.db, "loyalty.engine", 0)
    await drain(kernel)
    assert (await summary(kernel, cid))["pending"] == 123

    kernel.clock.advance(timedelta(days=15))  # type: ignore[attr-defined]
    assert (await kernel.service(LoyaltyService).run_due())["released"] >= 1
    s = await summary(kernel, cid)
    assert (s["balance"], s["pending"]) == (123, 0)


async def test_refund_claws_back_the_refunded_share(kernel: Kernel) -> None:
    await setup_programme(kernel)
    cid = new_id()
    oid = await order(kernel, cid, 20_000, ["shoes", "bags"])
    await drain(kernel)
    assert (await summary(kernel, cid))["pending"] == 200
    refund = {"order_id": oid, "refund_id": new_id(), "amount_minor": 5_000,
              "currency": "EUR", "method": "original"}
    await emit(kernel, cid, "commerce.refund_issued", refund)
    await emit(kernel, cid, "commerce.refund_issued", refund)  # duplicate delivery
    await drain(kernel)
    assert (await summary(kernel, cid))["pending"] == 150
    await emit(kernel, cid, "commerce.refund_issued", {**refund, "refund_id": new_id(),
                                                      "amount_minor": 15_000})
    await drain(kernel)
    s = await summary(kernel, cid)
    assert (s["pending"], s["balance"]) == (0, 0)
    kinds = [h["kind"] for h in await kernel.service(LoyaltyService).history(cid)]
    assert kinds.count("reverse") == 2 and kinds.count("award") == 1


async def test_caps_channels_and_daily_quest(kernel: Kernel) -> None:
    await setup_programme(kernel)
    cid = new_id()
    for _ in range(4):
        await emit(kernel, cid, "interaction.recorded", {"kind": "product_reviewed",
                                                         "sku": "S1", "channel": "web"})
    await emit(kernel, cid, "ingest.track", {"event": "Store Visited", "properties": {}},
               source="web")  # wrong channel: nothing
    await emit(kernel, cid, "interaction.recorded", {"kind": "order_completed",
                                                     "revenue_minor": 99_000})  # not a purchase
    for _ in range(4):
        await emit(kernel, cid, "ingest.track", {"event": "Store Visited",
                                                 "channel": "store"})
    await drain(kernel)
    s = await summary(kernel, cid)
    # 3 reviews (cap 3/day) x 20 + daily quest 10 + visits capped at 30/week + weekly quest 25
    assert s["balance"] == 60 + 10 + 30 + 25
    quests = {q["id"]: q for q in await kernel.service(MemberViews).quests(cid)}
    assert quests["daily_review"]["completed"] and quests["weekly_visit"]["completed"]
    kernel.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]
    quests = {q["id"]: q for q in await kernel.service(MemberViews).quests(cid)}
    assert not quests["daily_review"]["completed"]  # a new round to play


async def test_tier_upgrade_is_immediate_and_multiplies(kernel: Kernel) -> None:
    await setup_programme(kernel)
    cid = new_id()
    await order(kernel, cid, 150_000, ["tv"])
    await drain(kernel)
    s = await summary(kernel, cid)
    assert s["tier"] == "gold" and s["benefits"]["free_shipping"]
    await order(kernel, cid, 10_000, ["tv"])
    await drain(kernel)
    assert (await summary(kernel, cid))["pending"] == 1500 + 150  # 100 x 1.5


async def test_three_categories_quest_and_season_xp(kernel: Kernel) -> None:
    await setup_programme(kernel)
    cid = new_id()
    await order(kernel, cid, 1_000, ["shoes", "bags"])
    await order(kernel, cid, 1_000, ["bags", "hats"])
    await drain(kernel)
    ov = await kernel.service(MemberViews).overview(cid)
    assert ov["badges"] == ["explorer"]
    assert ov["balance"] == 150  # quest reward is available at once
    assert ov["season"]["xp"] == 10 + 10 + 50 and ov["season"]["level"] == 0


async def test_welcome_once_per_identity(kernel: Kernel) -> None:
    await setup_programme(kernel)
    cid = await kernel.service(ProfileService).ensure_customer({"email": "ana@example.com"},
                                                               "web")
    await emit(kernel, cid, "consent.changed", {
        "purpose": "marketing_email", "granted": True, "method": "form", "channel": "web",
        "text_version": "1", "actor": "customer"})
    await drain(kernel)
    s = await summary(kernel, cid)
    assert s["balance"] == 50 and s["member"]


async def test_anonymous_visitor_is_welcomed_only_once_identified(kernel: Kernel) -> None:
    from kunde.features import all_features
    from kunde.ingest.models import normalise
    from kunde.ingest.service import IngestService
    from kunde.runtime import consumers_of
    from kunde.store.consumers import ConsumerRunner

    await setup_programme(kernel)
    profiles = kernel.service(ProfileService)
    runner = ConsumerRunner(kernel.db, kernel.log, consumers_of(kernel, all_features()),
                            lambda: frozenset(range(kernel.settings.partitions)))

    async def send(message: dict[str, Any]) -> None:
        await kernel.service(IngestService).accept("src-test", "web", [normalise(
            {"messageId": new_id(), **message}, index=None, kind=None,
            received_at=kernel.clock.now(), batch_sent_at=None, channel="web",
            check_size=False)])
        await runner.drain()

    await send({"type": "page", "anonymousId": "visitor-1", "name": "Home"})
    visitor = await profiles.resolve("anonymous_id", "visitor-1")
    assert visitor and (await summary(kernel, visitor))["balance"] == 0  # not a member yet
    for _ in range(2):
        await send({"type": "identify", "anonymousId": "visitor-1", "userId": "member-1",
                    "traits": {"email": "member1@example.com"}})
    person = await profiles.canonical_id(visitor)
    assert person == await profiles.resolve("user_id", "member-1")
    assert (await summary(kernel, person))["balance"] == 50  # joined: welcomed once


async def test_goodwill_from_fulfilment_event(kernel: Kernel) -> None:
    await setup_programme(kernel)
    cid = new_id()
    payload = {"customer_id": cid, "points": 40, "reason": "parcel late", "cause_id": "d-1"}
    await emit(kernel, cid, "fulfilment.goodwill_granted", payload)
    await emit(kernel, cid, "fulfilment.goodwill_granted", payload)
    await drain(kernel)
    assert (await summary(kernel, cid))["balance"] == 40


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("earn_rules:\n  - id: a\n    event: commerce.order_paid\n    points: lots\n", 4,
     "$.earn_rules[0].points"),
    ("quests:\n  - id: q\n    name: Q\n    steps:\n      - event: app.opened\n", 5,
     "unknown event 'app.opened'"),
    ("tiers:\n  - {id: a, name: A}\n  - {id: b, name: B, colour: red}\n", 3, "colour"),
    ("points_name: [unclosed\n", 2, "not valid YAML"),
])
async def test_malformed_programme_names_line_and_field(
        client: Any, admin_headers: dict[str, str], text: str, line: int, needle: str) -> None:
    r = await client.put("/v1/loyalty/programme", content=text,
                         headers={**admin_headers, "Content-Type": "application/yaml"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "loyalty.invalid_programme"
    assert needle in r.text and body["problems"][0]["line"] == line
    r = await client.get("/v1/loyalty/programme", headers=admin_headers)
    assert r.json()["version"] == 0  # nothing changed


async def test_dry_run_diff_then_apply_and_simulate(
        client: Any, admin_headers: dict[str, str], kernel: Kernel) -> None:
    kernel.clock = FrozenClock(NOW)
    h = {**admin_headers, "Content-Type": "application/yaml"}
    r = await client.put("/v1/loyalty/programme?dry_run=true", content=EXAMPLE.read_text(),
                         headers=h)
    assert r.status_code == 200 and not r.json()["applied"]
    assert "+ earn_rules.purchase" in r.json()["changes"]
    r = await client.put("/v1/loyalty/programme", content=EXAMPLE.read_text(), headers=h)
    assert r.json() == {**r.json(), "version": 1, "applied": True}
    changed = EXAMPLE.read_text().replace("points: 20\n", "points: 25\n")
    r = await client.put("/v1/loyalty/programme?dry_run=true", content=changed, headers=h)
    assert r.json()["changes"] == ["~ earn_rules.review: points 20 -> 25"]
    r = await client.post("/v1/loyalty/simulate", headers=admin_headers, json={
        "type": "commerce.order_paid", "tier": "silver",
        "payload": {"order_id": "o1", "amount_minor": 4_000, "currency": "EUR"}})
    assert r.status_code == 200, r.text
    sim = r.json()
    assert sim["total"] == 50 and sim["earns"][0]["rule"] == "purchase"
    assert "x 1.25 for tier silver" in sim["earns"][0]["reasons"]


async def test_downgrade_waits_for_review_and_grace(kernel: Kernel) -> None:
    from kunde.loyalty.service_tiers import TierReviews

    await setup_programme(kernel)
    cid = new_id()
    await order(kernel, cid, 60_000, ["tv"])  # 600 points: silver at once
    await drain(kernel)
    assert (await summary(kernel, cid))["tier"] == "silver"
    reviews = kernel.service(TierReviews)
    kernel.clock.advance(timedelta(days=380))  # type: ignore[attr-defined]
    assert await reviews.run_due() == 0  # review date passed, grace not yet
    assert (await summary(kernel, cid))["tier"] == "silver"
    kernel.clock.advance(timedelta(days=20))  # type: ignore[attr-defined]
    assert await reviews.run_due() == 1
    assert (await summary(kernel, cid))["tier"] == "bronze"


async def test_unknown_operator_is_refused() -> None:
    from kunde.loyalty.errors import InvalidProgramme

    with pytest.raises(InvalidProgramme, match="unknown operator 'greater'"):
        parse_programme("earn_rules:\n  - id: a\n    event: ingest.track\n    points: 1\n"
                        "    where: {properties.value: {greater: 3}}\n")
