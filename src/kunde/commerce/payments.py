"""The payment provider port and the deterministic ``test`` provider.

A provider adapter implements `PaymentProvider`: charge (authorise and capture in
one step), refund, and reading its signed webhooks. Every call carries Kunde's
own id as the provider's idempotency key, so a retried call never moves money
twice. A real PSP adapter is one small file (see ``payments_stripe.py``).

The ``test`` provider's outcome is chosen by the payment method token:

* ``test_approve`` (or anything else starting ``test_ok``) → captured at once,
* ``test_decline`` → declined, nothing captured,
* ``test_async`` → pending; a signed webhook later says captured or declined;
* ``test_timeout_once`` → the first call for a payment times out *after* charging
  (as a real network failure may), later calls answer captured.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from kunde.core import jsonutil
from kunde.core.errors import KundeError

ChargeStatus = Literal["captured", "declined", "pending"]
TOLERANCE_SECONDS = 300


class WebhookRejected(KundeError):
    status = 400
    code = "commerce.webhook_rejected"


@dataclass(frozen=True)
class ChargeRequest:
    payment_id: str
    amount_minor: int
    currency: str
    method_token: str
    customer_id: str | None = None


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    provider_ref: str
    decline_reason: str | None = None


@dataclass(frozen=True)
class RefundRequest:
    refund_id: str
    provider_ref: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class RefundResult:
    succeeded: bool
    provider_ref: str
    failure_reason: str | None = None


@dataclass(frozen=True)
class PaymentUpdate:
    """What a provider's webhook says about one payment."""

    message_id: str
    provider_ref: str
    status: Literal["captured", "declined"]
    reason: str | None = None


@runtime_checkable
class PaymentProvider(Protocol):
    name: str

    async def charge(self, request: ChargeRequest) -> ChargeResult: ...

    async def refund(self, request: RefundRequest) -> RefundResult: ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime
                      ) -> PaymentUpdate: ...


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``Kunde-Signature`` header value for a test-provider webhook."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: bytes, header: str, body: bytes, now: datetime) -> None:
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts.get("t", ""))
    except ValueError as exc:
        raise WebhookRejected("the signature header has no timestamp") from exc
    if abs(now.timestamp() - ts) > TOLERANCE_SECONDS:
        raise WebhookRejected("the webhook timestamp is outside the 5-minute tolerance")
    expected = sign(secret, body, ts).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        raise WebhookRejected("the webhook signature does not match")


class TestProvider:
    """Deterministic outcomes for tests, demos and benchmarks; moves no real money.

    ``refunds_paid`` records every refund the "bank" paid out, so tests can prove a
    retried refund never pays twice.
    """

    name = "test"
    __test__ = False  # not a pytest test class

    def __init__(self, webhook_secret: bytes) -> None:
        self.secret = webhook_secret
        self.charges: dict[str, ChargeResult] = {}
        self.refunds_paid: dict[str, int] = {}
        self._timed_out: set[str] = set()

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        known = self.charges.get(request.payment_id)
        if known is not None:  # the provider's own idempotency
            return known
        ref = "tp_" + hashlib.sha256(request.payment_id.encode()).hexdigest()[:24]
        outcome = request.method_token
        if outcome == "test_timeout_once" and request.payment_id not in self._timed_out:
            self._timed_out.add(request.payment_id)
            raise TimeoutError("the test provider did not answer in time")
        if outcome == "test_decline":
            result = ChargeResult("declined", ref, "card_declined")
        elif outcome == "test_async":
            result = ChargeResult("pending", ref)
        else:
            result = ChargeResult("captured", ref)
        self.charges[request.payment_id] = result
        return result

    async def refund(self, request: RefundRequest) -> RefundResult:
        ref = "tr_" + hashlib.sha256(request.refund_id.encode()).hexdigest()[:24]
        self.refunds_paid.setdefault(request.refund_id, request.amount_minor)
        return RefundResult(True, ref)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime
                      ) -> PaymentUpdate:
        verify_signature(self.secret, headers.get("kunde-signature", ""), body, now)
        try:
            data = jsonutil.loads(body)
            status = data["status"]
            if status not in ("captured", "declined"):
                raise ValueError(status)
            return PaymentUpdate(message_id=str(data["id"]), provider_ref=str(data["payment_ref"]),
                                 status=status, reason=data.get("reason"))
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected("the webhook body is not a payment update") from exc

    def webhook(self, provider_ref: str, status: str, *, message_id: str,
                timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
        """Build a signed webhook as the test PSP would send it (tests, demo, bench)."""
        body = jsonutil.dumps({"id": message_id, "payment_ref": provider_ref, "status": status})
        ts = int(time.time()) if timestamp is None else timestamp
        return body, {"Kunde-Signature": sign(self.secret, body, ts),
                      "Content-Type": "application/json"}
