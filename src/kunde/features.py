"""The feature registry: the one list of what the composition root wires in.

Each feature module exposes ``FEATURE = Feature(...)`` in its ``feature.py``;
adding a feature means adding it to `all_features` (and its tables module to
`kunde.store.migrate.TABLE_MODULES`). Nothing registers itself by import.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kunde.kernel import Kernel
    from kunde.store.consumers import Consumer
    from kunde.store.database import UnitOfWork
    from kunde.store.jobs import PeriodicJob


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    permission: str


@dataclass(frozen=True)
class Feature:
    name: str
    routes: Sequence[Any] = ()
    consumers: Callable[[Kernel], Sequence[Consumer]] | None = None
    jobs: Callable[[Kernel], Sequence[PeriodicJob]] | None = None
    # Loads demo data; must be idempotent (``make demo`` may run twice).
    demo: Callable[[Kernel], Awaitable[None]] | None = None
    nav: Sequence[NavItem] = ()
    startup: Callable[[Kernel], Awaitable[None]] | None = None
    shutdown: Callable[[Kernel], Awaitable[None]] | None = None
    permissions: Sequence[str] = field(default_factory=tuple)
    # Everything the feature holds about these customer ids (a survivor and the ids merged
    # into it), JSON-serialisable, for GDPR access and portability requests.
    export: Callable[[Kernel, Sequence[str]], Awaitable[dict[str, Any]]] | None = None
    # Deletes or pseudonymises the feature's rows about these customer ids inside the
    # erasure transaction; returns counts per kind of row for the receipt.
    erase: Callable[[Kernel, UnitOfWork, Sequence[str]], Awaitable[dict[str, int]]] | None = None
    # Adds the feature's commands to the ``kunde`` Typer app (e.g. ``kunde train``).
    cli: Callable[[Any], None] | None = None
    # Entries of the customer portal's navigation (permission "self").
    portal_nav: Sequence[NavItem] = ()
    # ASGI middleware factories (``app -> app``) wrapped around every request, in feature order.
    middleware: Sequence[Any] = ()
    # Retention: deletes the feature's rows of ``data_class`` older than ``cutoff`` except those
    # about the held customer ids; returns rows purged. Data classes: kunde/privacy/retention.py.
    purge: (
        Callable[[Kernel, UnitOfWork, str, datetime, frozenset[str]], Awaitable[int]] | None
    ) = None


def all_features() -> list[Feature]:
    from kunde.access.feature import FEATURE as access
    from kunde.commerce.feature import FEATURE as commerce
    from kunde.fulfilment.feature import FEATURE as fulfilment
    from kunde.ingest.feature import FEATURE as ingest
    from kunde.loyalty.feature import FEATURE as loyalty
    from kunde.messaging.feature import FEATURE as messaging
    from kunde.ops.feature import FEATURE as ops
    from kunde.personalisation.feature import FEATURE as personalisation
    from kunde.privacy.feature import FEATURE as privacy
    from kunde.profiles.feature import FEATURE as profiles
    from kunde.service.feature import FEATURE as service
    from kunde.web.feature import FEATURE as web

    # Order matters for demo data and navigation: foundations first.
    return [ops, access, web, privacy, profiles, ingest, messaging, commerce, fulfilment,
            loyalty, personalisation, service]
