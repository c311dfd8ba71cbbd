"""Fulfilment rules, pure: the tracking vocabulary, checkpoints, risk, returns policy."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

Status = Literal["pending", "info_received", "in_transit", "out_for_delivery",
                 "attempt_failed", "available_for_pickup", "delivered", "exception",
                 "expired"]
STATUSES: tuple[Status, ...] = (
    "pending", "info_received", "in_transit", "out_for_delivery", "attempt_failed",
    "available_for_pickup", "delivered", "exception", "expired")
CLOSED: frozenset[str] = frozenset({"delivered", "expired"})
# A scan by the carrier (the parcel is physically moving): not pending nor pre-advice.
NOT_A_SCAN: frozenset[str] = frozenset({"pending", "info_received"})
TROUBLE: frozenset[str] = frozenset({"exception", "attempt_failed"})

# How long a parcel may stay silent in a status before it is "at risk".
SILENCE: dict[str, timedelta] = {
    "pending": timedelta(hours=36),
    "info_received": timedelta(hours=48),
    "in_transit": timedelta(hours=48),
    "out_for_delivery": timedelta(hours=14),
    "attempt_failed": timedelta(hours=48),
    "available_for_pickup": timedelta(days=7),
    "exception": timedelta(hours=24),
}

NEXT_STEP: dict[str, str] = {
    "pending": "We are packing your parcel; the carrier will pick it up soon.",
    "info_received": "The carrier knows about your parcel and will collect it shortly.",
    "in_transit": "Your parcel is on its way to your local depot.",
    "out_for_delivery": "The driver has your parcel and will deliver it today.",
    "attempt_failed": "The carrier will try again on the next working day, or leave a card.",
    "available_for_pickup": "Your parcel is waiting for you at the pick-up point.",
    "delivered": "Your parcel has been delivered. Enjoy!",
    "exception": "Something held your parcel up. We are on it and will keep you posted.",
    "expired": "The carrier stopped tracking this parcel. Contact us if it did not arrive.",
}

Risk = Literal["ok", "at_risk", "late"]
RefundTrigger = Literal["first_scan", "receipt", "inspection"]
RETURN_REASONS = ("too_small", "too_large", "not_as_described", "damaged", "wrong_item",
                  "changed_mind", "other")
_NS = uuid.UUID("0f5a2b9e-7d14-4c63-b1b0-9d2e51c7a3f4")


def stable_id(*parts: str) -> str:
    """A deterministic id from its cause, so a repeated command finds the same row."""
    return str(uuid.uuid5(_NS, "\x1f".join(parts)))


@dataclass(frozen=True)
class Checkpoint:
    at: datetime
    status: Status
    message: str = ""
    location: str = ""
    carrier_code: str = ""

    def fingerprint(self) -> str:
        raw = f"{self.at.isoformat()}|{self.status}|{self.carrier_code}|{self.message}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class TrackingUpdate:
    """One carrier event about one parcel, in Kunde's vocabulary."""

    tracking_number: str
    checkpoint: Checkpoint
    eta: date | None = None


@dataclass(frozen=True)
class Policy:
    """What Kunde does for delays and returns; stored per installation, edited by admins."""

    notify_customer: bool = True
    open_case_when: tuple[str, ...] = ("late", "exception")
    goodwill_points: int = 0
    return_window_days: int = 30
    refund_trigger: RefundTrigger = "first_scan"
    refund_method: str = "original"
    refund_sla_hours: int = 24
    # Shipping paid back with returns: when the last unit comes back (full_return), spread
    # over the lines like a discount (pro_rata), or never; see kunde.commerce.allocation.
    refund_shipping: str = "full_return"
    auto_approve_returns: bool = True
    return_carrier: str = "postnord"
    reasons_needing_review: tuple[str, ...] = field(default_factory=tuple)


def expected_scan_by(status: str, at: datetime) -> datetime | None:
    window = SILENCE.get(status)
    return at + window if window else None


def incremental_risk(status: str, eta: date | None, promised: date | None) -> str | None:
    """The reason a fresh scan makes a shipment at risk, or None."""
    if status in TROUBLE:
        return status
    if eta and promised and eta > promised:
        return "eta_after_promise"
    return None


def needs_case(risk: str, reason: str, policy: Policy) -> bool:
    return risk in policy.open_case_when or reason in policy.open_case_when


def sla_state(trigger_at: datetime | None, refunded_at: datetime | None, now: datetime,
              sla: timedelta) -> str:
    """``waiting`` (no trigger yet), ``on_time``/``late`` once refunded, ``open``/``breached``."""
    if trigger_at is None:
        return "waiting"
    if refunded_at is not None:
        return "on_time" if refunded_at - trigger_at <= sla else "late"
    return "open" if now - trigger_at <= sla else "breached"


def return_window_open(delivered_at: datetime | None, placed_at: datetime, now: datetime,
                       days: int) -> bool:
    start = delivered_at or placed_at
    return now <= start + timedelta(days=days)


def rma_number(return_id: str) -> str:
    return "RMA-" + return_id.replace("-", "")[-10:].upper()
