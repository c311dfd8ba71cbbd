"""The kernel: what every feature receives from the composition root.

Feature services are built lazily, once per kernel, by `Kernel.service(cls)`
where ``cls`` takes the kernel as its only constructor argument. Tests build a
kernel the same way the server does (`open_kernel`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kunde.access.service import AccessService
from kunde.core.clock import Clock, SystemClock
from kunde.core.errors import ConfigurationError
from kunde.ops.metrics import Metrics
from kunde.privacy.vault import Vault
from kunde.settings import Settings
from kunde.store import migrate
from kunde.store.database import Database
from kunde.store.durability import durability_problems
from kunde.store.eventlog import EventLog

T = TypeVar("T")
log = logging.getLogger("kunde")


@dataclass
class Kernel:
    settings: Settings
    db: Database
    log: EventLog
    vault: Vault
    access: AccessService
    metrics: Metrics
    clock: Clock = field(default_factory=SystemClock)
    _services: dict[type[Any], Any] = field(default_factory=dict)

    def service(self, cls: type[T]) -> T:
        inst = self._services.get(cls)
        if inst is None:
            inst = cls(self)  # type: ignore[call-arg]
            self._services[cls] = inst
        return inst


async def open_kernel(
    settings: Settings,
    *,
    run_migrations: bool = True,
    check_durability: bool = True,
    clock: Clock | None = None,
) -> Kernel:
    """Connect, migrate, check durability and load the vault's system keys."""
    db = Database(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        timeout=settings.db_timeout_seconds,
    )
    try:
        if check_durability:
            problems = await durability_problems(db)
            if problems and not settings.allow_unsafe_durability:
                raise ConfigurationError(
                    "the database may lose acknowledged writes: " + "; ".join(problems)
                    + ". Fix the database settings, or set KUNDE_ALLOW_UNSAFE_DURABILITY=true "
                    "to run anyway (never in production)."
                )
            for p in problems:
                log.warning("unsafe durability accepted by settings: %s", p)
        if run_migrations:
            await migrate.upgrade(db)
        elif not await migrate.is_current(db):
            raise ConfigurationError("the database schema is not current; run `kunde migrate`")
        vault = Vault(settings.master_key_bytes(), settings.previous_master_key_bytes())
        eventlog = EventLog(db, vault, settings.partitions)
        async with db.transaction() as uow:
            await vault.load_system_keys(uow)
    except BaseException:
        await db.dispose()
        raise
    return Kernel(
        settings=settings,
        db=db,
        log=eventlog,
        vault=vault,
        access=AccessService(db, settings.secret_key),
        metrics=Metrics(),
        clock=clock or SystemClock(),
    )


async def close_kernel(kernel: Kernel) -> None:
    await kernel.db.dispose()
