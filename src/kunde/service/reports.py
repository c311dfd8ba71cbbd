"""Service reporting: cases by status and channel, SLA compliance, response and resolution
times, CSAT and NPS by week with their comments."""

from __future__ import annotations

from datetime import datetime, timedelta
from statistics import median
from typing import Any

import sqlalchemy as sa

from kunde.core.clock import as_utc
from kunde.kernel import Kernel
from kunde.service import charts, models
from kunde.service.errors import InvalidPeriod
from kunde.service.feedback import FeedbackService
from kunde.service.tables import service_cases, service_feedback

WEEKS = 12


def _week(d: datetime) -> str:
    iso = d.isocalendar()
    return f"{iso.year % 100:02d}-W{iso.week:02d}"


def _hours(a: datetime, b: datetime) -> float:
    return (as_utc(b) - as_utc(a)).total_seconds() / 3600


MAX_REPORT_DAYS = 3650


async def service_report(kernel: Kernel, days: int = 90) -> dict[str, Any]:
    if not 1 <= days <= MAX_REPORT_DAYS:
        # Beyond this a period start is not a date at all (OverflowError), and a report
        # over more than ten years answers no question the console asks.
        raise InvalidPeriod(f"days must be between 1 and {MAX_REPORT_DAYS}")
    now = kernel.clock.now()
    since = now - timedelta(days=days)
    async with kernel.db.read() as conn:
        by_status: dict[str, int] = dict((await conn.execute(sa.select(
            service_cases.c.status, sa.func.count()).group_by(service_cases.c.status))).all())
        by_channel: dict[str, int] = dict((await conn.execute(sa.select(
            service_cases.c.channel, sa.func.count()).where(
                service_cases.c.opened_at >= since).group_by(service_cases.c.channel))).all())
        by_queue: dict[str, int] = dict((await conn.execute(sa.select(
            service_cases.c.queue, sa.func.count()).where(
                service_cases.c.status.in_(models.OPEN_STATUSES)).group_by(
                    service_cases.c.queue))).all())
        cases = (await conn.execute(sa.select(
            service_cases.c.opened_at, service_cases.c.first_responded_at,
            service_cases.c.first_response_due, service_cases.c.solved_at,
            service_cases.c.resolution_due).where(service_cases.c.opened_at >= since))).all()
        answers = (await conn.execute(sa.select(
            service_feedback.c.kind, service_feedback.c.score, service_feedback.c.answered_at)
            .where(service_feedback.c.answered_at >= since))).all()
        asked: dict[str, int] = dict((await conn.execute(sa.select(
            service_feedback.c.kind, sa.func.count()).where(
                service_feedback.c.sent_at >= since).group_by(service_feedback.c.kind))).all())
    first = [_hours(c.opened_at, c.first_responded_at) for c in cases if c.first_responded_at]
    first_ok = [c for c in cases if c.first_responded_at
                and as_utc(c.first_responded_at) <= as_utc(c.first_response_due)]
    solved = [_hours(c.opened_at, c.solved_at) for c in cases if c.solved_at]
    solved_ok = [c for c in cases if c.solved_at
                 and as_utc(c.solved_at) <= as_utc(c.resolution_due)]
    weeks = [_week(now - timedelta(weeks=WEEKS - 1 - i)) for i in range(WEEKS)]
    weekly: dict[str, dict[str, list[int]]] = {"csat": {}, "nps": {}, "review": {}}
    for kind, score, at in answers:
        weekly.setdefault(kind, {}).setdefault(_week(as_utc(at)), []).append(int(score))
    csat_series = [(w[-3:], models.csat(weekly["csat"].get(w, []))) for w in weeks]
    nps_series = [(w[-3:], models.nps(weekly["nps"].get(w, []))) for w in weeks]
    all_csat = [s for k, s, _ in answers if k == "csat"]
    all_nps = [s for k, s, _ in answers if k == "nps"]
    feedback = kernel.service(FeedbackService)
    return {
        "days": days,
        "by_status": {s: int(by_status.get(s, 0)) for s in models.STATUSES},
        "by_channel": {c: int(n) for c, n in sorted(by_channel.items())},
        "open_by_queue": {q: int(n) for q, n in sorted(by_queue.items())},
        "first_response_hours_median": round(median(first), 2) if first else None,
        "resolution_hours_median": round(median(solved), 2) if solved else None,
        "sla_first_response_pct": _pct(len(first_ok), len(first)),
        "sla_resolution_pct": _pct(len(solved_ok), len(solved)),
        "csat_pct": models.csat(all_csat), "csat_answers": len(all_csat),
        "nps": models.nps(all_nps), "nps_answers": len(all_nps),
        "surveys_sent": {k: int(v) for k, v in asked.items()},
        "csat_weekly": csat_series, "nps_weekly": nps_series,
        "csat_comments": await feedback.comments("csat"),
        "nps_comments": await feedback.comments("nps"),
    }


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def report_charts(r: dict[str, Any]) -> dict[str, str]:
    sla = [(label, v) for label, v in (("first response", r["sla_first_response_pct"]),
                                       ("resolution", r["sla_resolution_pct"])) if v is not None]
    times = [(label, v) for label, v in (("first response", r["first_response_hours_median"]),
                                         ("resolution", r["resolution_hours_median"]))
             if v is not None]
    return {
        "status": charts.bar_chart("Cases by status", list(r["by_status"].items())),
        "channel": charts.bar_chart(f"Cases by channel ({r['days']} days)",
                                    list(r["by_channel"].items())),
        "sla": charts.bar_chart("SLA compliance", sla, "%"),
        "times": charts.bar_chart("Median hours to…", times, " h"),
        "csat": charts.line_chart("CSAT by week (% satisfied)", r["csat_weekly"], 0, 100, "%"),
        "nps": charts.line_chart("NPS by week", r["nps_weekly"], -100, 100),
    }
