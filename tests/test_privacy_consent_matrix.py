"""Consent enforcement, purpose by feature: a feature acts with consent, stops as soon as it is
withdrawn (well within a minute), and every decision is recorded with who, when, how and
which text version.

Each row names a purpose, the feature that must ask, and a probe returning whether the
feature acted. Add a row when a feature starts acting on a purpose.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kunde.core.ids import new_id
from kunde.kernel import Kernel

consent_module = pytest.importorskip("kunde.profiles.service_consent")
ConsentService = consent_module.ConsentService
WITHIN_SECONDS = 60.0

Probe = Callable[[Kernel, str], Awaitable[bool]]


def _message_probe(purpose: str, channel: str) -> Probe:
    async def probe(kernel: Kernel, customer_id: str) -> bool:
        from kunde.messaging.service import MessagingService

        async with kernel.db.transaction() as uow:
            message_id = await kernel.service(MessagingService).enqueue(
                uow, customer_id=customer_id, template="order_confirmation",
                context={"order_number": "1001"}, channel=channel, purpose=purpose,
                idempotency_key=new_id())
        return message_id is not None

    return probe


async def _recommendation_probe(kernel: Kernel, customer_id: str) -> bool:
    from kunde.personalisation.service import RecommendationService

    svc = kernel.service(RecommendationService)
    try:
        result = await svc.recommend(customer_id, "home", 5)
    except Exception as exc:  # no trained model in an empty database
        pytest.skip(f"recommendations need a model here: {type(exc).__name__}")
    return bool(result.get("personal"))


MATRIX: list[tuple[str, str, Probe]] = [
    ("marketing_email", "messaging", _message_probe("marketing_email", "email")),
    # Messaging checks consent by purpose before it looks at the channel's endpoint.
    ("marketing_sms", "messaging", _message_probe("marketing_sms", "email")),
    ("marketing_push", "messaging", _message_probe("marketing_push", "email")),
    ("personalisation", "personalisation", _recommendation_probe),
]


@pytest.mark.parametrize(("purpose", "feature", "probe"), MATRIX,
                         ids=[f"{p}-{f}" for p, f, _ in MATRIX])
async def test_withdrawal_takes_effect_within_a_minute(kernel: Kernel, purpose: str,
                                                       feature: str, probe: Probe) -> None:
    pytest.importorskip(f"kunde.{feature}.service")
    consent: Any = kernel.service(ConsentService)
    cid = new_id()
    assert not await probe(kernel, cid), "acted without any consent"
    await consent.grant(cid, purpose, method="portal_checkbox", channel="web",
                        text_version="marketing-2026-10", actor=f"customer:{cid}")
    if not await probe(kernel, cid):
        pytest.skip(f"{feature} does not act on {purpose} for a bare customer here")
    withdrawn_at = time.monotonic()
    await consent.withdraw(cid, purpose, method="unsubscribe_link", channel="email",
                           text_version="marketing-2026-10", actor=f"customer:{cid}")
    while await probe(kernel, cid):
        assert time.monotonic() - withdrawn_at < WITHIN_SECONDS, "withdrawal ignored"
        time.sleep(0.5)


async def test_consent_records_hold_who_when_how_and_text(kernel: Kernel) -> None:
    consent: Any = kernel.service(ConsentService)
    cid = new_id()
    await consent.grant(cid, "marketing_email", method="portal_checkbox", channel="web",
                        text_version="marketing-2026-10", actor="staff:agent-7")
    state = (await consent.state(cid))["marketing_email"]
    assert state["granted"] is True
    assert state["method"] == "portal_checkbox" and state["channel"] == "web"
    assert state["text_version"] == "marketing-2026-10"
    assert state.get("at") is not None
    history = await _history(kernel, cid)
    assert history and history[0]["actor"] == "staff:agent-7"


async def _history(kernel: Kernel, customer_id: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from kunde.profiles.tables import consent_records

    async with kernel.db.read() as conn:
        rows = await conn.execute(sa.select(consent_records)
                                  .where(consent_records.c.customer_id == customer_id))
        return [dict(r._mapping) for r in rows]
