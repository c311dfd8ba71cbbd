"""Training every recommender on The Complete Journey: seconds and peak memory per model.

Each model trains in its own child process so its peak resident memory is its own.
Run: .venv/bin/python bench/personalisation_training.py   (fetches the data on first use)
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import time
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("KUNDE_DATA_DIR", "kunde-data")) / "cache"


def _one(model: str, queue: Any) -> None:
    from kunde.personalisation import datasets
    from kunde.personalisation.models import ease, itemknn, popularity
    from kunde.personalisation.models.train import TrainConfig, top_items

    data = datasets.load_complete_journey(CACHE)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cfg = TrainConfig()
    started = time.perf_counter()
    if model == "popularity":
        popularity.decayed_popularity(data, now_day=float(data.day.max()))
    elif model == "itemknn":
        itemknn.neighbours(data.matrix(), k=cfg.neighbours, min_rows=5)
    elif model == "bought_together":
        itemknn.neighbours(itemknn.basket_matrix(data), k=cfg.neighbours // 2, shrink=2.0,
                           min_rows=5)
    elif model == "ease":
        keep = top_items(data, cfg.ease_items)
        ease.fit(data.matrix(binary=True)[:, keep], l2=cfg.ease_l2)
    elif model == "als_implicit_64":
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            AlternatingLeastSquares(factors=64, iterations=15, random_state=1).fit(
                data.matrix(binary=True) * 20.0, show_progress=False)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"model": model, "seconds": round(seconds, 2),
               "peak_rss_mb": round(peak / 1024), "data_rss_mb": round(base / 1024)})


def main() -> dict[str, Any]:
    from kunde.personalisation import datasets

    data = datasets.load_complete_journey(CACHE)
    results = []
    ctx = mp.get_context("spawn")
    models = os.environ.get("BENCH_MODELS",
                            "popularity,itemknn,bought_together,ease,als_implicit_64")
    for model in models.split(","):
        queue = ctx.Queue()
        proc = ctx.Process(target=_one, args=(model, queue))
        proc.start()
        results.append(queue.get(timeout=900))
        proc.join()
    return {"dataset": "complete-journey", "interactions": int(data.user.size),
            "customers": data.n_users, "products": data.n_items, "models": results,
            "load_average": os.getloadavg()}


if __name__ == "__main__":
    print(json.dumps(main()))
