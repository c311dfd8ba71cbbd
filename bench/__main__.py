"""``make bench`` / ``python -m bench [NAME ...]``: run benchmarks, print a table, keep JSON.

Every ``bench/*.py`` with a ``main() -> dict`` is a benchmark. Each runs in its own
process (``python -m bench.<name>``; it prints one JSON object as its last line) so one
cannot disturb the next; the JSON goes to ``bench/results/<name>.json``. Scenarios that
take minutes (``LONG = True`` at module level, e.g. ``chaos``, ``black_friday``) run only
when named. ``--list`` shows what exists.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).parent
RESULTS = HERE / "results"
console = Console()


def discover() -> dict[str, bool]:
    """Benchmark name -> whether it is a long scenario."""
    found: dict[str, bool] = {}
    for path in sorted(HERE.glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = ast.parse(path.read_text())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        if "main" not in names:
            continue
        long_ = any(
            isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "LONG" for t in n.targets)
            and isinstance(n.value, ast.Constant) and n.value.value is True
            for n in tree.body
        )
        found[path.stem] = long_
    return found


def run_one(name: str, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), *sys.path])}
    try:
        done = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=HERE.parent,
                              env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-600:]}"}
    result.setdefault("seconds", round(time.monotonic() - started, 1))
    return result


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        rows: list[tuple[str, str]] = []
        for k, v in value.items():
            rows.extend(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return rows
    if isinstance(value, float):
        return [(prefix, f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}")]
    if isinstance(value, int | bool | str):
        return [(prefix, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool)
                 else str(value))]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all short ones)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    args = parser.parse_args()
    known = discover()
    if args.list:
        for name, long_ in known.items():
            console.print(f"{name}{'  (long: run by name)' if long_ else ''}")
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        console.print(f"[red]unknown benchmark(s): {', '.join(unknown)}[/]")
        return 2
    names = args.names or [n for n, long_ in known.items() if not long_]
    RESULTS.mkdir(exist_ok=True)
    table = Table("benchmark", "figure", "value", title="Kunde benchmarks")
    failed = 0
    for name in names:
        console.print(f"running [cyan]{name}[/] …")
        result = run_one(name, args.timeout)
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        failed += "error" in result
        for i, (key, value) in enumerate(flatten(result)):
            table.add_row(name if i == 0 else "", key, value)
        table.add_section()
    console.print(table)
    console.print(f"JSON in {RESULTS}/. Figures on a shared machine are noisy.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
