"""The profile projector: stitching from events, traits, activity, orders, consent, segments."""

from __future__ import annotations

from typing import Any

from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.ingest.models import normalise
from kunde.ingest.service import IngestService
from kunde.kernel import Kernel
from kunde.profiles.handlers import consumers
from kunde.profiles.service import ProfileService
from kunde.profiles.service_consent import ConsentService
from kunde.profiles.service_segments import SegmentService
from kunde.store.consumers import ConsumerRunner


async def send(kernel: Kernel, *messages: dict[str, Any], channel: str = "web") -> None:
    now = kernel.clock.now()
    normalised = [normalise({"messageId": new_id(), **m}, index=None, kind=None, received_at=now,
                            batch_sent_at=None, channel=channel, check_size=False)
                  for m in messages]
    await kernel.service(IngestService).accept("src-test", channel, normalised)


async def drain(kernel: Kernel) -> None:
    runner = ConsumerRunner(kernel.db, kernel.log, consumers(kernel),
                            lambda: frozenset(range(kernel.settings.partitions)))
    await runner.drain()


async def test_anonymous_history_joins_the_known_customer(kernel: Kernel) -> None:
    profiles = kernel.service(ProfileService)
    await send(kernel, {"type": "page", "anonymousId": "a1", "name": "Shoes",
                        "timestamp": "2026-11-01T10:00:00Z"},
               {"type": "track", "anonymousId": "a1", "event": "Product Viewed",
                "properties": {"sku": "S1"}, "timestamp": "2026-11-01T10:01:00Z"})
    anon = await profiles.resolve("anonymous_id", "a1")
    await send(kernel, {"type": "identify", "userId": "u1", "anonymousId": "a1",
                        "timestamp": "2026-11-01T10:05:00Z",
                        "traits": {"email": " Ana@Example.com", "first_name": "Ana"},
                        "context": {"consent": {"categoryPreferences": {
                            "marketing_email": True, "analytics": True, "bogus": True},
                            "text_version": "2026-10"}}})
    known = await profiles.resolve("user_id", "u1")
    assert anon and known and anon != known
    await drain(kernel)
    assert await profiles.canonical_id(anon) == await profiles.canonical_id(known)
    cid = await profiles.resolve("email", "ana@example.com")
    assert cid == await profiles.canonical_id(known)
    profile = await profiles.get_profile(cid)
    assert profile["first_name"] == "Ana"
    assert profile["computed"]["events_count"] == 3
    assert profile["computed"]["channels"] == ["web"]
    assert str(profile["computed"]["first_seen_at"]).startswith("2026-11-01 10:00")
    consent = kernel.service(ConsentService)
    assert await consent.is_allowed(cid, "marketing_email")
    assert not await consent.is_allowed(cid, "marketing_sms")
    history = await consent.history(cid)
    assert {h["text_version"] for h in history} == {"2026-10"}
    await drain(kernel)  # idempotent: nothing more happens
    assert len(await consent.history(cid)) == 2


async def test_shared_tablet_does_not_fuse_strangers(kernel: Kernel) -> None:
    profiles = kernel.service(ProfileService)
    await send(kernel, {"type": "identify", "userId": "alice", "anonymousId": "tablet"},
               channel="store")
    await drain(kernel)
    await send(kernel, {"type": "identify", "userId": "bob", "anonymousId": "tablet"},
               channel="store")
    await drain(kernel)
    alice = await profiles.resolve("user_id", "alice")
    bob = await profiles.resolve("user_id", "bob")
    assert alice and bob and alice != bob
    links = await profiles.identities(bob)
    assert [i["kind"] for i in links] == ["user_id"]


async def test_alias_merges_and_staff_can_unmerge(kernel: Kernel) -> None:
    profiles = kernel.service(ProfileService)
    await send(kernel, {"type": "track", "userId": "old-id", "event": "Signed Up"},
               {"type": "track", "userId": "new-id", "event": "Logged In"})
    await send(kernel, {"type": "alias", "userId": "new-id", "previousId": "old-id"})
    await drain(kernel)
    old, new = (await profiles.resolve("user_id", "old-id"),
                await profiles.resolve("user_id", "new-id"))
    assert old == new
    members = await profiles.member_ids(old or "")
    assert len(members) == 2
    restored = members[1]
    async with kernel.db.transaction() as uow:
        await profiles.graph.unmerge(uow, restored, actor="staff:test", reason="two people",
                                     now=kernel.clock.now())
    assert await profiles.canonical_id(restored) == restored
    assert len(await profiles.member_ids(members[0])) == 1
    # A repeated alias does not fuse what staff separated.
    await send(kernel, {"type": "alias", "userId": "new-id", "previousId": "old-id"})
    await drain(kernel)
    assert await profiles.canonical_id(restored) == restored


async def test_orders_and_segments(kernel: Kernel) -> None:
    profiles = kernel.service(ProfileService)
    segments = kernel.service(SegmentService)
    sid = await segments.create("Recent big spenders", {"all": [
        {"field": "computed.last_order_at", "op": "within_days", "value": 30},
        {"field": "computed.revenue_minor", "op": "gt", "value": 10000}]})
    cid = await profiles.ensure_customer({"email": "buyer@example.com"}, "web")
    order_id = new_id()
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("commerce.order_placed", {
            "order_id": order_id, "number": "K-1", "customer_id": cid, "channel": "store",
            "currency": "EUR", "external": False, "total_minor": 12000, "lines": [
                {"line_id": "l1", "sku": "S1", "product_id": "p1", "title": "Boot",
                 "category": "shoes", "quantity": 2, "unit_price_minor": 6000,
                 "total_minor": 12000}]}, subject_id=cid, source="store"))
    await drain(kernel)
    assert (await segments.members(sid))["items"] == []
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("commerce.order_paid", {"order_id": order_id, "amount_minor": 12000,
                                                    "currency": "EUR", "external": False},
                           subject_id=cid, source="store"))
    await drain(kernel)
    computed = (await profiles.get_profile(cid))["computed"]
    assert computed["orders"] == 1 and computed["revenue_minor"] == 12000
    assert computed["aov_minor"] == 12000 and computed["top_categories"] == ["shoes"]
    assert [m["customer_id"] for m in (await segments.members(sid))["items"]] == [cid]
    for _ in range(2):  # a redelivered refund counts once
        async with kernel.db.transaction() as uow:
            uow.emit(Event.new("commerce.refund_issued", {
                "order_id": order_id, "refund_id": "r1", "amount_minor": 5000,
                "currency": "EUR", "method": "original"}, subject_id=cid, source="store"))
    await drain(kernel)
    assert (await profiles.get_profile(cid))["computed"]["revenue_minor"] == 7000
    assert (await segments.members(sid))["items"] == []
    assert await segments.of_customer(cid) == []
