"""Carrier adapters, pure: each turns one carrier's webhook body into `TrackingUpdate`s.

Adding a carrier is one function and one status table here. Unmapped carrier
codes become ``in_transit`` with the raw code kept on the checkpoint, so nothing
a carrier says is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, cast

from kunde.fulfilment.models import STATUSES, Checkpoint, Status, TrackingUpdate


class PayloadError(ValueError):
    """The body is not what this carrier sends."""


def _when(value: Any) -> datetime:
    if not isinstance(value, str):
        raise PayloadError("timestamps must be ISO 8601 strings")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise PayloadError(f"bad timestamp {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _day(value: Any) -> date | None:
    if not value:
        return None
    return _when(value).date() if "T" in str(value) else date.fromisoformat(str(value))


def _list(body: Any, key: str) -> list[dict[str, Any]]:
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise PayloadError(f"expected a list under {key!r}")
    return cast(list[dict[str, Any]], items)


# -- PostNord-style: a flat list of item events with event codes ----------------------
POSTNORD: dict[str, Status] = {
    "EDI_RECEIVED": "info_received", "PRE_ADVICE": "info_received",
    "COLLECTED": "in_transit", "IN_TRANSIT": "in_transit",
    "ARRIVED_AT_TERMINAL": "in_transit", "DEPARTED_FROM_TERMINAL": "in_transit",
    "OUT_FOR_DELIVERY": "out_for_delivery", "EN_ROUTE": "out_for_delivery",
    "DELIVERY_ATTEMPT_FAILED": "attempt_failed", "NOTIFICATION_LEFT": "attempt_failed",
    "AVAILABLE_FOR_DELIVERY_AT_SERVICE_POINT": "available_for_pickup",
    "DELIVERED": "delivered", "PICKED_UP_AT_SERVICE_POINT": "delivered",
    "DELAYED": "exception", "DAMAGED": "exception", "RETURNED_TO_SENDER": "exception",
    "ADDRESS_PROBLEM": "exception", "EXPIRED": "expired",
}


def postnord(body: Any) -> list[TrackingUpdate]:
    out = []
    for ev in _list(body, "events"):
        code = str(ev.get("eventCode") or "")
        item = ev.get("itemId")
        if not item or not code:
            raise PayloadError("each event needs itemId and eventCode")
        loc = ev.get("location") or {}
        out.append(TrackingUpdate(
            tracking_number=str(item),
            checkpoint=Checkpoint(
                at=_when(ev.get("eventTime")), status=POSTNORD.get(code, "in_transit"),
                message=str(ev.get("eventDescription") or code)[:500],
                location=str(loc.get("displayName") or "")[:200], carrier_code=code[:64]),
            eta=_day(ev.get("estimatedTimeOfArrival"))))
    return out


# -- DHL-style: shipments with events carrying a coarse statusCode and a description ----
DHL_CODES: dict[str, Status] = {"pre-transit": "info_received", "transit": "in_transit",
                                "delivered": "delivered", "failure": "exception",
                                "unknown": "in_transit"}
DHL_DETAIL: dict[str, Status] = {"with delivery courier": "out_for_delivery",
                                 "delivery attempt": "attempt_failed",
                                 "ready for pickup": "available_for_pickup",
                                 "parcelshop": "available_for_pickup",
                                 "returned": "exception"}


def dhl(body: Any) -> list[TrackingUpdate]:
    out = []
    for shipment in _list(body, "shipments"):
        number = shipment.get("id")
        if not number:
            raise PayloadError("each shipment needs an id")
        eta = _day(shipment.get("estimatedTimeOfDelivery"))
        for ev in _list(shipment, "events"):
            code = str(ev.get("statusCode") or "unknown")
            text = str(ev.get("description") or ev.get("status") or code)
            status = DHL_CODES.get(code, "in_transit")
            if status in ("in_transit", "exception"):
                for needle, mapped in DHL_DETAIL.items():
                    if needle in text.lower():
                        status = mapped
                        break
            place = ((ev.get("location") or {}).get("address") or {}).get("addressLocality")
            out.append(TrackingUpdate(
                tracking_number=str(number),
                checkpoint=Checkpoint(at=_when(ev.get("timestamp")), status=status,
                                      message=text[:500], location=str(place or "")[:200],
                                      carrier_code=code[:64]),
                eta=eta))
    return out


# -- Kunde's own normalised format, for carriers bridged by a small integration ----------
def kunde(body: Any) -> list[TrackingUpdate]:
    out = []
    for u in _list(body, "updates"):
        status = u.get("status")
        if status not in STATUSES or not u.get("tracking_number"):
            raise PayloadError(f"status must be one of {', '.join(STATUSES)}")
        out.append(TrackingUpdate(
            tracking_number=str(u["tracking_number"]),
            checkpoint=Checkpoint(at=_when(u.get("at")), status=cast(Status, status),
                                  message=str(u.get("message") or "")[:500],
                                  location=str(u.get("location") or "")[:200],
                                  carrier_code=str(u.get("code") or status)[:64]),
            eta=_day(u.get("eta"))))
    return out


ADAPTERS: dict[str, Callable[[Any], list[TrackingUpdate]]] = {
    "postnord": postnord, "dhl": dhl, "kunde": kunde,
}


def parse(carrier: str, body: Any) -> list[TrackingUpdate]:
    adapter = ADAPTERS.get(carrier)
    if adapter is None:
        raise PayloadError(f"unknown carrier {carrier!r}; known: {', '.join(ADAPTERS)}")
    return adapter(body)
