"""`kunde evaluate`: every built-in model and the baselines on a temporal split, with a chart.

The default model (EASE with the shipped settings) is evaluated beside a small grid of its
regularisation, ItemKNN and popularity, and `implicit`'s ALS with tuned factors when that
library is installed.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from kunde.personalisation import charts
from kunde.personalisation.models import evaluation as ev
from kunde.personalisation.models.data import Interactions
from kunde.personalisation.models.train import TrainConfig

Step = Callable[[str], None]


def candidates(split: ev.Split, *, quick: bool = False) -> list[tuple[str, Callable[[], Any]]]:
    d = TrainConfig()
    out: list[tuple[str, Callable[[], Any]]] = [
        ("popularity", partial(ev.popularity_fit, split)),
        ("itemknn", partial(ev.itemknn_fit, split)),
        (f"ease (default, λ={d.ease_l2:g}, {d.ease_items} items)",
         partial(ev.ease_fit, split, d.ease_l2, d.ease_items)),
    ]
    if not quick:
        for l2 in (d.ease_l2 / 3, d.ease_l2 * 3):
            out.append((f"ease λ={l2:g}", partial(ev.ease_fit, split, l2, d.ease_items)))
    try:
        import implicit  # noqa: F401
    except ImportError:
        return out
    for factors in ((64,) if quick else (32, 64, 128, 256)):
        out.append((f"als (implicit, {factors} factors)",
                    partial(ev.als_fit, split, factors)))
    return out


def run(data: Interactions, *, dataset: str, test_days: float, out_dir: Path,
        step: Step | None = None, quick: bool = False, max_users: int | None = None
        ) -> dict[str, Any]:
    """Evaluate and write ``report.json`` and ``chart.svg`` to ``out_dir``; returns the report."""
    say = step or (lambda _s: None)
    started = time.perf_counter()
    say("temporal split")
    split = ev.temporal_split(data, test_days=test_days, max_users=max_users)
    if split.test_users.size == 0:
        raise ValueError("no customer bought anything new in the test period; "
                         "use a longer --test-days or more data")
    rows = []
    for name, fit in candidates(split, quick=quick):
        say(name)
        rows.append(ev.evaluate_scorer(name, fit, split))
    report = {
        "dataset": dataset, "interactions": int(data.user.size), "customers": data.n_users,
        "products": data.n_items, "test_days": test_days, "test_customers":
        int(split.test_users.size), "models": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "chart.svg").write_text(chart(report))
    return report


def chart(report: dict[str, Any]) -> str:
    models = report["models"]
    labels = [str(m["model"]).split(" (")[0].replace("ease λ=", "λ=") for m in models]
    return charts.bars(
        f"{report['dataset']}: ranking quality on the last {report['test_days']:g} days",
        labels, {k: [float(m[k]) for m in models] for k in ("ndcg@10", "hr@10", "recall@20")},
        width=max(720, 90 * len(labels)))
