"""Referral abuse: referring yourself earns nothing, a referred person counts once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from kunde.kernel import Kernel
from kunde.loyalty.service import LoyaltyService
from kunde.profiles.service import ProfileService
from loyalty_helpers import loyalty_client
from test_loyalty_engine import drain, emit, setup_programme, summary
from test_loyalty_merge import staff_merge


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[Any]:
    async for c in loyalty_client(kernel):
        yield c


async def refer(kernel: Kernel, referrer: str, **properties: str) -> None:
    await emit(kernel, referrer, "ingest.track", {
        "event": "Referral Completed", "properties": properties, "channel": "web"})
    await drain(kernel)


async def simulate(client: Any, headers: dict[str, str], referrer: str,
                   **properties: str) -> dict[str, Any]:
    r = await client.post("/v1/loyalty/simulate", headers=headers, json={
        "type": "ingest.track", "customer_id": referrer,
        "payload": {"event": "Referral Completed", "properties": properties}})
    assert r.status_code == 200, r.text
    earn = next(e for e in r.json()["earns"] if e["rule"] == "referral")
    return dict(earn)


async def balance(kernel: Kernel, cid: str) -> int:
    return int((await summary(kernel, cid))["balance"])


async def history_reasons(kernel: Kernel, cid: str) -> list[tuple[str, str]]:
    return [(h["kind"], h["reason"]) for h in
            await kernel.service(LoyaltyService).history(cid, 100)]


async def test_referring_your_own_identity_earns_nothing_with_a_reason(
        kernel: Kernel, client: Any, admin_headers: dict[str, str]) -> None:
    await setup_programme(kernel)
    profiles = kernel.service(ProfileService)
    ann = await profiles.ensure_customer({"user_id": "u-ann", "email": "Ann@Example.com"}, "web")
    await drain(kernel)
    start = await balance(kernel, ann)

    # Her own user id, her own email (any case), both: nothing.
    for props in ({"referred_user_id": "u-ann"}, {"referred_email": "ann@example.COM "},
                  {"referred_user_id": "u-new", "referred_email": "ann@example.com"}):
        sim = await simulate(client, admin_headers, ann, **props)
        assert sim["points"] == 0 and "self-referral" in sim["refused"], sim
        assert any(r.startswith("no points: self-referral") for r in sim["reasons"])
        await refer(kernel, ann, **props)
    assert await balance(kernel, ann) == start
    refused = [r for k, r in await history_reasons(kernel, ann) if k == "refused"]
    assert len(refused) == 3 and all("self-referral" in r for r in refused)

    # A referral that names nobody earns nothing either.
    sim = await simulate(client, admin_headers, ann)
    assert sim["points"] == 0 and "does not say who was referred" in sim["refused"]


async def test_a_second_record_of_the_referrer_is_not_a_friend(
        kernel: Kernel, client: Any, admin_headers: dict[str, str]) -> None:
    await setup_programme(kernel)
    profiles = kernel.service(ProfileService)
    ann = await profiles.ensure_customer({"user_id": "u-ann"}, "web")
    alt = await profiles.ensure_customer({"user_id": "u-ann-2"}, "app")
    await staff_merge(kernel, ann, alt)  # the graph knows both are Ann
    await drain(kernel)
    start = await balance(kernel, ann)
    sim = await simulate(client, admin_headers, ann, referred_user_id="u-ann-2")
    assert sim["points"] == 0 and "belongs to the referrer" in sim["refused"]
    await refer(kernel, ann, referred_user_id="u-ann-2")
    # Referring from the merged record's id (events recorded before the merge) too.
    await refer(kernel, alt, referred_user_id="u-ann")
    assert await balance(kernel, ann) == start


async def test_a_customer_sharing_the_referrers_email_is_not_a_friend(
        kernel: Kernel, client: Any, admin_headers: dict[str, str]) -> None:
    await setup_programme(kernel)
    profiles = kernel.service(ProfileService)
    ann = await profiles.ensure_customer({"user_id": "u-ann", "email": "ann@example.com"}, "web")
    # A separate record (not merged) whose profile carries Ann's email.
    twin = await profiles.ensure_customer({"user_id": "u-twin"}, "app",
                                          traits={"email": "ANN@example.com"})
    assert twin != await profiles.canonical_id(ann)
    await drain(kernel)
    start = await balance(kernel, ann)
    sim = await simulate(client, admin_headers, ann, referred_user_id="u-twin")
    assert sim["points"] == 0 and "shares the referrer's email" in sim["refused"]
    await refer(kernel, ann, referred_user_id="u-twin")
    assert await balance(kernel, ann) == start


async def test_a_real_friend_earns_once(
        kernel: Kernel, client: Any, admin_headers: dict[str, str]) -> None:
    await setup_programme(kernel)
    profiles = kernel.service(ProfileService)
    ann = await profiles.ensure_customer({"user_id": "u-ann", "email": "ann@example.com"}, "web")
    bob = await profiles.ensure_customer({"user_id": "u-bob", "email": "bob@example.com"}, "web")
    cy = await profiles.ensure_customer({"user_id": "u-cy"}, "web")
    await drain(kernel)
    start = await balance(kernel, ann)
    sim = await simulate(client, admin_headers, ann, referred_user_id="u-bob")
    assert sim["points"] == 250 and "refused" not in sim
    await refer(kernel, ann, referred_user_id="u-bob")
    assert await balance(kernel, ann) == start + 250
    # The same friend again — by Ann, or by someone else — counts once.
    sim = await simulate(client, admin_headers, ann, referred_email="bob@example.com")
    assert sim["points"] == 0 and sim["refused"] == "this person was already referred"
    await refer(kernel, ann, referred_email="bob@example.com")
    cy_start = await balance(kernel, cy)
    await refer(kernel, cy, referred_user_id="u-bob")
    assert await balance(kernel, ann) == start + 250
    assert await balance(kernel, cy) == cy_start
    # A friend not yet known to Kunde counts once too (by their identifier).
    await refer(kernel, ann, referred_email="dee@example.com")
    await refer(kernel, ann, referred_email="DEE@example.com")
    assert await balance(kernel, ann) == start + 500
    assert bob  # referred, not rewarded
