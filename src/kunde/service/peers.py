"""The other features' services, as service uses them (interfaces from the team contracts).

Service sits on top of every other feature, and a deployment may run without some of
them (or before one ships). `peer` returns the owning feature's service, or None when it
is not installed: callers then show "not available" — never made-up data.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from kunde.core.errors import KundeError
from kunde.kernel import Kernel

log = logging.getLogger("kunde.service")

PEERS: dict[str, tuple[str, str]] = {
    "profiles": ("kunde.profiles.service", "ProfileService"),
    "consent": ("kunde.profiles.service_consent", "ConsentService"),
    "orders": ("kunde.commerce.service_orders", "OrderService"),
    "messaging": ("kunde.messaging.service", "MessagingService"),
    "loyalty": ("kunde.loyalty.service", "LoyaltyService"),
    "scores": ("kunde.personalisation.service_scores", "ScoresService"),
    "fulfilment": ("kunde.fulfilment.service", "FulfilmentService"),
    "returns": ("kunde.fulfilment.service_returns", "ReturnService"),
}


def peer(kernel: Kernel, name: str) -> Any | None:
    """The named peer service bound to this kernel, or None when that feature is absent."""
    module_name, cls_name = PEERS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    cls = getattr(module, cls_name, None)
    if cls is None:
        return None
    return kernel.service(cls)


def has(service: Any | None, method: str) -> bool:
    return service is not None and callable(getattr(service, method, None))


async def resolve_email(kernel: Kernel, email: str) -> str | None:
    """The live customer owning this email address, or None (unknown, or profiles absent)."""
    profiles = peer(kernel, "profiles")
    if not has(profiles, "resolve"):
        return None
    assert profiles is not None
    cid = await profiles.resolve("email", email)
    if cid and has(profiles, "canonical_id"):
        cid = await profiles.canonical_id(cid)
    return str(cid) if cid else None


async def customer_emails(kernel: Kernel, customer_id: str) -> set[str]:
    """Every email address profiles knows for the customer (empty when profiles is absent)."""
    found: set[str] = set()
    profile = await profile_of(kernel, customer_id)
    if profile and isinstance(profile.get("email"), str):
        found.add(profile["email"])
    profiles = peer(kernel, "profiles")
    if has(profiles, "identities"):
        assert profiles is not None
        try:
            linked = await profiles.identities(customer_id)
        except Exception as exc:  # an unknown or erased customer has no identities
            log.info("identities of %s not readable: %r", customer_id, exc)
            linked = []
        found.update(str(i["value"]) for i in linked
                     if isinstance(i, dict) and i.get("kind") == "email" and i.get("value"))
    return found


async def profile_of(kernel: Kernel, customer_id: str) -> dict[str, Any] | None:
    profiles = peer(kernel, "profiles")
    if not has(profiles, "get_profile"):
        return None
    assert profiles is not None
    try:
        result = await profiles.get_profile(customer_id)
    except Exception as exc:  # a profile that cannot be read is "not available" here
        log.info("profile of %s not readable: %r", customer_id, exc)
        return None
    return dict(result) if result else None


async def enqueue_message(kernel: Kernel, uow: Any, *, customer_id: str, template: str,
                          context: dict[str, Any], purpose: str, idempotency_key: str,
                          locale: str | None = None, channel: str = "email") -> str:
    """Send through messaging inside ``uow``; returns queued:<id> | suppressed | unavailable."""
    messaging = peer(kernel, "messaging")
    if not has(messaging, "enqueue"):
        return "unavailable"
    assert messaging is not None
    try:
        message_id = await messaging.enqueue(
            uow, customer_id=customer_id, template=template, context=context, channel=channel,
            purpose=purpose, locale=locale, idempotency_key=idempotency_key)
    except KundeError as exc:
        # Messaging checks the template before it writes anything, so the caller's
        # transaction is intact; the thread records why nothing went out.
        if exc.code == "messaging.unknown_template":
            return "unavailable:no_template"
        raise
    return f"queued:{message_id}" if message_id else "suppressed"
