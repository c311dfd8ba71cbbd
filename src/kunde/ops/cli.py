"""``kunde backup`` and ``kunde restore``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kunde.clikit import _settings, err, out, run


def register(app: typer.Typer) -> None:
    @app.command("backup")
    def backup_command(
        file: Annotated[Path, typer.Argument(help="Where to write the backup.")],
    ) -> None:
        """Take an online, consistent backup while Kunde keeps serving."""
        from kunde.core.errors import ConfigurationError, KundeError
        from kunde.ops.backup import backup

        settings = _settings()
        try:
            info = backup(settings, file)
        except (ConfigurationError, KundeError) as exc:
            err.print(f"[red]backup failed:[/] {exc}")
            raise typer.Exit(1) from exc
        out.print(f"backup of {info.backend} written to {info.path}: {info.bytes:,} bytes, "
                  f"events up to position {info.position}, {info.seconds:.1f} s")

    @app.command("restore")
    def restore_command(
        file: Annotated[Path, typer.Argument(help="A file written by `kunde backup`.")],
        yes: Annotated[bool, typer.Option(
            "--yes", help="Confirm: the database's current contents are replaced.")] = False,
    ) -> None:
        """Restore a backup (stop servers and workers first), then re-apply later erasures."""
        from kunde.core.errors import ConfigurationError, KundeError
        from kunde.ops.backup import after_restore, restore_files

        if not yes:
            err.print("[red]restore replaces the database's contents; stop every server and "
                      "worker, then run again with --yes[/]")
            raise typer.Exit(2)
        settings = _settings()
        try:
            restore_files(settings, file)
        except (ConfigurationError, KundeError) as exc:
            err.print(f"[red]restore failed:[/] {exc}")
            raise typer.Exit(1) from exc

        async def work(kernel: Any) -> int:
            return await after_restore(kernel)

        again = run(settings, work)
        out.print(f"restored {file}; schema current; erasures re-applied: {again}")
