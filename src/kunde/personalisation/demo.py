"""Demo data: shoppers with views, carts and orders, offers, an experiment and flags.

Idempotent: rows have derived ids and are inserted with ON CONFLICT DO NOTHING, and the
model is trained only when none exists yet.
"""

from __future__ import annotations

import contextlib
import random
from datetime import timedelta

from kunde.core.ids import derived_id
from kunde.kernel import Kernel
from kunde.personalisation.models.offers import Offer
from kunde.personalisation.tables import consents, interactions, items, segment_members
from kunde.store.sql import insert_ignore

CATALOGUE = {
    "coffee": ["COF-ESP", "COF-FLT", "COF-DEC", "MUG-01", "GRD-01"],
    "tea": ["TEA-GRN", "TEA-BLK", "TEA-MNT", "POT-01"],
    "bakery": ["BRD-SDO", "CRS-01", "BAG-01", "JAM-STR"],
    "outdoor": ["TNT-2P", "BAG-SLP", "LMP-HD", "BTL-01", "STV-01"],
}
DEMO_CUSTOMERS = 40


async def demo_customers(kernel: Kernel) -> list[str]:
    """Demo shoppers as real profiles when the profiles feature is there (ids otherwise)."""
    try:
        from kunde.profiles.service import ProfileService
    except ImportError:
        return [derived_id("demo-customer", str(n)) for n in range(DEMO_CUSTOMERS)]
    profiles = kernel.service(ProfileService)
    return [await profiles.ensure_customer({"email": f"shopper{n}@kunde.demo"}, "web")
            for n in range(DEMO_CUSTOMERS)]


async def _grant(kernel: Kernel, customer_ids: list[str]) -> None:
    try:
        from kunde.profiles.service_consent import ConsentService
    except ImportError:
        return
    consent = kernel.service(ConsentService)
    for n, cid in enumerate(customer_ids):
        # Every tenth shopper has not consented: they get non-personal results.
        if n % 10 != 9 and not await consent.is_allowed(cid, "personalisation"):
            await consent.grant(cid, "personalisation", method="demo")


async def load(kernel: Kernel) -> None:
    rng = random.Random(6)
    now = kernel.clock.now()
    rows, members, consent_rows = [], [], []
    themes = list(CATALOGUE)
    customers = await demo_customers(kernel)
    await _grant(kernel, customers)
    for n, cid in enumerate(customers):
        theme = themes[n % len(themes)]
        members.append({"customer_id": cid, "segment": f"{theme} lovers"})
        consent_rows.append({"customer_id": cid, "purpose": "personalisation",
                             "granted": n % 10 != 9, "updated_at": now})
        for o in range(rng.randint(1, 5)):
            when = now - timedelta(days=rng.randint(1, 300), hours=o)
            picks = [*rng.sample(CATALOGUE[theme], 2), rng.choice(CATALOGUE[rng.choice(themes)])]
            for k, sku in enumerate(dict.fromkeys(picks)):
                rows.append({"id": derived_id("demo-line", cid, str(o), str(k)),
                             "customer_id": cid, "sku": sku, "kind": "purchase",
                             "category": _category(sku), "basket": f"demo-{n}-{o}",
                             "quantity": 1, "value_minor": rng.randint(400, 9000),
                             "currency": "EUR", "occurred_at": when})
        for v in range(rng.randint(2, 6)):
            sku = rng.choice(CATALOGUE[theme])
            rows.append({"id": derived_id("demo-view", cid, str(v)), "customer_id": cid,
                         "sku": sku, "kind": "view", "category": _category(sku), "basket": "",
                         "quantity": 1, "value_minor": 0, "currency": "",
                         "occurred_at": now - timedelta(days=rng.randint(0, 30))})
    async with kernel.db.transaction() as uow:
        await uow.execute(insert_ignore(uow.dialect, interactions), rows)
        await uow.execute(insert_ignore(uow.dialect, segment_members), members)
        await uow.execute(insert_ignore(uow.dialect, consents), consent_rows)
        await uow.execute(insert_ignore(uow.dialect, items), [
            {"sku": s, "category": c, "title": s.title()} for c, ss in CATALOGUE.items()
            for s in ss])
    await _configure(kernel, customers)


def _category(sku: str) -> str:
    return next(c for c, ss in CATALOGUE.items() if sku in ss)


async def _configure(kernel: Kernel, customers: list[str]) -> None:
    from kunde.personalisation.errors import TrainingFailed
    from kunde.personalisation.service import RecommendationService
    from kunde.personalisation.service_experiments import ExperimentService
    from kunde.personalisation.service_offers import OfferService
    from kunde.personalisation.service_scores import ScoresService

    offers = kernel.service(OfferService)
    for offer in (
        Offer("double-points-weekend", "reward", "Double points this weekend", 1500, 300, 0.2),
        Offer("free-shipping", "voucher", "Free shipping on your next order", 2500, 495, 0.25,
              needs_consent="marketing_email"),
        Offer("brew-guide", "content", "Our guide to better filter coffee", 600, 10, 0.1,
              segments=frozenset({"coffee lovers"})),
        Offer("gold-lounge", "reward", "Early access to the winter collection", 4000, 800, 0.15,
              min_tier="gold"),
    ):
        await offers.configure(offer)
    exp = kernel.service(ExperimentService)
    await exp.create("home-reco-layout", "Home page recommendations: grid vs carousel",
                     [("grid", 1.0), ("carousel", 1.0)])
    for cid in customers:
        await exp.expose("home-reco-layout", cid)
    await exp.set_flag("new-checkout", enabled=True, rollout_percent=20, beta=True,
                       tiers=["gold", "platinum"], description="The one-page checkout")
    await exp.set_flag("dark-mode", enabled=True, rollout_percent=100)
    recs = kernel.service(RecommendationService)
    if recs.store.current() is None:
        with contextlib.suppress(TrainingFailed):
            await recs.train()
    await kernel.service(ScoresService).refresh()
