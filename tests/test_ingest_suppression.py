"""Events about an erased person are refused: acknowledged with 200, never stored, and
nobody is created for them."""

from __future__ import annotations

import base64
from typing import Any

import sqlalchemy as sa

from conftest import app_client
from kunde.features import all_features
from kunde.kernel import Kernel
from kunde.privacy.erasure import ErasureService
from kunde.profiles.handlers import consumers
from kunde.profiles.service import ProfileService
from kunde.profiles.tables import customers
from kunde.store.consumers import ConsumerRunner
from kunde.store.tables import events

FEATURES = {"access", "web", "profiles", "ingest", "privacy"}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


async def drain(kernel: Kernel) -> None:
    await ConsumerRunner(kernel.db, kernel.log, consumers(kernel),
                         lambda: frozenset(range(kernel.settings.partitions))).drain()


async def counts(kernel: Kernel) -> tuple[int, int]:
    async with kernel.db.read() as conn:
        n_events = (await conn.execute(sa.select(sa.func.count()).select_from(events))
                    ).scalar_one()
        n_customers = (await conn.execute(sa.select(sa.func.count()).select_from(customers))
                       ).scalar_one()
    return int(n_events), int(n_customers)


def msg(i: str, **kw: Any) -> dict[str, Any]:
    return {"messageId": i, "timestamp": "2026-11-20T10:00:00Z", **kw}


async def test_events_about_an_erased_person_are_acknowledged_but_not_stored(
        kernel: Kernel) -> None:
    features = [f for f in all_features() if f.name in FEATURES]
    _, key = await kernel.access.create_source("webshop", "web")
    async with app_client(kernel, features=features) as client:
        r = await client.post("/v1/batch", headers=basic(key), json={"batch": [
            msg("a1", type="identify", userId="u-gone", anonymousId="anon-gone",
                traits={"email": "Gone@Example.org", "first_name": "Gone"}),
            msg("a2", type="track", userId="u-gone", event="Signed Up")]})
        assert r.status_code == 200 and r.json()["stored"] == 2, r.text
        await drain(kernel)
        profiles = kernel.service(ProfileService)
        cid = await profiles.resolve("user_id", "u-gone")
        assert cid is not None

        erasure = ErasureService(kernel, features)
        await erasure.run(await erasure.request(cid, requested_by="staff:t", channel="staff"))
        assert await profiles.resolve("user_id", "u-gone") is None
        before = await counts(kernel)

        r = await client.post("/v1/batch", headers=basic(key), json={"batch": [
            # the same user id and email again, alone and together
            msg("b1", type="identify", userId="u-gone",
                traits={"email": "gone@example.org", "first_name": "Back"}),
            msg("b2", type="track", userId="u-gone", event="Product Viewed",
                properties={"sku": "S1", "price": 10}),
            # a new anonymous id, but the erased email in the context's traits
            msg("b3", type="track", anonymousId="anon-new", event="Signed Up",
                context={"traits": {"email": "GONE@example.org"}}),
            msg("b4", type="page", anonymousId="anon-gone", name="Home"),
            msg("b5", type="alias", userId="u-new", previousId="u-gone"),
        ]})
        assert r.status_code == 200, r.text
        assert r.json() == {"success": True, "stored": 0, "duplicates": 0, "suppressed": 5}
        r = await client.post("/v1/identify", headers=basic(key), json=msg(
            "c1", userId="u-gone", traits={"email": "gone@example.org"}))
        assert r.status_code == 200 and r.json()["suppressed"] == 1, r.text
        await drain(kernel)
        assert await counts(kernel) == before
        assert await profiles.resolve("user_id", "u-gone") is None
        assert await profiles.resolve("email", "gone@example.org") is None
        assert await profiles.resolve("anonymous_id", "anon-new") is None

        # Someone else in the same batch is stored as usual.
        r = await client.post("/v1/batch", headers=basic(key), json={"batch": [
            msg("d1", type="identify", userId="u-gone", traits={"email": "x@example.org"}),
            msg("d2", type="identify", userId="u-other", traits={"email": "o@example.org"})]})
        assert r.json() == {"success": True, "stored": 1, "duplicates": 0, "suppressed": 1}
        await drain(kernel)
        assert await profiles.resolve("user_id", "u-other") is not None
        assert await profiles.resolve("user_id", "u-gone") is None
