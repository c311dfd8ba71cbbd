"""The installation's fulfilment policy and carrier webhook secrets, cached briefly."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import sqlalchemy as sa

from kunde.commerce.allocation import SHIPPING_RULES
from kunde.core.errors import InvalidInput
from kunde.fulfilment.carriers import ADAPTERS
from kunde.fulfilment.errors import UnknownCarrier
from kunde.fulfilment.models import RETURN_REASONS, Policy
from kunde.fulfilment.tables import fulfilment_config
from kunde.kernel import Kernel
from kunde.store.sql import upsert

TTL = 5.0
TRIGGERS = ("first_scan", "receipt", "inspection")


def policy_from(value: dict[str, Any]) -> Policy:
    fields = {f.name for f in dataclasses.fields(Policy)}
    clean: dict[str, Any] = {}
    for k, v in value.items():
        if k not in fields:
            raise InvalidInput(f"unknown policy field {k!r}", code="fulfilment.bad_policy")
        clean[k] = tuple(v) if isinstance(v, list) else v
    try:
        policy = Policy(**{**dataclasses.asdict(Policy()), **clean})
    except TypeError as exc:
        raise InvalidInput(str(exc), code="fulfilment.bad_policy") from exc
    if policy.refund_trigger not in TRIGGERS:
        raise InvalidInput(f"refund_trigger must be one of {', '.join(TRIGGERS)}",
                           code="fulfilment.bad_policy")
    if policy.refund_method not in ("original", "store_credit"):
        raise InvalidInput("refund_method must be original or store_credit",
                           code="fulfilment.bad_policy")
    if policy.refund_shipping not in SHIPPING_RULES:
        raise InvalidInput(f"refund_shipping must be one of {', '.join(SHIPPING_RULES)}",
                           code="fulfilment.bad_policy")
    if not set(policy.reasons_needing_review) <= set(RETURN_REASONS):
        raise InvalidInput("unknown return reason in reasons_needing_review",
                           code="fulfilment.bad_policy")
    if policy.refund_sla_hours <= 0 or policy.return_window_days < 0 or \
            policy.goodwill_points < 0:
        raise InvalidInput("hours, days and points must not be negative",
                           code="fulfilment.bad_policy")
    return policy


class FulfilmentConfig:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._cache: dict[str, tuple[float, Any]] = {}

    async def _get(self, key: str) -> Any:
        hit = self._cache.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        async with self.kernel.db.read() as conn:
            value = (await conn.execute(sa.select(fulfilment_config.c.value).where(
                fulfilment_config.c.key == key))).scalar_one_or_none()
        self._cache[key] = (time.monotonic() + TTL, value)
        return value

    async def _put(self, key: str, value: Any) -> None:
        async with self.kernel.db.transaction() as uow:
            await uow.execute(upsert(uow.dialect, fulfilment_config, ["key"],
                                     ["value", "updated_at"]),
                              {"key": key, "value": value, "updated_at": self.kernel.clock.now()})
        self._cache.pop(key, None)

    async def policy(self) -> Policy:
        return policy_from(await self._get("policy") or {})

    async def set_policy(self, changes: dict[str, Any]) -> Policy:
        current = dataclasses.asdict(await self.policy())
        policy = policy_from({**current, **changes})
        await self._put("policy", dataclasses.asdict(policy))
        return policy

    async def carrier_secrets(self, carrier: str) -> list[str]:
        if carrier not in ADAPTERS:
            raise UnknownCarrier(f"unknown carrier {carrier!r}")
        value = await self._get(f"carrier:{carrier}")
        return list((value or {}).get("secrets", []))

    async def add_carrier_secret(self, carrier: str, secret: str) -> None:
        """Add a webhook secret; the previous one stays valid (rotation), older ones go."""
        if len(secret) < 16:
            raise InvalidInput("a webhook secret needs at least 16 characters",
                               code="fulfilment.weak_secret")
        current = await self.carrier_secrets(carrier)
        secrets = [secret, *[s for s in current if s != secret]][:2]
        await self._put(f"carrier:{carrier}", {"secrets": secrets})
