"""Consent checks on the quick readers: the latest decision across a person's records,
decisions for ids no customer record holds, and a withdrawal counting at the next check."""

from __future__ import annotations

from datetime import timedelta

from kunde.kernel import Kernel
from kunde.profiles.models import PURPOSES
from kunde.profiles.service import ProfileService
from kunde.profiles.service_consent import ConsentService


async def test_latest_decision_across_merged_records_counts(kernel: Kernel) -> None:
    profiles = kernel.service(ProfileService)
    consent = kernel.service(ConsentService)
    now = kernel.clock.now()
    a = await profiles.ensure_customer({"email": "m1@example.com"}, "web")
    b = await profiles.ensure_customer({"phone": "+49 170 7654321"}, "store")
    await consent.grant(a, "marketing_email", at=now - timedelta(minutes=5))
    await consent.withdraw(b, "marketing_email", method="in_store", channel="store",
                           at=now - timedelta(minutes=1))
    await consent.grant(b, "analytics", at=now - timedelta(minutes=3))
    assert await consent.is_allowed(a, "marketing_email")
    survivor = await profiles.ensure_customer(
        {"email": "m1@example.com", "phone": "+491707654321"}, "web")
    for cid in {a, b, survivor}:
        assert not await consent.is_allowed(cid, "marketing_email")  # b's later withdrawal
        assert await consent.is_allowed(cid, "analytics")
        granted = await consent.granted(cid)
        assert set(granted) == set(PURPOSES)
        assert granted["analytics"] and not granted["marketing_email"]
        state = await consent.state(cid)
        assert state["marketing_email"]["granted"] is False
        assert state["marketing_email"]["method"] == "in_store"
        assert state["analytics"]["granted"] is True
        assert state["marketing_sms"] == {"granted": False, "at": None, "method": None,
                                          "channel": None, "text_version": None}


async def test_decisions_for_an_id_without_a_customer_record(kernel: Kernel) -> None:
    consent = kernel.service(ConsentService)
    stranger = "0190aaaa-0000-7000-8000-000000000001"
    assert not await consent.is_allowed(stranger, "personalisation")
    await consent.grant(stranger, "personalisation", method="api", text_version="v1")
    assert await consent.is_allowed(stranger, "personalisation")
    assert (await consent.state(stranger))["personalisation"]["text_version"] == "v1"
    await consent.withdraw(stranger, "personalisation")
    assert not await consent.is_allowed(stranger, "personalisation")  # at once, same process
    assert not await consent.is_allowed("0190aaaa-0000-7000-8000-000000000002",
                                        "personalisation")


async def test_is_allowed_in_a_callers_quick_session(kernel: Kernel) -> None:
    profiles = kernel.service(ProfileService)
    consent = kernel.service(ConsentService)
    cid = await profiles.ensure_customer({"email": "q@example.com"}, "web")
    await consent.grant(cid, "personalisation")
    async with kernel.db.quick.session() as q:
        assert await consent.is_allowed_in(q, cid, "personalisation")
        assert not await consent.is_allowed_in(q, cid, "marketing_sms")
