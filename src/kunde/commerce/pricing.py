"""Cart totals: promotions, vouchers, shipping methods, promised dates. Pure: stdlib only.

Rules, so a customer can predict them:
* at most one automatic promotion applies — the one that saves the customer most;
* a voucher applies on top of it, to what is left;
* a discount never exceeds the goods (shipping is never made negative);
* ``free_shipping`` (promotion, voucher, or a method's free-over threshold) sets
  shipping to zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta


@dataclass(frozen=True)
class ShippingMethod:
    code: str
    name: str
    price_minor: int
    business_days: int
    free_over_minor: int | None = None


SHIPPING_METHODS: dict[str, ShippingMethod] = {
    m.code: m for m in (
        ShippingMethod("standard", "Standard delivery", 495, 3, free_over_minor=5000),
        ShippingMethod("express", "Express delivery", 995, 1),
        ShippingMethod("click_collect", "Click & collect in store", 0, 2),
    )
}


@dataclass(frozen=True)
class PricedLine:
    sku: str
    category: str
    quantity: int
    unit_price_minor: int

    @property
    def total_minor(self) -> int:
        return self.quantity * self.unit_price_minor


@dataclass(frozen=True)
class Promotion:
    name: str
    kind: str  # percent | amount | free_shipping
    value: int
    min_subtotal_minor: int = 0
    category_prefix: str | None = None

    def eligible(self, lines: list[PricedLine]) -> int:
        """The subtotal of the lines this promotion applies to."""
        return sum(ln.total_minor for ln in lines
                   if not self.category_prefix or ln.category.startswith(self.category_prefix))


@dataclass(frozen=True)
class Voucher:
    code: str
    kind: str  # percent | amount | free_shipping
    value: int


@dataclass
class Totals:
    subtotal_minor: int
    discount_minor: int
    shipping_minor: int
    total_minor: int
    applied: list[str] = field(default_factory=list)


def _saving(kind: str, value: int, base: int) -> int:
    if kind == "percent":
        return base * value // 100
    if kind == "amount":
        return min(value, base)
    return 0


def compute_totals(lines: list[PricedLine], promotions: list[Promotion],
                   voucher: Voucher | None, method: ShippingMethod) -> Totals:
    subtotal = sum(ln.total_minor for ln in lines)
    applied: list[str] = []
    free_shipping = False
    best: tuple[int, Promotion] | None = None
    for promo in promotions:
        base = promo.eligible(lines)
        if not base or subtotal < promo.min_subtotal_minor:
            continue
        saving = _saving(promo.kind, promo.value, base)
        if promo.kind == "free_shipping":
            saving = method.price_minor
        if best is None or saving > best[0]:
            best = (saving, promo)
    discount = 0
    if best is not None:
        applied.append(f"promotion:{best[1].name}")
        if best[1].kind == "free_shipping":
            free_shipping = True
        else:
            discount = best[0]
    if voucher is not None:
        applied.append(f"voucher:{voucher.code}")
        if voucher.kind == "free_shipping":
            free_shipping = True
        else:
            discount += _saving(voucher.kind, voucher.value, subtotal - discount)
    discount = min(discount, subtotal)
    shipping = method.price_minor
    if free_shipping or (method.free_over_minor is not None
                         and subtotal - discount >= method.free_over_minor):
        shipping = 0
    return Totals(subtotal, discount, shipping, subtotal - discount + shipping, applied)


def promised_date(now: datetime, method: ShippingMethod, cutoff_hour: int = 15) -> date:
    """Business days after today (after tomorrow past the cut-off), skipping weekends.

    Public holidays per country are the delivery-promise engine's job (fulfilment);
    this is the date shown at checkout when no better promise is available.
    """
    day = now.date() + timedelta(days=1 if now.hour >= cutoff_hour else 0)
    left = method.business_days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day
