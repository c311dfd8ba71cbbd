"""Experiments (A/B tests) and feature flags with cohorts, beta opt-in and tier access."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from kunde.core.errors import InvalidInput
from kunde.core.events import Event
from kunde.kernel import Kernel
from kunde.personalisation.errors import ExperimentNotFound, FlagNotFound
from kunde.personalisation.models.experiments import assign, flag_enabled, variant_result
from kunde.personalisation.tables import (
    experiments,
    exposures,
    flag_optins,
    flags,
    interactions,
    segment_members,
    tiers,
)
from kunde.store.quick import Query
from kunde.store.sql import insert_ignore, upsert

FLAGS_TTL = 5.0


def _flag_inputs_query() -> Query:
    """A customer's segments (``s``), tier (``t``) and beta opt-ins (``o``): one statement."""
    cid = sa.bindparam("cid", type_=sa.String())
    parts = [sa.select(sa.literal_column(f"'{kind}'", sa.String).label("kind"),
                       col.label("name")).where(table.c.customer_id == cid)
             for kind, table, col in (("s", segment_members, segment_members.c.segment),
                                      ("t", tiers, tiers.c.tier),
                                      ("o", flag_optins, flag_optins.c.flag))]
    return Query(sa.select(sa.union_all(*parts).subquery()))


FLAG_INPUTS = _flag_inputs_query()


class ExperimentService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._flags: tuple[float, list[Any]] = (0.0, [])

    # -- experiments ----------------------------------------------------------------
    async def create(self, key: str, name: str, variants: list[tuple[str, float]]) -> None:
        names = [v for v, _ in variants]
        try:
            if len(set(names)) != len(names) or any(w < 0 for _, w in variants):
                raise ValueError("variant names must be unique and weights not negative")
            assign("probe", key, variants)  # needs at least one positive weight
        except ValueError as exc:
            raise InvalidInput(str(exc), code="experiments.invalid_variants") from exc
        async with self.kernel.db.transaction() as uow:
            await uow.execute(upsert(uow.dialect, experiments, ["key"],
                                     ["name", "variants", "status"]),
                              {"key": key, "name": name, "status": "running",
                               "variants": [[v, w] for v, w in variants],
                               "created_at": self.kernel.clock.now()})

    async def _experiment(self, key: str) -> Any:
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(experiments).where(
                experiments.c.key == key))).first()
        if row is None:
            raise ExperimentNotFound(f"no experiment {key!r}")
        return row

    async def expose(self, key: str, customer_id: str) -> str:
        """The customer's variant; the first exposure is stored and emitted as an event."""
        exp = await self._experiment(key)
        variant = assign(customer_id, key, [(v, float(w)) for v, w in exp.variants])
        async with self.kernel.db.transaction() as uow:
            result = await uow.execute(insert_ignore(uow.dialect, exposures), {
                "experiment": key, "customer_id": customer_id, "variant": variant,
                "exposed_at": self.kernel.clock.now()})
            if result.rowcount == 1:
                uow.emit(Event.new("personalisation.exposure_logged",
                                   {"experiment": key, "variant": variant},
                                   subject_id=customer_id, source="system"))
        return variant

    async def results(self, key: str) -> dict[str, Any]:
        """Per variant: customers, conversion and revenue per customer after exposure, 95% CIs."""
        exp = await self._experiment(key)
        revenue = (sa.select(exposures.c.variant, exposures.c.customer_id,
                             sa.func.coalesce(sa.func.sum(interactions.c.value_minor), 0))
                   .select_from(exposures.outerjoin(interactions, sa.and_(
                       interactions.c.customer_id == exposures.c.customer_id,
                       interactions.c.kind == "purchase",
                       interactions.c.occurred_at >= exposures.c.exposed_at)))
                   .where(exposures.c.experiment == key)
                   .group_by(exposures.c.variant, exposures.c.customer_id))
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(revenue)).all()
        per: dict[str, list[float]] = {v: [] for v, _ in exp.variants}
        for variant, _, value in rows:
            per.setdefault(variant, []).append(float(value))
        return {"key": key, "name": exp.name, "status": exp.status,
                "variants": [variant_result(v, vals).__dict__ for v, vals in per.items()]}

    async def all(self) -> list[dict[str, Any]]:
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(sa.select(experiments).order_by(
                experiments.c.created_at))).all()
        return [dict(r._mapping) for r in rows]

    # -- flags ----------------------------------------------------------------------
    async def set_flag(self, key: str, *, enabled: bool, rollout_percent: float = 0.0,
                       beta: bool = False, cohorts: list[str] | None = None,
                       tiers: list[str] | None = None, description: str = "") -> None:
        row = {"key": key, "enabled": enabled, "rollout_percent": rollout_percent,
               "beta": beta, "cohorts": cohorts or [], "tiers": tiers or [],
               "description": description, "updated_at": self.kernel.clock.now()}
        async with self.kernel.db.transaction() as uow:
            await uow.execute(upsert(uow.dialect, flags, ["key"],
                                     [k for k in row if k != "key"]), row)
        self._flags = (0.0, [])

    async def _all_flags(self) -> list[Any]:
        at, cached = self._flags
        if time.monotonic() - at < FLAGS_TTL:
            return cached
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(sa.select(flags).order_by(flags.c.key))).all()
        self._flags = (time.monotonic(), list(rows))
        return list(rows)

    async def flags_for(self, customer_id: str | None) -> dict[str, bool]:
        """Every flag's state for a customer (or an anonymous visitor)."""
        rows = await self._all_flags()
        segments: set[str] = set()
        tier = None
        optins: set[str] = set()
        if customer_id:
            async with self.kernel.db.quick.session() as q:
                for r in await q.fetch(FLAG_INPUTS, cid=customer_id):
                    if r["kind"] == "s":
                        segments.add(r["name"])
                    elif r["kind"] == "t":
                        tier = str(r["name"])
                    else:
                        optins.add(r["name"])
        return {r.key: flag_enabled(
            customer_id, r.key, enabled=r.enabled, rollout_percent=r.rollout_percent,
            cohort_member=bool(segments & set(r.cohorts)), opted_in=r.key in optins,
            beta=r.beta, tier_granted=tier is not None and tier in r.tiers) for r in rows}

    async def opt_in(self, customer_id: str, key: str, join: bool = True) -> None:
        """A customer joins (or leaves) a beta programme."""
        rows = {r.key: r for r in await self._all_flags()}
        if key not in rows:
            self._flags = (0.0, [])
            rows = {r.key: r for r in await self._all_flags()}
        if key not in rows or not rows[key].beta:
            raise FlagNotFound(f"no beta programme {key!r}")
        async with self.kernel.db.transaction() as uow:
            if join:
                await uow.execute(insert_ignore(uow.dialect, flag_optins), {
                    "customer_id": customer_id, "flag": key,
                    "opted_in_at": self.kernel.clock.now()})
            else:
                await uow.execute(flag_optins.delete().where(
                    flag_optins.c.customer_id == customer_id, flag_optins.c.flag == key))
