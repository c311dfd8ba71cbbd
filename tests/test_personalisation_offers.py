"""Next-best-offer over loyalty rewards (tier, segment, consent, stock; loyalty's ranking goes
through the same port) and commerce's stock in recommendations and offers."""

from __future__ import annotations

import sqlalchemy as sa

from kunde.commerce.availability import unavailable
from kunde.commerce.service_catalog import CatalogService, LocationIn, ProductIn, VariantIn
from kunde.commerce.tables import stock, variants
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.loyalty.handlers import consumers as loyalty_consumers
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_programme import ProgrammeService, parse_programme
from kunde.loyalty.service_rewards import AffinityTaste, RewardService
from kunde.personalisation.handlers import consumers as p13n_consumers
from kunde.personalisation.models.offers import Offer
from kunde.personalisation.service import RecommendationService
from kunde.personalisation.service_offers import OfferService
from kunde.personalisation.tables import offer_decisions
from kunde.profiles.service_consent import ConsentService
from kunde.store.consumers import ConsumerRunner
from test_personalisation_api import SMALL, shop

PROGRAMME = """
tiers:
  - {id: bronze, name: Bronze}
  - {id: silver, name: Silver, min_points: 100000}
  - {id: gold, name: Gold, min_points: 200000}
rewards:
  - {id: five_off, name: 5 EUR voucher, kind: voucher_amount, value: 500, cost: 500}
  - {id: tote, name: Canvas tote, kind: free_product, cost: 300, stock: 1, category: bags}
  - {id: lounge, name: Gold lounge, kind: experience, cost: 400, min_tier: gold}
  - {id: vip, name: VIP voucher, kind: voucher_amount, value: 200, cost: 200, segments: [vip]}
  - {id: pricey, name: 20 EUR for 500 points, kind: voucher_amount, value: 2000, cost: 500}
"""


async def drain(kernel: Kernel) -> None:
    parts = frozenset(range(kernel.settings.partitions))
    await ConsumerRunner(kernel.db, kernel.log,
                         [*loyalty_consumers(kernel), *p13n_consumers(kernel)],
                         lambda: parts).drain()


async def member(kernel: Kernel, points: int) -> str:
    cid = new_id()
    async with kernel.db.transaction() as uow:
        await kernel.service(LoyaltyService).grant_goodwill(uow, cid, points, "test", new_id())
    return cid


async def programme(kernel: Kernel) -> None:
    await kernel.service(ProgrammeService).apply(parse_programme(PROGRAMME), actor="test")


def by_id(body: dict[str, object]) -> dict[str, list[str]]:
    return {d["offer_id"]: d["reasons"] for d in body["considered"]}  # type: ignore[attr-defined]


async def test_loyalty_rewards_are_offers_with_tier_segment_consent_and_stock(
        kernel: Kernel) -> None:
    await programme(kernel)
    cid = await member(kernel, 1000)
    nbo = kernel.service(OfferService)

    web = await nbo.next_best_offers(cid, "web", limit=5)
    assert [o["id"] for o in web["offers"]] == ["reward:five_off", "reward:tote"]
    assert web["offers"][0]["reasons"][0] == "propensity 0.20 x value 500 − cost 0 = 100"
    why = by_id(web)
    assert why["reward:lounge"] == ["needs tier Gold"]
    assert why["reward:vip"] == ["only for members of vip"]
    assert why["reward:pricey"][-1] == "expected value not positive"  # 0.2 x 500 - 1500

    # Segment membership (from segments.entered, as loyalty keeps it) opens the VIP reward.
    async with kernel.db.transaction() as uow:
        uow.emit(Event.new("segments.entered", {"segment_id": "vip"}, subject_id=cid,
                           source="segments"))
    await drain(kernel)
    web = await nbo.next_best_offers(cid, "web", limit=5)
    assert "reward:vip" in [o["id"] for o in web["offers"]]

    # Email is a marketing channel: no consent, no reward offers there.
    email = await nbo.next_best_offers(cid, "email", limit=5)
    assert email["offers"] == [] and "no marketing_email consent" in by_id(email)[
        "reward:five_off"]
    await kernel.service(ConsentService).grant(cid, "marketing_email")
    email = await nbo.next_best_offers(cid, "email", limit=5)
    assert email["offers"][0]["id"] == "reward:five_off"

    # The last tote goes to someone else: out of stock for everyone after.
    other = await member(kernel, 1000)
    await kernel.service(RewardService).redeem(other, "tote", "k1")
    web = await nbo.next_best_offers(cid, "email", limit=5)
    assert "reward out of stock" in by_id(web)["reward:tote"]
    assert "reward:tote" not in [o["id"] for o in web["offers"]]

    # The console's preview shows the same candidates without logging a decision.
    async with kernel.db.read() as conn:
        logged = (await conn.execute(sa.select(sa.func.count()).select_from(
            offer_decisions))).scalar()
    preview = await nbo.preview(cid, "email")
    assert [p["offer_id"] for p in preview if p["eligible"]] == ["reward:five_off",
                                                                 "reward:vip"]
    assert preview[0]["title"] == "5 EUR voucher" and preview[0]["kind"] == "reward"
    async with kernel.db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(
            offer_decisions))).scalar() == logged

    # Affordability lowers propensity: a member with 100 points.
    poor = await member(kernel, 100)
    low = await nbo.next_best_offers(poor, "web", limit=5)
    assert low["offers"][0]["reasons"][0].startswith("propensity 0.04 x value 500")


async def test_loyalty_personalised_extras_use_the_next_best_offer_ranking(
        kernel: Kernel) -> None:
    await programme(kernel)
    cid = await member(kernel, 1000)
    rewards = kernel.service(RewardService)
    # Without personalisation consent: the programme's own affinity taste (ties by id).
    assert [r["id"] for r in await rewards.catalog(cid)] == [
        "five_off", "lounge", "pricey", "tote", "vip"]
    prog = await kernel.service(LoyaltyService).programme()
    assert [r.id for r in AffinityTaste().rank_rewards({"balance": 1000}, list(prog.rewards))
            ] == ["five_off", "lounge", "pricey", "tote", "vip"]

    await kernel.service(ConsentService).grant(cid, "personalisation")
    # With it: next-best-offer order — eligible by expected value, then the rest by score.
    ranked = await rewards.catalog(cid)
    assert [r["id"] for r in ranked] == ["five_off", "tote", "lounge", "vip", "pricey"]
    assert ranked[2]["ineligible_because"] == "needs tier Gold"
    # Ranking for display is not a decision: nothing logged, no fatigue counted.
    nbo = await kernel.service(OfferService).next_best_offers(cid, "web", limit=5)
    assert len(nbo["offers"]) == 2


async def catalog(kernel: Kernel) -> CatalogService:
    cat = kernel.service(CatalogService)
    await cat.upsert_locations([LocationIn(code="WH", name="Warehouse")])
    await cat.upsert_products([
        ProductIn(code=sku, title=sku, category=sku.split("-")[0],
                  variants=[VariantIn(sku=sku, price_minor=1000, currency="EUR",
                                      stock={"WH": 5})])
        for sku in ("COF-ESP", "MUG-RED", "TEA-GRN", "POT-BLU")])
    return cat


async def set_stock(cat: CatalogService, sku: str, units: int, *, active: bool = True) -> None:
    await cat.upsert_products([ProductIn(code=sku, title=sku, category=sku.split("-")[0],
                                         variants=[VariantIn(sku=sku, price_minor=1000,
                                                             currency="EUR", active=active,
                                                             stock={"WH": units})])])


async def test_commerce_availability_read(kernel: Kernel) -> None:
    cat = await catalog(kernel)
    assert await unavailable(kernel, ["COF-ESP", "NOT-IN-CATALOG"]) == set()
    await set_stock(cat, "COF-ESP", 0)
    await set_stock(cat, "TEA-GRN", 3, active=False)
    await cat.upsert_products([ProductIn(code="NEW", title="No stock rows", variants=[
        VariantIn(sku="NEW-1", price_minor=100, currency="EUR")])])
    assert await unavailable(kernel) == {"COF-ESP", "TEA-GRN", "NEW-1"}
    assert await unavailable(kernel, ["COF-ESP", "MUG-RED"]) == {"COF-ESP"}
    assert await unavailable(kernel, []) == set()


async def test_out_of_stock_product_leaves_recommendations_and_offers(kernel: Kernel) -> None:
    cat = await catalog(kernel)
    ids = await shop(kernel)
    svc = kernel.service(RecommendationService)
    await svc.train(config=SMALL)
    first = await svc.recommend(None, "product:COF-ESP", 3)
    assert first["items"][0]["sku"] == "MUG-RED"
    assert "COF-ESP" not in [i["sku"] for i in first["items"]]  # not on its own page
    mine = await svc.recommend(ids["bob"], "home", 10)
    assert "MUG-RED" in [i["sku"] for i in mine["items"]]

    nbo = kernel.service(OfferService)
    await nbo.configure(Offer("mug", "voucher", "10% off the red mug", 900, 100, 0.3,
                              sku="MUG-RED"))
    assert [o["id"] for o in (await nbo.next_best_offers(ids["bob"], "web"))["offers"]
            ] == ["mug"]

    await set_stock(cat, "MUG-RED", 0)  # sold out
    svc.refresh_item_rules()
    assert "MUG-RED" not in [i["sku"] for i in
                             (await svc.recommend(None, "product:COF-ESP", 3))["items"]]
    # Cached personal responses go too when the stock picture changes.
    assert "MUG-RED" not in [i["sku"] for i in
                             (await svc.recommend(ids["bob"], "home", 10))["items"]]
    out = await nbo.next_best_offers(ids["bob"], "web")
    assert out["offers"] == [] and "MUG-RED out of stock" in by_id(out)["mug"]

    await set_stock(cat, "MUG-RED", 2)  # restocked
    svc.refresh_item_rules()
    again = await svc.recommend(None, "product:COF-ESP", 3)
    assert again["items"][0]["sku"] == "MUG-RED"


async def test_reserved_units_are_not_free(kernel: Kernel) -> None:
    await catalog(kernel)
    async with kernel.db.transaction() as uow:
        vid = (await uow.execute(sa.select(variants.c.id).where(
            variants.c.sku == "POT-BLU"))).scalar()
        await uow.execute(stock.update().where(stock.c.variant_id == vid).values(reserved=5))
    assert await unavailable(kernel, ["POT-BLU", "TEA-GRN"]) == {"POT-BLU"}


async def test_personal_inputs_are_read_once_per_visit_and_dropped_on_change(
        kernel: Kernel) -> None:
    ids = await shop(kernel)
    svc = kernel.service(RecommendationService)
    await svc.train(config=SMALL)
    calls = 0
    read = svc._personal_inputs

    async def counted(*args: object) -> tuple[object, ...]:  # (quick session, customer)
        nonlocal calls
        calls += 1
        return await read(*args)  # type: ignore[arg-type]

    svc._personal_inputs = counted  # type: ignore[method-assign,assignment]
    for context in ("home", "product:TEA-GRN", "cart"):
        assert (await svc.recommend(ids["ann"], context, 5))["personal"] is True
    assert calls == 1  # one read for the three contexts of the visit
    await kernel.service(ConsentService).withdraw(ids["ann"], "personalisation")
    svc.forget([ids["ann"]])  # what the consent.changed handler does after commit
    assert (await svc.recommend(ids["ann"], "product:MUG-RED", 5))["personal"] is False
    assert calls == 1


async def test_a_response_is_cached_no_longer_than_the_consent_it_was_built_on(
        kernel: Kernel) -> None:
    ids = await shop(kernel)
    svc = kernel.service(RecommendationService)
    await svc.train(config=SMALL)
    await svc.recommend(ids["bob"], "home", 5)
    read_at, inputs = svc._people[ids["bob"]]
    svc._people[ids["bob"]] = (read_at - 25.0, inputs)  # read 25 s ago
    await svc.recommend(ids["bob"], "product:COF-ESP", 5)
    cached = [at for key, (at, _) in svc._cache.items()
              if key[:2] == (ids["bob"], "product:COF-ESP")]
    assert cached == [read_at - 25.0]  # expires with the consent decision, 5 s from now
