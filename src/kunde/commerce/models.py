"""The order state machine and the rules of money and quantities. Pure: stdlib only.

An `Order` holds what happened to it (payments captured, shipments, deliveries,
returns, refunds), each keyed by the id of its cause, so applying the same
command twice changes nothing. The status is *derived* from those facts, never
stored independently, so it cannot drift from them:

    placed → paid → partially_fulfilled → fulfilled → delivered
    → partially_returned → returned        (goods came back)
    → partially_refunded → refunded        (money went back)
    placed | paid → cancelled              (before anything shipped)

Invariants (checked on every command, raising `OrderRuleBroken`):
never refund more than was captured, never ship more than was ordered, never
return more than was shipped, never cancel after shipping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kunde.commerce.allocation import LineValue, OrderValue, ShippingRule

STATUSES = (
    "placed", "paid", "partially_fulfilled", "fulfilled", "delivered",
    "partially_returned", "returned", "partially_refunded", "refunded", "cancelled",
)
RefundMethod = Literal["original", "store_credit"]


class OrderRuleBroken(Exception):
    """A command that would break an invariant; ``code`` is the stable error code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass
class OrderLine:
    id: str
    sku: str
    quantity: int
    unit_price_minor: int
    total_minor: int


@dataclass
class Order:
    id: str
    currency: str
    total_minor: int
    lines: dict[str, OrderLine]
    captured_minor: int = 0
    cancelled: bool = False
    shipping_minor: int = 0
    # cause id → facts; the keys make every command idempotent.
    payments: dict[str, int] = field(default_factory=dict)
    shipments: dict[str, dict[str, int]] = field(default_factory=dict)
    delivered: list[str] = field(default_factory=list)
    returns: dict[str, dict[str, int]] = field(default_factory=dict)
    refunds: dict[str, int] = field(default_factory=dict)
    # refund id → the units it paid back, for refunds of returned lines.
    refund_lines: dict[str, dict[str, int]] = field(default_factory=dict)

    # -- derived quantities ----------------------------------------------------------
    @property
    def refunded_minor(self) -> int:
        return sum(self.refunds.values())

    @property
    def refundable_minor(self) -> int:
        return self.captured_minor - self.refunded_minor

    def shipped(self, line_id: str) -> int:
        return sum(s.get(line_id, 0) for s in self.shipments.values())

    def returned(self, line_id: str) -> int:
        return sum(r.get(line_id, 0) for r in self.returns.values())

    def refunded_units(self, exclude: str | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for refund_id, qty in self.refund_lines.items():
            if refund_id != exclude:
                for line_id, n in qty.items():
                    out[line_id] = out.get(line_id, 0) + n
        return out

    def value(self, shipping_rule: ShippingRule = "full_return") -> OrderValue:
        return OrderValue.of([LineValue(ln.id, ln.quantity, ln.total_minor)
                              for ln in self.lines.values()],
                             self.total_minor, self.shipping_minor, shipping_rule)

    def quote_lines(self, quantities: dict[str, int],
                    shipping_rule: ShippingRule = "full_return") -> int:
        """What refunding ``quantities`` would pay now: their share of what was paid
        (discounts spread pro rata, shipping by ``shipping_rule``; see `allocation`),
        clipped to what is still refundable."""
        qty = _clean(quantities)
        before = self.refunded_units()
        for line_id, n in qty.items():
            line = self._line(line_id)
            if before.get(line_id, 0) + n > line.quantity:
                raise OrderRuleBroken(
                    "commerce.overrefund_lines",
                    f"line {line_id}: cannot refund more units than were ordered")
        amount = self.value(shipping_rule).refund_for(before, qty)
        return max(min(amount, self.refundable_minor), 0)

    @property
    def status(self) -> str:
        ordered = sum(ln.quantity for ln in self.lines.values())
        shipped = sum(self.shipped(i) for i in self.lines)
        returned = sum(self.returned(i) for i in self.lines)
        if self.cancelled:
            return "cancelled"
        if self.refunds:
            return "refunded" if self.refunded_minor >= self.captured_minor else \
                "partially_refunded"
        if returned:
            return "returned" if returned >= shipped else "partially_returned"
        if shipped and shipped >= ordered and self.shipments and \
                set(self.shipments) <= set(self.delivered):
            return "delivered"
        if shipped:
            return "fulfilled" if shipped >= ordered else "partially_fulfilled"
        if self.captured_minor >= self.total_minor:
            return "paid"
        return "placed"

    # -- commands: each returns True when it changed the order ---------------------------
    def capture(self, payment_id: str, amount_minor: int) -> bool:
        if payment_id in self.payments:
            return False
        if amount_minor <= 0:
            raise OrderRuleBroken("commerce.invalid_amount", "a capture must be positive")
        if self.cancelled:
            raise OrderRuleBroken("commerce.order_cancelled", "the order was cancelled")
        if self.captured_minor + amount_minor > self.total_minor:
            raise OrderRuleBroken("commerce.overcapture",
                                  "cannot capture more than the order total")
        self.payments[payment_id] = amount_minor
        self.captured_minor += amount_minor
        return True

    def fulfil(self, shipment_id: str, quantities: dict[str, int]) -> bool:
        if shipment_id in self.shipments:
            if self.shipments[shipment_id] != _clean(quantities):
                raise OrderRuleBroken("commerce.shipment_conflict",
                                      f"shipment {shipment_id} was recorded with other lines")
            return False
        if self.cancelled:
            raise OrderRuleBroken("commerce.order_cancelled", "a cancelled order cannot ship")
        qty = _clean(quantities)
        if not qty:
            raise OrderRuleBroken("commerce.invalid_quantity", "a shipment needs lines")
        for line_id, n in qty.items():
            line = self._line(line_id)
            if self.shipped(line_id) + n > line.quantity:
                raise OrderRuleBroken(
                    "commerce.overshipment",
                    f"line {line_id} would ship {self.shipped(line_id) + n} of {line.quantity}")
        self.shipments[shipment_id] = qty
        return True

    def deliver(self, shipment_id: str) -> bool:
        if shipment_id not in self.shipments:
            raise OrderRuleBroken("commerce.unknown_shipment",
                                  f"shipment {shipment_id} is not recorded on this order")
        if shipment_id in self.delivered:
            return False
        self.delivered.append(shipment_id)
        return True

    def return_(self, return_id: str, quantities: dict[str, int]) -> bool:
        if return_id in self.returns:
            if self.returns[return_id] != _clean(quantities):
                raise OrderRuleBroken("commerce.return_conflict",
                                      f"return {return_id} was recorded with other lines")
            return False
        qty = _clean(quantities)
        if not qty:
            raise OrderRuleBroken("commerce.invalid_quantity", "a return needs lines")
        for line_id, n in qty.items():
            self._line(line_id)
            if self.returned(line_id) + n > self.shipped(line_id):
                raise OrderRuleBroken(
                    "commerce.overreturn",
                    f"line {line_id}: cannot return more than was shipped")
        self.returns[return_id] = qty
        return True

    def refund(self, refund_id: str, amount_minor: int) -> bool:
        if refund_id in self.refunds:
            if self.refunds[refund_id] != amount_minor:
                raise OrderRuleBroken("commerce.refund_conflict",
                                      "this idempotency key was used for another amount")
            return False
        if amount_minor <= 0:
            raise OrderRuleBroken("commerce.invalid_amount", "a refund must be positive")
        if amount_minor > self.refundable_minor:
            raise OrderRuleBroken(
                "commerce.refund_exceeds_capture",
                f"only {self.refundable_minor} minor units are left to refund "
                f"of {self.captured_minor} captured")
        self.refunds[refund_id] = amount_minor
        return True

    def refund_returned(self, refund_id: str, quantities: dict[str, int],
                        shipping_rule: ShippingRule = "full_return") -> bool:
        """Refund returned units at their allocated value (`quote_lines`); the amount
        is ``refunds[refund_id]`` afterwards, 0 when nothing is left to refund."""
        qty = _clean(quantities)
        if refund_id in self.refunds:
            if self.refund_lines.get(refund_id) != qty:
                raise OrderRuleBroken("commerce.refund_conflict",
                                      "this idempotency key was used for other lines")
            return False
        if not qty:
            raise OrderRuleBroken("commerce.invalid_quantity", "a refund of lines needs lines")
        self.refunds[refund_id] = self.quote_lines(qty, shipping_rule)
        self.refund_lines[refund_id] = qty
        return True

    def release_refund(self, refund_id: str) -> bool:
        """Forget a refund the provider failed, so its amount may be refunded again."""
        self.refund_lines.pop(refund_id, None)
        return self.refunds.pop(refund_id, None) is not None

    def cancel(self) -> bool:
        if self.cancelled:
            return False
        if any(self.shipped(i) for i in self.lines):
            raise OrderRuleBroken("commerce.already_shipped",
                                  "an order that shipped cannot be cancelled; return it")
        self.cancelled = True
        return True

    def _line(self, line_id: str) -> OrderLine:
        line = self.lines.get(line_id)
        if line is None:
            raise OrderRuleBroken("commerce.unknown_line", f"no line {line_id} on this order")
        return line

    # -- persistence of the facts (a JSON document) ---------------------------------------
    def facts(self) -> dict[str, Any]:
        return {"payments": self.payments, "shipments": self.shipments,
                "delivered": self.delivered, "returns": self.returns,
                "refunds": self.refunds, "refund_lines": self.refund_lines,
                "cancelled": self.cancelled}

    def load_facts(self, facts: dict[str, Any]) -> None:
        self.payments = dict(facts.get("payments", {}))
        self.shipments = {k: dict(v) for k, v in facts.get("shipments", {}).items()}
        self.delivered = list(facts.get("delivered", []))
        self.returns = {k: dict(v) for k, v in facts.get("returns", {}).items()}
        self.refunds = dict(facts.get("refunds", {}))
        self.refund_lines = {k: dict(v) for k, v in facts.get("refund_lines", {}).items()}
        self.cancelled = bool(facts.get("cancelled", False))
        self.captured_minor = sum(self.payments.values())


def _clean(quantities: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line_id, n in quantities.items():
        if not isinstance(n, int) or n < 0:
            raise OrderRuleBroken("commerce.invalid_quantity", "quantities are whole numbers ≥ 0")
        if n:
            out[str(line_id)] = n
    return out

