"""Calls into other features' published services (team contracts).

Messaging depends on profiles (consent, addresses, locale) and commerce (order
numbers) only through these interfaces, never through their tables.
"""

from __future__ import annotations

import logging
from typing import Any

from kunde.commerce.service_orders import OrderService
from kunde.kernel import Kernel
from kunde.profiles.service import ProfileService
from kunde.profiles.service_consent import ConsentService

log = logging.getLogger("kunde.messaging")


async def consent_allowed(kernel: Kernel, customer_id: str, purpose: str) -> bool:
    return await kernel.service(ConsentService).is_allowed(customer_id, purpose)


async def profile_of(kernel: Kernel, customer_id: str) -> dict[str, Any]:
    """The profile, or {} for an unknown or erased customer (who then gets no mail)."""
    try:
        return dict(await kernel.service(ProfileService).get_profile(customer_id))
    except Exception as exc:
        log.info("no profile for %s: %r", customer_id, exc)
        return {}


async def order_of(kernel: Kernel, order_id: str) -> dict[str, Any]:
    try:
        return dict(await kernel.service(OrderService).get_order(order_id))
    except Exception as exc:
        log.info("order %s not readable: %r", order_id, exc)
        return {}
