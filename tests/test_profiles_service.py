"""The profiles contract other features build on: consent, resolve, ensure, canonical, profile."""

from __future__ import annotations

import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.profiles.service import ProfileService
from kunde.profiles.service_consent import ConsentService
from kunde.profiles.tables import traits
from kunde.store.tables import events


async def test_ensure_customer_creates_once_and_resolves_normalised_email(kernel: Kernel) -> None:
    profiles = kernel.service(ProfileService)
    cid = await profiles.ensure_customer({"email": "Ana@Example.com "}, "web",
                                         traits={"first_name": "Ana", "locale": "de-DE"})
    again = await profiles.ensure_customer({"email": " ana@example.COM"}, "store")
    assert again == cid
    assert await profiles.resolve("email", "ANA@example.com") == cid
    assert await profiles.resolve("email", "bob@example.com") is None
    profile = await profiles.get_profile(cid)
    assert profile["email"] == "ana@example.COM"  # the latest write, trimmed
    assert profile["first_name"] == "Ana" and profile["locale"] == "de-DE"
    assert profile["traits"]["first_name"] == "Ana"
    async with kernel.db.read() as conn:
        blobs = [r.value_enc for r in await conn.execute(sa.select(traits))]
        created = (await conn.execute(sa.select(sa.func.count()).select_from(events).where(
            events.c.type == "profiles.customer_created"))).scalar_one()
    assert all(b"Ana" not in b for b in blobs)  # PII only sealed
    assert created == 1


async def test_ensure_customer_merges_two_known_people_by_shared_identifier(
    kernel: Kernel,
) -> None:
    profiles = kernel.service(ProfileService)
    a = await profiles.ensure_customer({"email": "a@example.com"}, "web")
    b = await profiles.ensure_customer({"loyalty_card": "LC-1"}, "store")
    assert a != b
    merged = await profiles.ensure_customer({"email": "a@example.com", "loyalty_card": "LC-1"},
                                            "store")
    assert merged == min(a, b)
    assert await profiles.canonical_id(a) == merged == await profiles.canonical_id(b)
    assert await profiles.resolve("loyalty_card", "LC-1") == merged
    assert await profiles.canonical_id("no-such-id") == "no-such-id"


async def test_two_user_ids_never_merge(kernel: Kernel) -> None:
    profiles = kernel.service(ProfileService)
    a = await profiles.ensure_customer({"user_id": "u1"}, "web")
    b = await profiles.ensure_customer({"user_id": "u2", "email": "shared@example.com"}, "web")
    # u1 presents the same email: merging would give one customer two user ids.
    c = await profiles.ensure_customer({"user_id": "u1", "email": "shared@example.com"}, "web")
    assert c == a and await profiles.canonical_id(b) == b


async def test_consent_grant_withdraw_history(kernel: Kernel) -> None:
    profiles = kernel.service(ProfileService)
    consent = kernel.service(ConsentService)
    cid = await profiles.ensure_customer({"email": "c@example.com"}, "web")
    assert not await consent.is_allowed(cid, "marketing_email")
    assert await consent.grant(cid, "marketing_email", method="checkbox", channel="web",
                               text_version="v3")
    assert await consent.is_allowed(cid, "marketing_email")
    assert not await consent.is_allowed(cid, "marketing_sms")
    assert not await consent.grant(cid, "marketing_email", method="checkbox")  # no change
    assert await consent.withdraw(cid, "marketing_email", method="email_link", channel="email")
    assert not await consent.is_allowed(cid, "marketing_email")
    history = await consent.history(cid)
    assert [h["granted"] for h in history] == [False, True, True]
    assert history[-1]["text_version"] == "v3"
    state = await consent.state(cid)
    assert state["marketing_email"]["method"] == "email_link"
    assert set(state) >= {"analytics", "personalisation", "marketing_push"}
    async with kernel.db.read() as conn:
        changed = (await conn.execute(sa.select(sa.func.count()).select_from(events).where(
            events.c.type == "consent.changed"))).scalar_one()
    assert changed == 2


async def test_consent_follows_a_merge(kernel: Kernel) -> None:
    profiles = kernel.service(ProfileService)
    consent = kernel.service(ConsentService)
    a = await profiles.ensure_customer({"email": "x@example.com"}, "web")
    b = await profiles.ensure_customer({"phone": "+49 170 1234567"}, "store")
    await consent.grant(b, "marketing_sms", method="in_store", channel="store")
    survivor = await profiles.ensure_customer(
        {"email": "x@example.com", "phone": "+491701234567"}, "web")
    assert await consent.is_allowed(survivor, "marketing_sms")
    assert await consent.is_allowed(a, "marketing_sms")


async def test_a_decision_from_an_event_is_recorded_once_across_a_merge(
    kernel: Kernel,
) -> None:
    profiles = kernel.service(ProfileService)
    consent = kernel.service(ConsentService)
    a = await profiles.ensure_customer({"email": "once@example.com"}, "web")
    b = await profiles.ensure_customer({"phone": "+49 170 7654321"}, "store")
    at = kernel.clock.now()
    assert await consent.grant(b, "marketing_sms", cause_id="evt-1", at=at)
    survivor = await profiles.ensure_customer(
        {"email": "once@example.com", "phone": "+491707654321"}, "web")
    assert survivor == min(a, b) and await profiles.canonical_id(b) == survivor
    # Redelivered after the merge: now under another customer, still the same decision.
    assert not await consent.grant(b, "marketing_sms", cause_id="evt-1", at=at)
    assert len(await consent.history(survivor)) == 1


async def test_export_and_erase(kernel: Kernel) -> None:
    from kunde.profiles.feature import FEATURE

    profiles = kernel.service(ProfileService)
    a = await profiles.ensure_customer({"email": "gone@example.com"}, "web",
                                       traits={"first_name": "Gone"})
    b = await profiles.ensure_customer({"phone": "+4915100000"}, "store")
    cid = await profiles.ensure_customer({"email": "gone@example.com", "phone": "+4915100000"},
                                         "web")
    await kernel.service(ConsentService).grant(cid, "analytics", method="form")
    assert FEATURE.export is not None and FEATURE.erase is not None
    exported = await FEATURE.export(kernel, [a, b])
    (person,) = exported["customers"]
    assert person["profile"]["first_name"] == "Gone"
    assert {i["kind"] for i in person["identities"]["identities"]} == {"email", "phone"}
    assert person["consent"][0]["purpose"] == "analytics"
    async with kernel.db.transaction() as uow:
        counts = await FEATURE.erase(kernel, uow, [a, b])
    assert counts["customers"] == 2 and counts["identities"] == 2 and counts["traits"] >= 2
    assert await profiles.resolve("email", "gone@example.com") is None
    assert not await kernel.service(ConsentService).is_allowed(cid, "analytics")
