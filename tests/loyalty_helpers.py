"""Shared helpers for the loyalty tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from kunde.app import create_app
from kunde.features import all_features
from kunde.kernel import Kernel

NEEDED = ("ops", "access", "web", "loyalty")


async def loyalty_client(kernel: Kernel) -> AsyncIterator[httpx.AsyncClient]:
    """The app (only the features loyalty needs) on the test's own event loop.

    Litestar's test client serves from another thread's loop, where the asyncpg
    connections of the test's kernel cannot be used.
    """
    app = create_app(kernel=kernel, features=[f for f in all_features() if f.name in NEEDED])
    app.state.kernel = kernel
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver.local") as c:
        yield c
