"""What every ``kunde`` command shares: settings, consoles, and running work on a kernel.

Feature commands (``Feature.cli``) import these instead of re-implementing them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from kunde.core.errors import ConfigurationError, KundeError
from kunde.settings import Settings, load_settings

T = TypeVar("T")
out = Console()
err = Console(stderr=True)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigurationError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from exc


def run(settings: Settings, work: Callable[[Any], Awaitable[T]], *, migrate: bool = True) -> T:
    """Open a kernel, run ``work(kernel)``, close it; print domain errors for humans."""
    from kunde.kernel import close_kernel, open_kernel

    async def main() -> T:
        kernel = await open_kernel(settings, run_migrations=migrate)
        try:
            return await work(kernel)
        finally:
            await close_kernel(kernel)

    try:
        return asyncio.run(main())
    except (KundeError, ConfigurationError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
