"""Personalisation end to end on a real database: events in, models trained and swapped,
recommendations, offers, experiments and flags over HTTP, privacy hooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from kunde.app import create_app
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.personalisation.errors import TrainingFailed
from kunde.personalisation.feature import FEATURE
from kunde.personalisation.handlers import consumers
from kunde.personalisation.models.offers import Offer
from kunde.personalisation.models.train import TrainConfig
from kunde.personalisation.service import RecommendationService
from kunde.personalisation.service_experiments import ExperimentService
from kunde.personalisation.service_offers import OfferService
from kunde.personalisation.service_scores import ScoresService
from kunde.profiles.service_consent import ConsentService
from kunde.store.consumers import ConsumerRunner

SMALL = TrainConfig(neighbours=10, ease_items=50, ease_l2=1.0)
Client = httpx.AsyncClient


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[httpx.AsyncClient]:
    """The app in the test's own event loop (the kernel's PostgreSQL connections belong to
    it), with the kernel the lifespan would have attached."""
    from kunde.web.feature import FEATURE as web

    app = create_app(kernel=kernel, features=[web, FEATURE])
    app.state.kernel = kernel
    app.state.background = None
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as c:
        yield c


async def drain(kernel: Kernel) -> None:
    parts = frozenset(range(kernel.settings.partitions))
    await ConsumerRunner(kernel.db, kernel.log, consumers(kernel), lambda: parts).drain()


def order(customer: str, order_id: str, skus: list[str], days_ago: float, kernel: Kernel,
          *, external: bool = False) -> Event:
    lines = [{"line_id": f"{order_id}-{i}", "sku": s, "product_id": s, "title": s,
              "category": s.split("-")[0], "quantity": 1, "unit_price_minor": 1000,
              "total_minor": 1000} for i, s in enumerate(skus)]
    return Event.new("commerce.order_placed", {
        "order_id": order_id, "number": order_id, "customer_id": customer, "channel": "web",
        "currency": "EUR", "external": external, "lines": lines, "subtotal_minor": 0,
        "discount_minor": 0, "shipping_minor": 0, "total_minor": 1000 * len(skus),
        "shipping_method": "standard"}, subject_id=customer, source="web",
        occurred_at=kernel.clock.now() - timedelta(days=days_ago))


def interaction(customer: str, kind: str, sku: str | None = None, **extra: Any) -> Event:
    return Event.new("interaction.recorded", {"kind": kind, "sku": sku,
                                              "category": (sku or "x").split("-")[0],
                                              "channel": "web", **extra},
                     subject_id=customer, source="web")


async def emit(kernel: Kernel, events: list[Event]) -> None:
    async with kernel.db.transaction() as uow:
        for e in events:
            uow.emit(e)
    await drain(kernel)


async def shop(kernel: Kernel) -> dict[str, str]:
    """Six shoppers: coffee people buy coffee with mugs, tea people tea with pots."""
    ids = {name: new_id() for name in ("ann", "bob", "cat", "dan", "eve", "fay")}
    events = []
    for n, (name, cid) in enumerate(ids.items()):
        basket = ["COF-ESP", "MUG-RED"] if n % 2 == 0 else ["TEA-GRN", "POT-BLU"]
        events.append(order(cid, f"o-{name}", basket, 20 + n, kernel))
    events.append(order(ids["fay"], "o-secret", ["BOOK-RARE"], 3, kernel, external=True))
    await emit(kernel, events)
    consent = kernel.service(ConsentService)
    for cid in ids.values():
        await consent.grant(cid, "personalisation")
    return ids


async def test_interaction_store_is_idempotent_and_skips_order_completed(kernel: Kernel
                                                                         ) -> None:
    cid = new_id()
    e = order(cid, "o1", ["A-1", "B-1"], 1, kernel)
    await emit(kernel, [e, interaction(cid, "product_viewed", "C-1"),
                        interaction(cid, "order_completed", "A-1", order_id="o1"),
                        interaction(cid, "products_searched", query="red mug")])
    svc = kernel.service(RecommendationService)
    data, _ = await svc.training_data()
    assert sorted(data.kind.tolist()) == [0, 2, 2]  # one view, two purchased lines
    async with kernel.db.transaction() as uow:  # the same event delivered again
        from kunde.personalisation.handlers import record
        await record(uow, [e], set())
    assert (await svc.training_data())[0].user.size == 3


async def test_a_merge_moves_interactions_to_the_survivor_once(kernel: Kernel) -> None:
    from kunde.personalisation.handlers import record
    from kunde.personalisation.tables import interactions, searches

    survivor, merged = new_id(), new_id()

    async def owners(table: Any) -> list[str]:
        async with kernel.db.read() as conn:
            rows = await conn.execute(sa.select(table.c.customer_id))
            return sorted(r[0] for r in rows if r[0] in (survivor, merged))

    bought = order(merged, "o-m", ["A-1", "B-1"], 2, kernel)
    await emit(kernel, [bought, order(survivor, "o-s", ["C-1"], 1, kernel),
                        interaction(merged, "products_searched", query="blue pot")])
    merge = Event.new("profiles.customers_merged", {"survivor_id": survivor,
                                                    "merged_id": merged},
                      subject_id=survivor, source="profiles")
    await emit(kernel, [merge])
    assert await owners(interactions) == [survivor] * 3
    # Replayed in one batch: the order lands on the merged id again, the merge moves it
    # once more, and the survivor keeps one row per line.
    async with kernel.db.transaction() as uow:
        await record(uow, [bought, merge], set())

    assert await owners(interactions) == [survivor] * 3
    assert await owners(searches) == [survivor]


async def test_training_on_too_little_data_fails_clearly(kernel: Kernel) -> None:
    with pytest.raises(TrainingFailed, match="not enough interactions"):
        await kernel.service(RecommendationService).train(config=SMALL)


async def test_recommendations_over_http_with_reasons_and_consent(
        kernel: Kernel, client: Client, admin_headers: dict[str, str]) -> None:
    ids = await shop(kernel)
    svc = kernel.service(RecommendationService)
    summary = await svc.train(config=SMALL)
    assert svc.status()["status"] == "trained" and svc.status()["version"] == summary["version"]

    r = await client.get("/v1/recommendations", params={"context": "product:COF-ESP",
                                                         "limit": 3}, headers=admin_headers)
    assert r.status_code == 200, r.text
    first = r.json()["items"][0]
    assert first["sku"] == "MUG-RED" and first["reason"] == "also_bought"

    r = await client.get("/v1/recommendations", params={
        "customer": ids["ann"], "context": "cart", "cart": "TEA-GRN"}, headers=admin_headers)
    assert r.json()["items"][0]["reason"] == "bought_together"

    # A new view shows up in session-based results at once (no retraining).
    await emit(kernel, [interaction(ids["ann"], "product_viewed", "TEA-GRN")])
    r = await client.get("/v1/recommendations", params={"customer": ids["ann"],
                                                         "context": "home"},
                         headers=admin_headers)
    body = r.json()
    assert body["personal"] is True
    assert body["items"][0] == {**body["items"][0], "sku": "POT-BLU",
                                "reason": "because_you_viewed"}
    assert "COF-ESP" not in [i["sku"] for i in body["items"]]  # already bought

    await kernel.service(ConsentService).withdraw(ids["ann"], "personalisation")
    svc.forget([ids["ann"]])
    r = await client.get("/v1/recommendations", params={"customer": ids["ann"]},
                         headers=admin_headers)
    assert r.json()["personal"] is False
    assert {i["reason"] for i in r.json()["items"]} == {"popular"}

    unknown = await client.get("/v1/recommendations", params={
        "customer": new_id(), "context": "product:NOPE"}, headers=admin_headers)
    assert unknown.status_code == 200 and unknown.json()["items"]
    bad = await client.get("/v1/recommendations", params={"context": "basket"},
                           headers=admin_headers)
    assert bad.status_code == 422 and bad.json()["code"] == "personalisation.bad_context"


async def test_no_personal_recommendation_leaks_another_customers_history(
        kernel: Kernel, client: Client) -> None:
    ids = await shop(kernel)
    await kernel.service(RecommendationService).train(config=SMALL)
    for name, cid in ids.items():
        if name == "fay":
            continue
        token = kernel.access.issue_customer_token(cid)
        headers = {"Authorization": f"Bearer {token}"}
        for context in ("home", "cart", "product:TEA-GRN"):
            r = await client.get("/v1/recommendations", params={
                "customer": cid, "context": context, "limit": 20}, headers=headers)
            assert r.status_code == 200
            for item in r.json()["items"]:
                # fay's one-off purchase may be popular, but is never a reason for others.
                assert "BOOK-RARE" not in item["detail"]
                if item["reason"].startswith("because_you"):
                    assert item["detail"].split()[-1] in {"COF-ESP", "MUG-RED", "TEA-GRN",
                                                          "POT-BLU"}
        # A customer token cannot read someone else's recommendations.
        other = await client.get("/v1/recommendations", params={"customer": ids["fay"]},
                                 headers=headers)
        assert other.status_code == 403


async def test_corrupt_model_keeps_serving_and_health_says_so(kernel: Kernel,
                                                              client: Client) -> None:
    await shop(kernel)
    svc = kernel.service(RecommendationService)
    first = (await svc.train(config=SMALL))["version"]
    second = (await svc.train(config=SMALL))["version"]
    (svc.store.root / second / "ease_weights.npy").write_bytes(b"garbage")
    svc.models = None
    status = await svc.reload()
    assert status["status"] == "previous" and status["version"] == first
    assert "checksum" in status["problem"]
    health = (await client.get("/health/personalisation")).json()
    assert health["status"] == "degraded" and health["model"]["version"] == first
    # Nothing usable at all: popularity from the database, still answering.
    for v in svc.store.versions():
        (svc.store.root / v / "manifest.json").unlink()
    svc.models = None
    assert (await svc.reload())["status"] == "popularity"
    r = await svc.recommend(None, "home", 3)
    assert r["items"] and r["model_status"] == "popularity"


async def test_scores_offers_experiments_flags(kernel: Kernel, client: Client,
                                               admin_headers: dict[str, str]) -> None:
    ids = await shop(kernel)
    scores = kernel.service(ScoresService)
    assert await scores.refresh() == "skipped: BG/NBD needs at least 10 customers and some " \
        "repeat purchases"
    offers = kernel.service(OfferService)
    await offers.configure(Offer("ship", "voucher", "Free shipping", 2000, 400, 0.3,
                                 needs_consent="marketing_email"))
    await offers.configure(Offer("guide", "content", "Brew guide", 600, 10, 0.1))
    r = await client.get(f"/v1/customers/{ids['ann']}/next-best-offers",
                         params={"channel": "email"}, headers=admin_headers)
    body = r.json()
    assert [o["id"] for o in body["offers"]] == ["guide"]
    ship = next(d for d in body["considered"] if d["offer_id"] == "ship")
    assert "no marketing_email consent" in ship["reasons"]
    for _ in range(3):
        await offers.next_best_offers(ids["ann"], "email")
    tired = await offers.next_best_offers(ids["ann"], "email")
    assert tired["offers"] == [] and "fatigue cap" in tired["considered"][0]["reasons"][-1]

    r = await client.post("/v1/experiments", json={"key": "layout", "name": "Layout",
                                                   "variants": [["a", 1], ["b", 1]]},
                          headers=admin_headers)
    assert r.status_code == 201
    variants = {}
    for cid in ids.values():
        r = await client.post(f"/v1/experiments/layout/exposures/{cid}", headers=admin_headers)
        variants[cid] = r.json()["variant"]
        again = await client.post(f"/v1/experiments/layout/exposures/{cid}",
                                  headers=admin_headers)
        assert again.json()["variant"] == variants[cid]
    await emit(kernel, [order(ids["ann"], "o-after", ["MUG-RED"], 0, kernel)])
    res = (await client.get("/v1/experiments/layout/results", headers=admin_headers)).json()
    by = {v["variant"]: v for v in res["variants"]}
    assert sum(v["customers"] for v in by.values()) == 6
    assert by[variants[ids["ann"]]]["conversions"] == 1
    assert by[variants[ids["ann"]]]["revenue_per_customer"] > 0

    exp = kernel.service(ExperimentService)
    await exp.set_flag("beta-x", enabled=True, beta=True, tiers=["gold"])
    token = kernel.access.issue_customer_token(ids["bob"])
    cust = {"Authorization": f"Bearer {token}"}
    r = await client.get("/v1/flags", params={"customer": ids["bob"]}, headers=cust)
    assert r.json() == {"beta-x": False} and "max-age" in r.headers["cache-control"]
    cached = await client.get("/v1/flags", params={"customer": ids["bob"]},
                              headers={**cust, "If-None-Match": r.headers["etag"]})
    assert cached.status_code == 304
    assert (await client.post(f"/v1/customers/{ids['bob']}/beta/beta-x",
                              headers=cust)).status_code == 200
    r = await client.get("/v1/flags", params={"customer": ids["bob"]}, headers=cust)
    assert r.json() == {"beta-x": True}


async def test_export_and_erase(kernel: Kernel) -> None:
    ids = await shop(kernel)
    svc = kernel.service(RecommendationService)
    await svc.train(config=SMALL)
    fay = ids["fay"]
    before = await svc.recommend(fay, "home", 5)
    assert before["personal"]
    assert FEATURE.export and FEATURE.erase
    exported = await FEATURE.export(kernel, [fay])
    assert {i["sku"] for i in exported["interactions"]} == {"TEA-GRN", "POT-BLU", "BOOK-RARE"}
    async with kernel.db.transaction() as uow:
        counts = await FEATURE.erase(kernel, uow, [fay])
    assert counts["interactions"] == 3
    assert not any(k[0] == fay for k in svc._cache)  # cached recommendations dropped
    data, _ = await svc.training_data()
    assert fay not in data.users.tolist()
    # A replayed event about the erased customer is not stored again.
    await emit(kernel, [order(fay, "o-late", ["X-1"], 0, kernel)])
    assert fay not in (await svc.training_data())[0].users.tolist()
    assert (await FEATURE.export(kernel, [fay]))["interactions"] == []


async def test_scores_are_written_back_as_profile_traits(kernel: Kernel,
                                                         admin_headers: dict[str, str],
                                                         client: Client) -> None:
    from kunde.profiles.service import ProfileService

    profiles = kernel.service(ProfileService)
    ids = [await profiles.ensure_customer({"email": f"c{n}@shop.example"}, "web")
           for n in range(16)]
    events = []
    for n, cid in enumerate(ids):
        for k in range(n % 4 + 1):  # 1 to 4 orders, spread over the last 40 weeks
            events.append(order(cid, f"o{n}-{k}", ["A-1"], 280 - 60 * k - n * 3, kernel))
    await emit(kernel, events)
    result = await kernel.service(ScoresService).refresh()
    assert result == "scored 16 customers"
    s = await kernel.service(ScoresService).scores(ids[3])
    assert s is not None and s["clv"] >= 0 and 0 <= s["p_alive"] <= 1
    assert s["churn_risk"] in {"low", "medium", "high"}
    profile = await kernel.service(ProfileService).get_profile(ids[3])
    assert profile["traits"]["churn_risk"] == s["churn_risk"]
    assert profile["traits"]["clv"] == s["clv"]
    r = await client.get(f"/v1/customers/{ids[3]}/scores", headers=admin_headers)
    assert r.json()["churn_risk"] == s["churn_risk"]


async def test_experiment_without_usable_variants_is_refused(
        client: Any, admin_headers: dict[str, str]) -> None:
    for variants in ([], [["a", 0.0]], [["a", 1.0], ["a", 1.0]], [["a", -1.0], ["b", 2.0]]):
        r = await client.post("/v1/experiments", headers=admin_headers,
                              json={"key": "x", "name": "", "variants": variants})
        assert r.status_code == 422, (variants, r.text)
        assert r.json()["code"] == "experiments.invalid_variants"
