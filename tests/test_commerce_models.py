"""Pure rules: pricing, promised dates, money display, and the payment port's adapters."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import parse_qs

import httpx
import pytest

from kunde.commerce import pricing
from kunde.commerce.pages import money
from kunde.commerce.payments import (
    ChargeRequest,
    PaymentProvider,
    RefundRequest,
    TestProvider,
    WebhookRejected,
    sign,
)
from kunde.commerce.payments_stripe import StripeProvider

STD = pricing.SHIPPING_METHODS["standard"]
EXPRESS = pricing.SHIPPING_METHODS["express"]


def lines(*specs: tuple[str, int, int]) -> list[pricing.PricedLine]:
    return [pricing.PricedLine(f"SKU{i}", cat, qty, price)
            for i, (cat, qty, price) in enumerate(specs)]


def test_best_single_promotion_then_voucher() -> None:
    cart = lines(("Shoes", 1, 10000), ("Hats", 2, 1500))
    promos = [pricing.Promotion("shoes20", "percent", 20, category_prefix="Shoes"),
              pricing.Promotion("five-off", "amount", 500, min_subtotal_minor=5000)]
    t = pricing.compute_totals(cart, promos, pricing.Voucher("V", "amount", 1000), EXPRESS)
    assert t.subtotal_minor == 13000
    assert t.discount_minor == 2000 + 1000 and t.applied == ["promotion:shoes20", "voucher:V"]
    assert t.shipping_minor == 995 and t.total_minor == 13000 - 3000 + 995


def test_discount_never_exceeds_goods_and_free_shipping() -> None:
    cart = lines(("Hats", 1, 800))
    t = pricing.compute_totals(cart, [], pricing.Voucher("BIG", "amount", 5000), STD)
    assert t.discount_minor == 800 and t.total_minor == STD.price_minor
    t = pricing.compute_totals(cart, [], pricing.Voucher("FS", "free_shipping", 0), STD)
    assert t.shipping_minor == 0 and t.total_minor == 800
    t = pricing.compute_totals(lines(("Hats", 1, 5000)), [], None, STD)
    assert t.shipping_minor == 0  # standard is free from 50.00


def test_promised_date_skips_weekends_and_cutoff() -> None:
    friday_morning = datetime(2026, 11, 20, 9, tzinfo=UTC)
    assert pricing.promised_date(friday_morning, EXPRESS).isoformat() == "2026-11-23"
    friday_evening = datetime(2026, 11, 20, 18, tzinfo=UTC)
    assert pricing.promised_date(friday_evening, STD).isoformat() == "2026-11-25"


def test_money_display() -> None:
    assert money(1999, "EUR") == "€19.99" and money(-500, "GBP") == "-£5.00"
    assert money(1500, "JPY") == "1,500 JPY" and money(12345, "DKK") == "123.45 DKK"


def test_every_adapter_satisfies_the_port() -> None:
    assert isinstance(TestProvider(b"s"), PaymentProvider)
    assert isinstance(StripeProvider("sk_test", "whsec"), PaymentProvider)


async def test_test_provider_outcomes_and_webhooks() -> None:
    psp = TestProvider(b"secret")
    ok = await psp.charge(ChargeRequest("p1", 100, "EUR", "test_approve"))
    assert ok.status == "captured" and await psp.charge(
        ChargeRequest("p1", 100, "EUR", "test_decline")) == ok  # idempotent by payment id
    assert (await psp.charge(ChargeRequest("p2", 100, "EUR", "test_decline"))).status == \
        "declined"
    pending = await psp.charge(ChargeRequest("p3", 100, "EUR", "test_async"))
    body, headers = psp.webhook(pending.provider_ref, "captured", message_id="m")
    now = datetime.now(UTC)
    update = psp.parse_webhook({k.lower(): v for k, v in headers.items()}, body, now)
    assert update.status == "captured" and update.provider_ref == pending.provider_ref
    with pytest.raises(WebhookRejected):
        psp.parse_webhook({"kunde-signature": sign(b"other", body, int(time.time()))}, body,
                          now)


async def test_stripe_adapter_sends_idempotency_keys_and_maps_outcomes() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        form = parse_qs(request.content.decode())
        if request.url.path == "/v1/refunds":
            return httpx.Response(200, json={"id": "re_1", "status": "succeeded"})
        if form["payment_method"] == ["pm_card_chargeDeclined"]:
            return httpx.Response(402, json={"error": {"code": "card_declined",
                                                       "decline_code": "generic_decline",
                                                       "payment_intent": {"id": "pi_2"}}})
        return httpx.Response(200, json={"id": "pi_1", "status": "succeeded"})

    stripe = StripeProvider("sk_test", "whsec", transport=httpx.MockTransport(handler))
    ok = await stripe.charge(ChargeRequest("pay-1", 1999, "EUR", "pm_card_visa"))
    assert ok.status == "captured" and ok.provider_ref == "pi_1"
    declined = await stripe.charge(ChargeRequest("pay-2", 1999, "EUR",
                                                 "pm_card_chargeDeclined"))
    assert declined.status == "declined" and declined.decline_reason == "generic_decline"
    refund = await stripe.refund(RefundRequest("ref-1", "pi_1", 500, "EUR"))
    assert refund.succeeded and refund.provider_ref == "re_1"
    assert [r.headers["idempotency-key"] for r in seen] == ["pay-1", "pay-2", "ref-1"]
    assert parse_qs(seen[0].content.decode())["amount"] == ["1999"]
