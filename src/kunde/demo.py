"""Demo data for ``make demo``: staff log-ins, a source, and every feature's own demo."""

from __future__ import annotations

import contextlib

from rich.progress import Progress

from kunde.core.errors import Conflict
from kunde.features import all_features
from kunde.kernel import Kernel

DEMO_LOGINS = [
    ("admin@kunde.demo", "kunde-demo-admin", "admin"),
    ("agent@kunde.demo", "kunde-demo-agent", "agent"),
    ("marketer@kunde.demo", "kunde-demo-marketer", "marketer"),
    ("analyst@kunde.demo", "kunde-demo-analyst", "analyst"),
]


async def load_demo(kernel: Kernel) -> list[str]:
    """Load demo data once; running it again changes nothing. Returns lines to print."""
    lines: list[str] = []
    for email, password, role in DEMO_LOGINS:
        with contextlib.suppress(Conflict):
            await kernel.access.create_user(email, role.title() + " (demo)", role, password)
    features = [f for f in all_features() if f.demo]
    with Progress(transient=True) as progress:
        task = progress.add_task("loading demo data", total=len(features))
        for f in features:
            progress.update(task, description=f"demo data: {f.name}")
            assert f.demo is not None
            await f.demo(kernel)
            progress.advance(task)
    return lines
