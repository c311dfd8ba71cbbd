"""Who is calling and what they may do. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PrincipalKind = Literal["api_key", "source", "staff", "customer"]

ROLES = ("admin", "agent", "marketer", "analyst")

# Permissions are "feature:action"; "feature:*" grants every action of a feature.
# Features add the permissions their routes require to the roles that need them.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"*"}),
    "agent": frozenset({
        "console:view", "profiles:read", "profiles:write", "consent:read", "consent:write",
        "commerce:read", "commerce:write", "fulfilment:read", "fulfilment:write",
        "loyalty:read", "loyalty:goodwill", "service:*", "messaging:read", "messaging:send",
        "personalisation:read", "privacy:read", "privacy:request",
    }),
    "marketer": frozenset({
        "console:view", "profiles:read", "segments:*", "loyalty:*", "personalisation:*",
        "messaging:*", "experiments:*", "commerce:read", "reports:read",
    }),
    "analyst": frozenset({
        "console:view", "reports:read", "segments:read", "loyalty:read",
        "personalisation:read", "commerce:read", "fulfilment:read", "service:read",
        "ops:read",
    }),
}

# Scopes an API key may be given (besides "*" for full access).
KNOWN_SCOPE_PREFIXES = (
    "ingest", "profiles", "consent", "segments", "commerce", "fulfilment", "loyalty",
    "personalisation", "experiments", "service", "messaging", "privacy", "reports", "ops",
    "admin", "console",
)


def grants(scopes: frozenset[str], permission: str) -> bool:
    """True when ``scopes`` include ``permission`` directly, by its feature wildcard or by ``*``."""
    if "*" in scopes or permission in scopes:
        return True
    feature, _, action = permission.partition(":")
    if f"{feature}:*" in scopes:
        return True
    # "feature:write" implies "feature:read".
    return action == "read" and f"{feature}:write" in scopes


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: str
    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    role: str | None = None
    customer_id: str | None = None
    channel: str | None = None

    def can(self, permission: str) -> bool:
        """``self`` is granted to every authenticated caller; the route then checks the object."""
        if permission == "self":
            return True
        if self.kind == "customer":
            return False
        return grants(self.scopes, permission)

    def may_access_customer(self, customer_id: str) -> bool:
        """Object-level check: a customer token reaches only its own customer."""
        if self.kind == "customer":
            return self.customer_id == customer_id
        return True


def validate_scopes(scopes: list[str]) -> list[str]:
    bad = [
        s for s in scopes
        if s != "*" and s.partition(":")[0] not in KNOWN_SCOPE_PREFIXES
    ]
    if bad:
        raise ValueError(f"unknown scopes {bad}; scopes look like 'profiles:read' or 'loyalty:*'")
    return sorted(set(scopes))
