"""Delivery promises, pure: business days, cut-off times and public holidays per country.

`promise(method, country, ordered_at)` is the date the customer is promised at
checkout: the parcel leaves on the first business day whose cut-off has not passed,
then travels the method's transit business days. Holidays are computed (fixed dates
and Easter-based feasts) so the calendar never runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

COUNTRY_TZ = {"DK": "Europe/Copenhagen", "DE": "Europe/Berlin", "NL": "Europe/Amsterdam",
              "SE": "Europe/Stockholm", "GB": "Europe/London"}


@dataclass(frozen=True)
class ShippingMethod:
    code: str
    carrier: str
    service: str
    transit_days: int
    cutoff: time
    saturday_delivery: bool = False


METHODS: dict[str, ShippingMethod] = {m.code: m for m in (
    ShippingMethod("standard", "postnord", "parcel", 2, time(15, 0)),
    ShippingMethod("express", "dhl", "express", 1, time(17, 0), saturday_delivery=True),
    ShippingMethod("economy", "postnord", "economy", 4, time(12, 0)),
    ShippingMethod("pickup", "postnord", "service_point", 2, time(15, 0)),
)}


def easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month = (h + l_ - 7 * m + 114) // 31
    day = (h + l_ - 7 * m + 114) % 31 + 1
    return date(year, month, day)


@lru_cache(maxsize=256)
def holidays(country: str, year: int) -> frozenset[date]:
    """Public holidays on which carriers do not deliver, for the supported countries."""
    e = easter(year)

    def rel(days: int) -> date:
        return e + timedelta(days=days)

    fixed = {date(year, 1, 1), date(year, 12, 25), date(year, 12, 26)}
    c = country.upper()
    if c == "DK":
        days = {rel(-3), rel(-2), rel(1), rel(39), rel(50), date(year, 6, 5),
                date(year, 12, 24), date(year, 12, 31)}
        if year < 2024:
            days.add(rel(26))  # Store Bededag, abolished from 2024
    elif c == "DE":
        days = {rel(-2), rel(1), date(year, 5, 1), rel(39), rel(50), date(year, 10, 3)}
    elif c == "NL":
        kings = date(year, 4, 27)
        if kings.weekday() == 6:
            kings -= timedelta(days=1)
        days = {rel(-2), rel(1), kings, rel(39), rel(50)}
        if year % 5 == 0:
            days.add(date(year, 5, 5))
    elif c == "SE":
        days = {date(year, 1, 6), rel(-2), rel(1), date(year, 5, 1), rel(39),
                date(year, 6, 6), date(year, 12, 24), date(year, 12, 31)}
    elif c == "GB":
        days = {rel(-2), rel(1)}
    else:
        days = set()
    return frozenset(fixed | days)


def is_business_day(day: date, country: str, saturday: bool = False) -> bool:
    if day.weekday() == 6 or (day.weekday() == 5 and not saturday):
        return False
    return day not in holidays(country, day.year)


def add_business_days(start: date, n: int, country: str, saturday: bool = False) -> date:
    day = start
    while n > 0:
        day += timedelta(days=1)
        if is_business_day(day, country, saturday):
            n -= 1
    return day


def dispatch_day(ordered_at: datetime, method: ShippingMethod, country: str) -> date:
    """The business day the parcel leaves: today before the cut-off, else the next one."""
    local = ordered_at.astimezone(ZoneInfo(COUNTRY_TZ.get(country.upper(), "UTC")))
    day = local.date()
    if is_business_day(day, country) and local.time() < method.cutoff:
        return day
    return add_business_days(day, 1, country)


def promise(method_code: str, country: str, ordered_at: datetime) -> date:
    """The promised delivery date for an order placed at ``ordered_at`` (aware)."""
    method = METHODS.get(method_code, METHODS["standard"])
    leave = dispatch_day(ordered_at, method, country)
    return add_business_days(leave, method.transit_days, country, method.saturday_delivery)


def promise_deadline(promised: date, country: str) -> datetime:
    """The moment a promise is broken: the end of the promised day, local time, in UTC."""
    zone = ZoneInfo(COUNTRY_TZ.get(country.upper(), "UTC"))
    end = datetime.combine(promised + timedelta(days=1), time(0, 0), tzinfo=zone)
    return end.astimezone(UTC)
