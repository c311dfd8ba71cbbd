"""CLV and churn scores: BG/NBD + Gamma-Gamma fitted on the stored purchase histories.

`refresh()` runs on a schedule and stores one row per customer; when a customer's scores
changed noticeably it writes the profile traits ``clv``, ``p_alive`` and ``churn_risk`` through
`ProfileService.set_traits`, and when the churn-risk band changed it emits
``personalisation.scores_computed``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import sqlalchemy as sa

from kunde.core.events import Event
from kunde.kernel import Kernel
from kunde.personalisation.models import clv
from kunde.personalisation.service import day_of
from kunde.personalisation.tables import erased, interactions, scores
from kunde.store.sql import upsert

HORIZON_WEEKS = 52.0


class ScoresService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.last_fit: dict[str, Any] | None = None

    async def scores(self, customer_id: str) -> dict[str, Any] | None:
        """``{clv, p_alive, churn_risk, ...}`` for a customer, or None before any scoring."""
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(scores).where(
                scores.c.customer_id == customer_id))).first()
        if row is None:
            return None
        return {"clv": row.clv_minor, "currency": row.currency, "p_alive": row.p_alive,
                "expected_purchases": row.expected_purchases, "churn_risk": row.churn_risk,
                "computed_at": row.computed_at.isoformat()}

    async def _purchases(self) -> tuple[list[Any], str]:  # rows, the most common currency
        q = (sa.select(interactions.c.customer_id, interactions.c.occurred_at,
                       interactions.c.value_minor, interactions.c.currency)
             .where(interactions.c.kind == "purchase",
                    interactions.c.customer_id.not_in(sa.select(erased.c.customer_id))))
        async with self.kernel.db.read() as conn:
            rows = list((await conn.execute(q)).all())
        currencies = [r[3] for r in rows if r[3]]
        currency = max(set(currencies), key=currencies.count) if currencies else "EUR"
        return rows, currency

    async def refresh(self) -> str:
        """Fit both models on every purchase history and store each customer's scores."""
        rows, currency = await self._purchases()
        if not rows:
            return "no purchases yet"
        now = self.kernel.clock.now()
        cust = np.asarray([r[0] for r in rows], dtype=np.str_)
        day = np.asarray([day_of(r[1]) for r in rows])
        value = np.asarray([float(r[2]) for r in rows])
        try:
            result = await asyncio.to_thread(_fit_and_score, cust, day, value, day_of(now))
        except clv.FitError as exc:
            return f"skipped: {exc}"
        ids, p_alive, expected, value_pc, fit = result
        self.last_fit = fit
        async with self.kernel.db.read() as conn:
            before = {r[0]: (r[1], int(r[2])) for r in (await conn.execute(sa.select(
                scores.c.customer_id, scores.c.churn_risk, scores.c.clv_minor))).all()}
        out: list[dict[str, Any]] = []
        for i, cid in enumerate(ids):
            band = clv.churn_band(float(p_alive[i]))
            out.append({"customer_id": str(cid), "clv_minor": round(float(value_pc[i])),
                        "currency": currency, "p_alive": float(p_alive[i]),
                        "expected_purchases": float(expected[i]), "churn_risk": band,
                        "computed_at": now})
        async with self.kernel.db.transaction() as uow:
            await uow.execute(upsert(uow.dialect, scores, ["customer_id"],
                                     ["clv_minor", "currency", "p_alive", "expected_purchases",
                                      "churn_risk", "computed_at"]), out)
            traits = _traits_port(self.kernel)
            for row in out:
                old = before.get(row["customer_id"])
                if old is not None and old[0] == row["churn_risk"] and \
                        abs(old[1] - row["clv_minor"]) <= 0.05 * max(abs(old[1]), 1):
                    continue  # nothing a reader of the traits would notice
                if traits is not None:
                    await traits.set_traits(uow, row["customer_id"], {
                        "clv": row["clv_minor"], "p_alive": round(row["p_alive"], 4),
                        "churn_risk": row["churn_risk"]}, source="personalisation",
                        observed_at=now)
                if old is None or old[0] != row["churn_risk"]:
                    uow.emit(Event.new("personalisation.scores_computed", {
                        "clv_minor": row["clv_minor"], "currency": currency,
                        "p_alive": round(row["p_alive"], 4), "churn_risk": row["churn_risk"],
                    }, subject_id=row["customer_id"], source="system"))
        return f"scored {len(out)} customers"

    async def distribution(self) -> dict[str, Any]:
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(sa.select(scores.c.clv_minor, scores.c.churn_risk))).all()
        values = [r[0] for r in rows]
        bands: dict[str, int] = {}
        for r in rows:
            bands[r[1]] = bands.get(r[1], 0) + 1
        return {"values": values, "bands": bands, "fit": self.last_fit}

    async def at_risk(self, limit: int = 50) -> list[dict[str, Any]]:
        """Most valuable customers in the high and medium churn-risk bands."""
        q = (sa.select(scores).where(scores.c.churn_risk.in_(["high", "medium"]))
             .order_by(scores.c.clv_minor.desc()).limit(limit))
        async with self.kernel.db.read() as conn:
            return [dict(r._mapping) for r in (await conn.execute(q)).all()]


def _traits_port(kernel: Kernel) -> Any | None:
    """Profiles' trait writer (computed traits clv, p_alive, churn_risk), when installed."""
    try:
        from kunde.profiles.service import ProfileService
    except ImportError:
        return None
    return kernel.service(ProfileService)


def _fit_and_score(cust: Any, day: Any, value: Any, end_day: float) -> tuple[Any, ...]:
    s = clv.summarise(cust, day, value, end_day=end_day)
    bg = clv.fit_bgnbd(s["x"], s["t_x"], s["T"])
    try:
        gg: clv.GammaGamma | None = clv.fit_gamma_gamma(s["x"], s["m"])
    except clv.FitError:
        gg = None
    p_alive = bg.p_alive(s["x"], s["t_x"], s["T"])
    expected = bg.expected_purchases(HORIZON_WEEKS, s["x"], s["t_x"], s["T"])
    # Mean order value: Gamma-Gamma where it could be fitted, else the customer's own mean.
    first_mean = np.where(s["m"] > 0, s["m"], np.nanmean(value))
    spend = gg.expected_spend(s["x"], s["m"]) if gg else first_mean
    spend = np.where(np.isfinite(spend), spend, first_mean)
    # Degenerate fits on tiny data can leave a non-finite value: count those as unknown (0).
    expected = np.nan_to_num(expected, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0)
    p_alive = np.nan_to_num(p_alive, nan=0.5).clip(0.0, 1.0)
    fit = {"bgnbd": {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b,
                     "log_likelihood": bg.log_likelihood},
           "gamma_gamma": ({"p": gg.p, "q": gg.q, "gamma": gg.gamma} if gg else None),
           "customers": int(s["x"].size)}
    return s["customer"], p_alive, expected, expected * spend, fit
