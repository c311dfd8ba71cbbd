"""``kunde catalog import FILE``: load a CSV or JSON catalog with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kunde.clikit import _settings, err, out, run


def register(app: typer.Typer) -> None:
    catalog = typer.Typer(help="The product catalog.", no_args_is_help=True)
    app.add_typer(catalog, name="catalog")

    @catalog.command("import")
    def import_(
        file: Annotated[Path, typer.Argument(help="A .csv (one row per SKU) or .json file.",
                                             exists=True, dir_okay=False)],
    ) -> None:
        """Create or update products, variants, prices and stock from a file."""
        from kunde.commerce.importer import import_products, read_products
        from kunde.core.errors import KundeError

        settings = _settings()
        try:
            items = read_products(file)
        except KundeError as exc:
            err.print(f"[red]error:[/] {exc.detail}")
            raise typer.Exit(1) from exc

        async def work(kernel: Any) -> dict[str, int]:
            columns = (TextColumn("importing {task.description}"), BarColumn(),
                       MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=out) as progress:
                task = progress.add_task(file.name, total=len(items))
                return await import_products(kernel, items,
                                             lambda n: progress.advance(task, n))

        counts = run(settings, work)
        out.print(f"[green]imported[/] {counts['products']} products, "
                  f"{counts['variants']} variants, {counts['stock_rows']} stock rows")
