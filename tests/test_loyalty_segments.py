"""Reward eligibility by segment, with the segments of the Customer 360 (profiles)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.loyalty.models import Reward
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_programme import ProgrammeService
from kunde.loyalty.tables import redemptions, reward_stock, transactions
from kunde.profiles.service import ProfileService
from kunde.profiles.service_segments import SegmentService
from loyalty_helpers import loyalty_client
from test_loyalty_engine import drain, setup_programme, summary

VIP_RULE = {"all": [{"field": "trait.vip", "op": "eq", "value": True}]}


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[Any]:
    async for c in loyalty_client(kernel):
        yield c


async def add_rewards(kernel: Kernel, *rewards: Reward) -> None:
    svc = kernel.service(ProgrammeService)
    prog, _ = await svc.current()
    fields = {f: getattr(prog, f) for f in prog.__struct_fields__}
    await svc.apply(type(prog)(**{**fields, "rewards": [*prog.rewards, *rewards]}),
                    actor="test")


async def state(kernel: Kernel, cid: str) -> tuple[Any, ...]:
    async with kernel.db.read() as conn:
        stock = (await conn.execute(sa.select(reward_stock.c.available, reward_stock.c.redeemed)
                                    .where(reward_stock.c.reward_id == "lounge"))).first()
        n_red = (await conn.execute(sa.select(sa.func.count()).select_from(redemptions).where(
            redemptions.c.customer_id == cid))).scalar()
        n_txn = (await conn.execute(sa.select(sa.func.count()).select_from(transactions).where(
            transactions.c.customer_id == cid))).scalar()
    s = await summary(kernel, cid)
    return s["balance"], s["tier"], tuple(stock) if stock else None, n_red, n_txn


async def test_segment_reward_for_members_of_a_profiles_segment_only(
        kernel: Kernel, client: Any) -> None:
    await setup_programme(kernel)
    profiles = kernel.service(ProfileService)
    vip = await profiles.ensure_customer({"email": "vip@example.com"}, "web",
                                         traits={"vip": True})
    other = await profiles.ensure_customer({"email": "other@example.com"}, "web",
                                           traits={"vip": False})
    segments = kernel.service(SegmentService)
    svc = kernel.service(ProgrammeService)
    prog, _ = await svc.current()
    fields = {f: getattr(prog, f) for f in prog.__struct_fields__}
    early = type(prog)(**{**fields, "rewards": [Reward(
        id="lounge", name="VIP lounge evening", kind="experience", cost=300,
        segments=["VIP"])]})
    dry = await svc.apply(early, actor="test", dry_run=True)
    assert dry["warnings"] == ["rewards.lounge.segments: no segment 'VIP' yet; "
                               "nobody is eligible"]
    segment_id = await segments.create("VIP", VIP_RULE)
    assert (await svc.apply(early, actor="test", dry_run=True))["warnings"] == []
    assert [s["name"] for s in await segments.of_customer(vip)] == ["VIP"]
    await add_rewards(
        kernel,
        Reward(id="lounge", name="VIP lounge evening", kind="experience", cost=300, stock=5,
               segments=["VIP"]),
        Reward(id="lounge_by_id", name="VIP gift", kind="donation", cost=100,
               segments=[segment_id]),
    )
    await drain(kernel)  # welcome rewards and segments.entered reach loyalty
    async with kernel.db.transaction() as uow:
        svc = kernel.service(LoyaltyService)
        await svc.grant_goodwill(uow, vip, 1000, "test", "funding-vip")
        await svc.grant_goodwill(uow, other, 1000, "test", "funding-other")

    # The catalog says who may have it and why not.
    vip_h = {"Authorization": "Bearer " + kernel.access.issue_customer_token(vip)}
    other_h = {"Authorization": "Bearer " + kernel.access.issue_customer_token(other)}
    cat = {r["id"]: r for r in (await client.get(f"/v1/loyalty/members/{vip}/rewards",
                                                 headers=vip_h)).json()}
    assert cat["lounge"]["ineligible_because"] is None
    assert cat["lounge_by_id"]["ineligible_because"] is None
    cat = {r["id"]: r for r in (await client.get(f"/v1/loyalty/members/{other}/rewards",
                                                 headers=other_h)).json()}
    assert cat["lounge"]["ineligible_because"] == "only for members of VIP"

    # Not in the segment: a clear 403, nothing changed.
    before = await state(kernel, other)
    r = await client.post(f"/v1/loyalty/members/{other}/redemptions", headers={
        **other_h, "Idempotency-Key": "o-1"}, json={"reward_id": "lounge"})
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["code"] == "loyalty.not_eligible"
    assert "only for members of VIP" in body["detail"]
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await state(kernel, other) == before

    # In the segment (by name or by id): redeemed, points and stock taken once.
    before = await state(kernel, vip)
    for key in ("v-1", "v-1"):  # a retried request is the same redemption
        r = await client.post(f"/v1/loyalty/members/{vip}/redemptions", headers={
            **vip_h, "Idempotency-Key": key}, json={"reward_id": "lounge"})
        assert r.status_code == 201, r.text
    after = await state(kernel, vip)
    assert after[0] == before[0] - 300
    assert after[2] == (4, 1) and after[3] == before[3] + 1
    r = await client.post(f"/v1/loyalty/members/{vip}/redemptions", headers=vip_h,
                          json={"reward_id": "lounge_by_id"})
    assert r.status_code == 201, r.text

    # Leaving the segment (segments.left) takes the eligibility away again.
    async with kernel.db.transaction() as uow:
        await profiles.set_traits(uow, vip, {"vip": False}, source="web",
                                  observed_at=kernel.clock.now())
        assert await segments.refresh(uow, [vip]) == 1
    await drain(kernel)
    before = await state(kernel, vip)
    r = await client.post(f"/v1/loyalty/members/{vip}/redemptions", headers=vip_h,
                          json={"reward_id": "lounge"})
    assert r.status_code == 403 and r.json()["code"] == "loyalty.not_eligible"
    assert await state(kernel, vip) == before
