"""``kunde train``, ``kunde evaluate`` and ``kunde scores``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from kunde.clikit import _settings, err, out, run


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=err)


def train() -> None:
    """Train every recommender on the stored interactions and serve the new version."""
    from kunde.personalisation.service import RecommendationService

    settings = _settings()
    with _progress() as progress:
        task = progress.add_task("reading interactions", total=None)

        async def work(kernel: Any) -> dict[str, Any]:
            def step(name: str) -> None:
                progress.update(task, description=f"training {name}")
            summary: dict[str, Any] = await kernel.service(RecommendationService).train(step)
            return summary

        summary = run(settings, work)
    table = Table("model", "seconds")
    for name, secs in summary["seconds"].items():
        table.add_row(name, f"{secs:.2f}")
    out.print(table)
    out.print(f"[green]model {summary['version']}[/] from {summary['interactions']} "
              f"interactions of {summary['customers']} customers on {summary['products']} "
              "products; the server swaps to it within seconds")


def evaluate(
    dataset: Annotated[str, typer.Option(
        help="complete-journey, or a CSV/JSONL file of customer,sku,timestamp[,kind,basket]")]
    = "complete-journey",
    test_days: Annotated[float, typer.Option(help="Length of the test period.")] = 28.0,
    quick: Annotated[bool, typer.Option(help="Fewer model variants (a smoke run).")] = False,
    max_users: Annotated[int, typer.Option(help="Evaluate at most this many customers "
                                                "(0: all).")] = 0,
) -> None:
    """Offline evaluation on a temporal split: HR@10, NDCG@10, Recall@20, coverage, time."""
    from kunde.core.ids import new_id
    from kunde.personalisation import datasets, service_evaluation
    from kunde.personalisation.tables import evaluations

    settings = _settings()
    cache = settings.data_path / "cache"
    with _progress() as progress:
        task = progress.add_task(f"loading {dataset}", total=None)
        data = (datasets.load_complete_journey(cache) if dataset == "complete-journey"
                else datasets.load_interaction_file(Path(dataset)))
        eval_id = new_id()
        folder = settings.data_path / "evaluations" / eval_id
        report = service_evaluation.run(
            data, dataset=dataset if dataset == "complete-journey" else Path(dataset).name,
            test_days=test_days, out_dir=folder, quick=quick, max_users=max_users or None,
            step=lambda s: progress.update(task, description=f"evaluating {s}"))

    async def store(kernel: Any) -> None:
        async with kernel.db.transaction() as uow:
            await uow.execute(evaluations.insert().values(
                id=eval_id, created_at=kernel.clock.now(), dataset=report["dataset"],
                report=report))

    run(settings, store)
    table = Table("model", "HR@10", "NDCG@10", "Recall@20", "coverage", "train s")
    for m in report["models"]:
        table.add_row(str(m["model"]), f"{m['hr@10']:.4f}", f"{m['ndcg@10']:.4f}",
                      f"{m['recall@20']:.4f}", f"{m['coverage']:.4f}",
                      f"{m['train_seconds']:.1f}")
    out.print(table)
    out.print(f"{report['test_customers']} test customers; peak memory "
              f"{report['peak_memory_mb']} MB; report and chart in {folder}")


def scores() -> None:
    """Fit BG/NBD + Gamma-Gamma and store CLV, P(alive) and churn risk per customer."""
    from kunde.personalisation.service_scores import ScoresService

    settings = _settings()
    out.print(run(settings, lambda k: k.service(ScoresService).refresh()))


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("scores")(scores)
