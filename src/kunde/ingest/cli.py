"""``kunde import events FILE.jsonl``: load Spec messages from a file, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: Any) -> None:
    import_app = typer.Typer(help="Import data from files.", no_args_is_help=True)
    app.add_typer(import_app, name="import")

    @import_app.command("events")
    def import_events(
        file: Annotated[Path, typer.Argument(help="JSON Lines, one Segment Spec message each.",
                                             exists=True, dir_okay=False)],
        source: Annotated[str, typer.Option(help="Source name the events are recorded under.")]
        = "import",
        channel: Annotated[str, typer.Option(help="Channel of the source if it is created.")]
        = "server",
        batch_size: Annotated[int, typer.Option(help="Messages per transaction.")] = 500,
    ) -> None:
        """Import Spec messages (track, identify, page, ...); a re-run stores nothing twice."""
        from kunde.clikit import _settings, out, run
        from kunde.ingest.importer import import_file

        settings = _settings()
        stats = run(settings, lambda k: import_file(k, file, source, channel, batch_size))
        out.print(f"[green]stored {stats['stored']}[/], {stats['duplicates']} duplicates, "
                  f"{stats['suppressed']} about erased people, "
                  f"{stats['rejected']} rejected lines")
        for line in stats["errors"][:10]:
            out.print(f"  [yellow]{line}[/]")
