"""What returned goods are worth: order-level discounts and shipping spread over lines.

Pure: stdlib only, integer minor units throughout.

An order's lines carry list prices; promotions, vouchers and loyalty rewards are
one order-level ``discount_minor`` and shipping is one ``shipping_minor``. What the
customer paid for the goods, ``total - shipping``, is allocated over the lines pro
rata to their list totals by the **largest-remainder method**, so the parts are
non-negative integers that sum exactly to the whole; a line's share is spread over
its units the same way (cumulatively: the first *k* units of a line are worth
``share * k // quantity``, all of them exactly ``share``).

A refund for returned quantities is the *difference* in value between what has
been refunded by line before and after it, ``value(before + returned) -
value(before)``. The differences telescope: whatever the sequence of partial
returns, their refunds add up to ``value(everything) == total``. Shipping follows
the rule chosen (``ShippingRule``): refunded with the return that completes the
order (``full_return``, the default), spread over the lines like a discount
(``pro_rata``), or kept (``never``). The caller clips each refund to what is still
refundable, so no sequence ever refunds more than was captured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

ShippingRule = Literal["full_return", "pro_rata", "never"]
SHIPPING_RULES: tuple[ShippingRule, ...] = ("full_return", "pro_rata", "never")


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` (≥ 0) into integers proportional to ``weights`` (each ≥ 0).

    The parts sum exactly to ``total``; units left after flooring go to the largest
    remainders, ties to the earlier weight. All-zero weights split evenly.
    """
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError("largest_remainder needs a total and weights ≥ 0")
    if not weights:
        if total:
            raise ValueError("cannot split a positive total over nothing")
        return []
    ws = list(weights) if any(weights) else [1] * len(weights)
    whole = sum(ws)
    parts = [total * w // whole for w in ws]
    left = total - sum(parts)
    by_remainder = sorted(range(len(ws)), key=lambda i: (-(total * ws[i] % whole), i))
    for i in by_remainder[:left]:
        parts[i] += 1
    return parts


@dataclass(frozen=True)
class LineValue:
    line_id: str
    quantity: int
    list_minor: int  # quantity x unit price, before order-level discounts


@dataclass(frozen=True)
class OrderValue:
    """The paid value of an order's lines, by the allocation described above."""

    lines: tuple[LineValue, ...]
    total_minor: int
    shipping_minor: int
    shipping_rule: ShippingRule = "full_return"

    @classmethod
    def of(cls, lines: Sequence[LineValue], total_minor: int, shipping_minor: int,
           shipping_rule: ShippingRule = "full_return") -> OrderValue:
        if shipping_rule not in SHIPPING_RULES:
            raise ValueError(f"shipping rule must be one of {', '.join(SHIPPING_RULES)}")
        ordered = tuple(sorted(lines, key=lambda ln: ln.line_id))
        total = max(total_minor, 0)
        return cls(ordered, total, min(max(shipping_minor, 0), total), shipping_rule)

    def shares(self) -> dict[str, int]:
        """Each line's share of what was paid (shipping included under ``pro_rata``)."""
        spread = self.total_minor - (0 if self.shipping_rule == "pro_rata"
                                     else self.shipping_minor)
        if not self.lines:
            return {}
        parts = largest_remainder(spread, [max(ln.list_minor, 0) for ln in self.lines])
        return {ln.line_id: p for ln, p in zip(self.lines, parts, strict=True)}

    def value(self, quantities: Mapping[str, int]) -> int:
        """What ``quantities`` (line id → units, each ≤ the line's quantity) are worth."""
        shares = self.shares()
        worth = 0
        complete = True
        for ln in self.lines:
            n = min(max(int(quantities.get(ln.line_id, 0)), 0), ln.quantity)
            complete = complete and n >= ln.quantity
            worth += shares[ln.line_id] * n // ln.quantity if ln.quantity else 0
        if self.shipping_rule == "full_return" and complete and self.lines:
            worth += self.shipping_minor
        return worth

    def refund_for(self, before: Mapping[str, int], returned: Mapping[str, int]) -> int:
        """The refund for ``returned`` units when ``before`` were already refunded."""
        after = {k: int(before.get(k, 0)) + int(returned.get(k, 0))
                 for k in {*before, *returned}}
        return self.value(after) - self.value(before)
