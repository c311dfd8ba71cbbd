"""Segment e-commerce Spec v2 events → typed ``interaction.recorded`` payloads. Pure.

Prices in the Spec are decimal major units; interactions carry integer minor units
of the event's currency (default EUR).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

KINDS = {
    "products searched": "products_searched",
    "product searched": "products_searched",
    "product viewed": "product_viewed",
    "product clicked": "product_viewed",
    "product added": "product_added",
    "product removed": "product_removed",
    "cart viewed": "cart_viewed",
    "checkout started": "checkout_started",
    "coupon applied": "coupon_applied",
    "product reviewed": "product_reviewed",
    "order completed": "order_completed",
    "order refunded": "order_refunded",
    "order cancelled": "order_cancelled",
    "order canceled": "order_cancelled",
}
ZERO_DECIMAL = frozenset({"JPY", "KRW", "CLP", "ISK", "VND", "XAF", "XOF", "HUF"})
DEFAULT_CURRENCY = "EUR"


def kind_of(event_name: str | None) -> str | None:
    return KINDS.get(event_name.strip().lower()) if event_name else None


def to_minor(value: Any, currency: str) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or abs(amount) > Decimal(10) ** 12:
        return None
    exp = 0 if currency in ZERO_DECIMAL else 2
    return int((amount * (Decimal(10) ** exp)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text[:200] or None


def _quantity(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        q = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return q if 0 <= q <= 1_000_000 else None


def _product(p: dict[str, Any], currency: str) -> dict[str, Any]:
    return {
        "sku": _text(p.get("sku")),
        "product_id": _text(p.get("product_id") or p.get("productId") or p.get("id")),
        "category": _text(p.get("category")),
        "quantity": _quantity(p.get("quantity", 1)),
        "price_minor": to_minor(p.get("price"), currency),
    }


def project(message: dict[str, Any]) -> dict[str, Any] | None:
    """The interaction a track message describes, or None for non-commerce events."""
    kind = kind_of(message.get("event"))
    if kind is None:
        return None
    props: dict[str, Any] = message.get("properties") or {}
    raw_currency = props.get("currency")
    currency = (raw_currency.upper()[:3] if isinstance(raw_currency, str) and raw_currency
                else DEFAULT_CURRENCY)
    out: dict[str, Any] = {"kind": kind, "channel": message.get("channel"), "currency": currency,
                           "message_id": message.get("message_id")}
    out.update({k: v for k, v in _product(props, currency).items() if v is not None})
    order_id = _text(props.get("order_id") or props.get("orderId"))
    if order_id:
        out["order_id"] = order_id
    revenue = props.get("total", props.get("revenue"))
    if revenue is not None and (minor := to_minor(revenue, currency)) is not None:
        out["revenue_minor"] = minor
    products = props.get("products")
    if isinstance(products, list):
        out["products"] = [_product(p, currency) for p in products[:200] if isinstance(p, dict)]
    query = _text(props.get("query"))
    if query:
        out["query"] = query
    coupon = _text(props.get("coupon") or props.get("coupon_id"))
    if coupon:
        out["coupon"] = coupon
    if kind == "product_reviewed" and isinstance(props.get("rating"), int | float):
        out["rating"] = props["rating"]
    return out
