"""Stable error codes of commerce (``commerce.*``); they become problem+json in one place."""

from __future__ import annotations

from kunde.commerce.models import OrderRuleBroken
from kunde.core.errors import Conflict, InvalidInput, KundeError, NotFound


class OrderNotFound(NotFound):
    code = "commerce.order_not_found"


class CartNotFound(NotFound):
    code = "commerce.cart_not_found"


class ProductNotFound(NotFound):
    code = "commerce.sku_not_found"


class OutOfStock(Conflict):
    code = "commerce.out_of_stock"


class PriceChanged(Conflict):
    code = "commerce.price_changed"


class CartNotOpen(Conflict):
    code = "commerce.cart_not_open"


class VoucherInvalid(KundeError):
    status = 422
    code = "commerce.voucher_invalid"


class PaymentDeclined(KundeError):
    status = 402
    code = "commerce.payment_declined"


class OrderRule(Conflict):
    """An order invariant would break (over-refund, over-shipment, …)."""

    code = "commerce.order_rule"


class IdempotencyKeyReused(KundeError):
    status = 422
    code = "idempotency.key_reused"


class IdempotencyInProgress(Conflict):
    code = "idempotency.in_progress"


class BadImport(InvalidInput):
    code = "commerce.invalid_import"


def from_rule(exc: OrderRuleBroken) -> OrderRule:
    return OrderRule(exc.detail, code=exc.code)
