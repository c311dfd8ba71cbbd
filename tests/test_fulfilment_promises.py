"""Delivery promises and carrier adapters, pure; and the set-based risk sweep on a database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from fulfilment_helpers import customer, paid_order
from kunde.core.clock import FrozenClock
from kunde.fulfilment import carriers, promises
from kunde.fulfilment.config import FulfilmentConfig
from kunde.fulfilment.models import sla_state
from kunde.fulfilment.service import FulfilmentService
from kunde.fulfilment.service_care import CareService
from kunde.fulfilment.tables import shipments
from kunde.kernel import Kernel
from kunde.store.tables import events


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_easter_dates() -> None:
    assert promises.easter(2024) == date(2024, 3, 31)
    assert promises.easter(2025) == date(2025, 4, 20)
    assert promises.easter(2026) == date(2026, 4, 5)


def test_holidays_per_country() -> None:
    assert date(2026, 6, 5) in promises.holidays("DK", 2026)  # Grundlovsdag
    assert date(2026, 10, 3) in promises.holidays("DE", 2026)  # Tag der Deutschen Einheit
    assert date(2026, 4, 27) in promises.holidays("NL", 2026)  # Koningsdag
    assert date(2026, 4, 2) in promises.holidays("DK", 2026)  # Skærtorsdag
    assert date(2026, 4, 2) not in promises.holidays("DE", 2026)


def test_cutoff_and_weekend() -> None:
    # Monday 10:00 in Copenhagen, before the 15:00 cut-off: leaves today, two days transit.
    assert promises.promise("standard", "DK", utc(2026, 3, 2, 9, 0)) == date(2026, 3, 4)
    # Monday 16:00 local: leaves Tuesday.
    assert promises.promise("standard", "DK", utc(2026, 3, 2, 15, 0)) == date(2026, 3, 5)
    # Friday after cut-off: leaves Monday, arrives Wednesday.
    assert promises.promise("standard", "DK", utc(2026, 3, 6, 16, 0)) == date(2026, 3, 11)
    # Express delivers on Saturday.
    assert promises.promise("express", "DE", utc(2026, 3, 6, 9, 0)) == date(2026, 3, 7)


def test_easter_pushes_the_promise() -> None:
    # Wednesday before Easter 2026 in Denmark: Thu, Fri, Mon are holidays.
    assert promises.promise("standard", "DK", utc(2026, 4, 1, 8, 0)) == date(2026, 4, 8)
    # Germany works on Maundy Thursday.
    assert promises.promise("standard", "DE", utc(2026, 4, 1, 8, 0)) == date(2026, 4, 7)


@given(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31),
                    timezones=st.just(UTC)),
       st.sampled_from(sorted(promises.METHODS)), st.sampled_from(["DK", "DE", "NL", "SE"]))
def test_promise_is_a_business_day_after_the_order(at: datetime, method: str,
                                                   country: str) -> None:
    day = promises.promise(method, country, at)
    m = promises.METHODS[method]
    assert day > at.date()
    assert promises.is_business_day(day, country, m.saturday_delivery)
    assert (day - at.date()).days <= m.transit_days + 12
    assert promises.promise_deadline(day, country) > at


def test_sla_states() -> None:
    t = utc(2026, 1, 1)
    sla = timedelta(hours=24)
    assert sla_state(None, None, t, sla) == "waiting"
    assert sla_state(t, None, t + timedelta(hours=1), sla) == "open"
    assert sla_state(t, None, t + timedelta(hours=25), sla) == "breached"
    assert sla_state(t, t + timedelta(hours=2), t, sla) == "on_time"
    assert sla_state(t, t + timedelta(hours=30), t, sla) == "late"


def test_adapters_map_carrier_codes() -> None:
    pn = carriers.parse("postnord", {"events": [
        {"itemId": "A", "eventCode": "AVAILABLE_FOR_DELIVERY_AT_SERVICE_POINT",
         "eventTime": "2030-01-01T10:00:00+01:00", "estimatedTimeOfArrival": "2030-01-02"},
        {"itemId": "A", "eventCode": "SOMETHING_NEW", "eventTime": "2030-01-01T11:00:00Z"}]})
    assert [u.checkpoint.status for u in pn] == ["available_for_pickup", "in_transit"]
    assert pn[1].checkpoint.carrier_code == "SOMETHING_NEW"  # kept, not lost
    assert pn[0].checkpoint.at == utc(2030, 1, 1, 9, 0) and pn[0].eta == date(2030, 1, 2)
    dhl = carriers.parse("dhl", {"shipments": [{"id": "B", "events": [
        {"timestamp": "2030-01-01T10:00:00Z", "statusCode": "failure",
         "description": "Delivery attempt unsuccessful"},
        {"timestamp": "2030-01-01T12:00:00Z", "statusCode": "delivered",
         "description": "Delivered"}]}]})
    assert [u.checkpoint.status for u in dhl] == ["attempt_failed", "delivered"]
    with pytest.raises(carriers.PayloadError):
        carriers.parse("dhl", {"shipments": [{"events": []}]})
    with pytest.raises(carriers.PayloadError):
        carriers.parse("ups", {})


async def test_sweep_flags_broken_and_silent_promises(kernel: Kernel) -> None:
    start = utc(2030, 3, 4, 8, 0)  # a Monday
    kernel.clock = clock = FrozenClock(start)
    await kernel.service(FulfilmentConfig).set_policy({"goodwill_points": 100})
    service = kernel.service(FulfilmentService)
    made = []
    for i in range(3):
        order = await paid_order(kernel, await customer(kernel, f"c{i}@example.com"))
        made.append(await service.create_shipment(
            order_id=order["order_id"], carrier="kunde", service="parcel",
            tracking_number=f"SW{i}", lines={ln["line_id"]: ln["quantity"]
                                             for ln in order["lines"]}))
    care = kernel.service(CareService)
    assert await care.flag() == {"late": 0, "at_risk": 0}
    clock.advance(timedelta(hours=37))  # no scan within the expected time
    assert await care.flag() == {"late": 0, "at_risk": 3}
    clock.advance(timedelta(days=10))  # every promise broken
    assert await care.flag() == {"late": 3, "at_risk": 0}
    assert await care.flag() == {"late": 0, "at_risk": 0}  # incremental: only new ones
    result = await care.sweep()
    assert "acted 3" in result
    async with kernel.db.read() as conn:
        types = (await conn.execute(sa.select(events.c.type))).scalars().all()
        risks = (await conn.execute(sa.select(shipments.c.risk))).scalars().all()
    assert types.count("fulfilment.delay_detected") == 3
    assert types.count("fulfilment.goodwill_granted") == 3
    assert risks == ["late"] * 3
