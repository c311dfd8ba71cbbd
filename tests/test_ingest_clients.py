"""Real Segment and RudderStack client libraries deliver into a running Kunde."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import rudderstack.analytics as rudder
import segment.analytics as segment
import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.profiles.service import ProfileService
from kunde.store.tables import events

pytestmark = pytest.mark.slow


async def stored(kernel: Kernel) -> dict[str, int]:
    async with kernel.db.read() as conn:
        rows = await conn.execute(sa.select(events.c.type, sa.func.count())
                                  .group_by(events.c.type))
        return {t: int(n) for t, n in rows}


async def wait_for(check: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


def send(client: Any, prefix: str) -> None:
    client.page(anonymous_id=f"{prefix}-anon", name="Home", properties={"path": "/"})
    client.track(anonymous_id=f"{prefix}-anon", event="Product Viewed",
                 properties={"sku": "SKU-1", "price": 12.5, "currency": "EUR"})
    client.identify(user_id=f"{prefix}-user", anonymous_id=f"{prefix}-anon",
                    traits={"email": f"{prefix}@example.com", "first_name": "Ana"})
    client.track(user_id=f"{prefix}-user", event="Order Completed",
                 properties={"order_id": f"{prefix}-o1", "total": 25.0, "products": [
                     {"sku": "SKU-1", "price": 12.5, "quantity": 2}]})
    for _ in range(2):  # a retried message (same messageId) is stored once
        client.track(user_id=f"{prefix}-user", event="Coupon Applied",
                     properties={"coupon": "WELCOME"}, message_id=f"{prefix}-retried")
    client.flush()


@pytest.mark.parametrize("library", ["segment", "rudder"])
async def test_real_client_library_delivers(live_server: Any, kernel: Kernel,
                                            library: str) -> None:
    _, write_key = await kernel.access.create_source(f"{library}-source", "web")
    errors: list[Any] = []
    if library == "segment":
        client: Any = segment.Client(write_key, host=live_server.url, sync_mode=True, gzip=True,
                                     on_error=lambda e, batch: errors.append(e), max_retries=1)
    else:
        client = rudder.Client(write_key, host=live_server.url, sync_mode=True, gzip=True,
                               on_error=lambda e, batch: errors.append(e), max_retries=1)
    await asyncio.to_thread(send, client, library)
    assert errors == []
    counts = await stored(kernel)
    assert counts.get("ingest.page") == 1 and counts.get("ingest.track") == 3
    assert counts.get("ingest.identify") == 1 and counts.get("interaction.recorded") == 3
    # The server's projector stitches the anonymous history to the user.
    profiles = kernel.service(ProfileService)

    async def stitched() -> bool:
        anon = await profiles.resolve("anonymous_id", f"{library}-anon")
        user = await profiles.resolve("user_id", f"{library}-user")
        email = await profiles.resolve("email", f"{library}@example.com")
        return anon is not None and anon == user == email

    assert await wait_for(stitched)

    async def projected() -> dict[str, Any] | None:
        # Stitching can finish before the projector has counted the last event.
        cid = await profiles.resolve("email", f"{library}@example.com") or ""
        profile = await profiles.get_profile(cid)
        return profile if profile["computed"]["events_count"] == 5 else None

    profile = await wait_for(projected)
    assert profile is not None and profile["first_name"] == "Ana"
