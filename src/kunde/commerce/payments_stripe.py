"""Stripe adapter of the payment port: PaymentIntents (confirm at once), Refunds, webhooks.

Kunde's payment and refund ids go to Stripe as ``Idempotency-Key``, so a retried
call never charges or refunds twice. Enabled by ``KUNDE_STRIPE_API_KEY``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import httpx

from kunde.commerce.payments import (
    ChargeRequest,
    ChargeResult,
    PaymentUpdate,
    RefundRequest,
    RefundResult,
    WebhookRejected,
    verify_signature,
)
from kunde.core import jsonutil

API = "https://api.stripe.com/v1"


class StripeProvider:
    name = "stripe"

    def __init__(self, api_key: str, webhook_secret: str, *, base_url: str = API,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=10.0, auth=(api_key, ""),
                                       transport=transport)
        self._secret = webhook_secret.encode()

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        r = await self._http.post("/payment_intents", headers={
            "Idempotency-Key": request.payment_id}, data={
            "amount": request.amount_minor, "currency": request.currency.lower(),
            "payment_method": request.method_token, "confirm": "true",
            "metadata[kunde_payment_id]": request.payment_id,
            "automatic_payment_methods[enabled]": "true",
            "automatic_payment_methods[allow_redirects]": "never"})
        body = r.json()
        if r.status_code == 402 or body.get("error"):
            err = body.get("error", {})
            ref = (err.get("payment_intent") or {}).get("id", "")
            return ChargeResult("declined", ref, err.get("decline_code") or err.get("code"))
        status = body.get("status")
        if status == "succeeded":
            return ChargeResult("captured", body["id"])
        return ChargeResult("pending", body["id"])

    async def refund(self, request: RefundRequest) -> RefundResult:
        r = await self._http.post("/refunds", headers={"Idempotency-Key": request.refund_id},
                                  data={"payment_intent": request.provider_ref,
                                        "amount": request.amount_minor})
        body = r.json()
        if r.status_code >= 400 or body.get("status") == "failed":
            return RefundResult(False, body.get("id", ""),
                                (body.get("error") or {}).get("message", "refund failed"))
        return RefundResult(True, body["id"])

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime
                      ) -> PaymentUpdate:
        # Stripe signs "t.<body>" with HMAC-SHA256 exactly like our test provider does.
        verify_signature(self._secret, headers.get("stripe-signature", ""), body, now)
        event = jsonutil.loads(body)
        kind = event.get("type")
        intent = (event.get("data") or {}).get("object") or {}
        if kind == "payment_intent.succeeded":
            return PaymentUpdate(event["id"], intent["id"], "captured")
        if kind == "payment_intent.payment_failed":
            return PaymentUpdate(event["id"], intent["id"], "declined",
                                 (intent.get("last_payment_error") or {}).get("code"))
        raise WebhookRejected(f"event type {kind!r} is not a payment outcome",
                              code="commerce.webhook_ignored", status=200)
