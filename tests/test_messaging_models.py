"""Messaging rules without a database: quiet hours, back-off, breaker, signatures, templates."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from kunde.messaging import signing
from kunde.messaging.models import (
    LOCALES,
    TEMPLATES,
    Breaker,
    MessagingPolicy,
    backoff,
    in_quiet_hours,
    pick_locale,
    send_not_before,
)
from kunde.messaging.render import environment, money, render

POLICY = MessagingPolicy()  # quiet 21:00-08:00 Europe/Copenhagen


def test_quiet_hours_wrap_midnight() -> None:
    # 22:30 UTC in winter is 23:30 in Copenhagen: quiet.
    assert in_quiet_hours(datetime(2026, 1, 10, 22, 30, tzinfo=UTC), POLICY)
    assert not in_quiet_hours(datetime(2026, 1, 10, 12, 0, tzinfo=UTC), POLICY)
    # 06:59 UTC = 07:59 local: still quiet; 07:00 UTC = 08:00 local: over.
    assert in_quiet_hours(datetime(2026, 1, 10, 6, 59, tzinfo=UTC), POLICY)
    assert not in_quiet_hours(datetime(2026, 1, 10, 7, 0, tzinfo=UTC), POLICY)


def test_transactional_goes_at_night_others_wait_until_morning() -> None:
    night = datetime(2026, 1, 10, 22, 30, tzinfo=UTC)
    assert send_not_before(night, "transactional", POLICY) == night
    assert send_not_before(night, "service", POLICY) == datetime(2026, 1, 11, 7, 0, tzinfo=UTC)
    early = datetime(2026, 1, 11, 3, 0, tzinfo=UTC)
    assert send_not_before(early, "marketing_email", POLICY) == datetime(
        2026, 1, 11, 7, 0, tzinfo=UTC)
    # Summer time: 08:00 in Copenhagen is 06:00 UTC.
    summer = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)
    assert send_not_before(summer, "service", POLICY) == datetime(2026, 7, 1, 6, 0, tzinfo=UTC)


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [backoff(n, POLICY, rng).total_seconds() for n in range(1, 16)]
    assert 4 <= delays[0] <= 6
    assert delays[3] > delays[1] > delays[0]
    assert max(delays) <= POLICY.backoff_cap.total_seconds() * 1.2


def test_breaker_opens_half_opens_and_closes() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    b = Breaker(threshold=3, cooldown=timedelta(seconds=30))
    for _ in range(3):
        assert b.allows(now)
        b.failed(now)
    assert b.state == "open" and not b.allows(now + timedelta(seconds=10))
    later = now + timedelta(seconds=31)
    assert b.allows(later) and b.state == "half_open"
    assert not b.allows(later)  # one trial at a time
    b.failed(later)
    assert b.state == "open" and not b.allows(later + timedelta(seconds=1))
    assert b.allows(later + timedelta(seconds=31))
    b.succeeded()
    assert b.state == "closed" and b.allows(later)


def test_locale_fallback() -> None:
    assert pick_locale("da-DK") == "da" and pick_locale("nl_BE") == "nl"
    assert pick_locale("fr") == "en" and pick_locale(None) == "en"


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_renders_in_every_locale(template: str, locale: str) -> None:
    ctx = {"order_number": "K-1001", "first_name": "Ada", "lines": [
        {"title": "Boots", "quantity": 1}], "total_minor": 12995, "currency": "DKK",
        "promised_date": "2026-03-04", "carrier": "PostNord",
        "tracking_url": "https://shop.example/track/abc", "eta": "2026-03-06",
        "rma": "RMA-1", "amount_minor": 4995, "method": "original",
        "refund_at_first_scan": True, "subject": "[K-ABC123] Boots too small",
        "body": "We are sending a new pair.", "case_token": "ABC123", "agent_name": "Bo",
        "feedback_url": "https://shop.example/feedback/t", "kind": "csat", "scale": [1, 5]}
    used, subject, body = render(template, locale, ctx)
    assert used == locale
    assert subject and "{{" not in subject and "{{" not in body
    assert "Ada" in body


def test_text_mail_is_not_escaped_but_html_would_be() -> None:
    env = environment()
    assert callable(env.autoescape)
    assert env.autoescape("en/shipped.txt") is False
    assert env.autoescape("en/newsletter.html") is True
    _, subject, body = render("shipped", "en", {
        "order_number": "K-1 & <2>", "first_name": "Ada", "carrier": "Rock & Roll",
        "tracking_url": "https://shop.example/track/a?b=1&c=2"})
    assert "K-1 & <2>" in subject and "&amp;" not in body
    assert "https://shop.example/track/a?b=1&c=2" in body


def test_money_format() -> None:
    assert money(12995, "DKK") == "129.95 DKK"
    assert money(-5, "EUR") == "-0.05 EUR"
    assert money(500, "JPY") == "500 JPY"


def test_standard_webhooks_round_trip_and_refusals() -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"a":1}'
    hdrs = signing.headers(secret, "msg_1", 1_700_000_000, body)
    assert signing.verify([secret], hdrs, body, now=1_700_000_100) == ("msg_1", 1_700_000_000)
    with pytest.raises(signing.SignatureError) as bad:
        signing.verify([secret], hdrs, body + b" ", now=1_700_000_100)
    assert bad.value.reason == "bad_signature"
    with pytest.raises(signing.SignatureError) as old:
        signing.verify([secret], hdrs, body, now=1_700_000_000 + 301)
    assert old.value.reason == "stale_timestamp"
    with pytest.raises(signing.SignatureError) as missing:
        signing.verify([secret], {}, body, now=1_700_000_000)
    assert missing.value.reason == "missing_headers"
    # Rotation: the old secret still verifies while listed.
    assert signing.verify(["whsec_bmV3", secret], hdrs, body, now=1_700_000_000)


def test_standard_webhooks_known_vector() -> None:
    # The example of the Standard Webhooks specification's reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    sig = signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
