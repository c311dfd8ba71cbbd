"""``kunde loyalty apply programme.yaml [--dry-run]`` and ``kunde loyalty show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kunde.clikit import _settings, err, out, run


def register(app: typer.Typer) -> None:
    loyalty = typer.Typer(help="The loyalty programme.", no_args_is_help=True)
    app.add_typer(loyalty, name="loyalty")

    @loyalty.command("apply")
    def apply(
        file: Annotated[Path, typer.Argument(help="The programme as YAML (or JSON).",
                                             exists=True, dir_okay=False)],
        dry_run: Annotated[bool, typer.Option("--dry-run",
                                              help="Validate and print the diff only.")] = False,
    ) -> None:
        """Validate a programme file and make it the current programme (a new version)."""
        from kunde.loyalty.errors import InvalidProgramme
        from kunde.loyalty.service_programme import ProgrammeService, parse_programme

        try:
            programme = parse_programme(file.read_text(encoding="utf-8"))
        except InvalidProgramme as exc:
            for p in exc.extra.get("problems", []):
                where = f"{file}:{p['line']}" if p.get("line") else str(file)
                err.print(f"[red]{where}[/]: {p['path']}: {p['message']}")
            raise typer.Exit(1) from exc

        async def work(kernel: Any) -> dict[str, Any]:
            result: dict[str, Any] = await kernel.service(ProgrammeService).apply(
                programme, actor="cli", dry_run=dry_run)
            return result

        result = run(_settings(), work)
        for line in result["changes"] or ["(no changes)"]:
            colour = {"+": "green", "-": "red", "~": "yellow"}.get(line[:1], "white")
            out.print(f"[{colour}]{line}[/]", highlight=False, markup=True)
        for warning in result.get("warnings", []):
            out.print(f"[yellow]warning[/]: {warning}", highlight=False)
        if result["applied"]:
            out.print(f"[green]applied[/] programme version {result['version']}")
        elif dry_run:
            out.print(f"dry run: nothing changed (current version {result['version']})")
