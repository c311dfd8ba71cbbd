"""CPU per request of the HTTP stack, in process: no server, no sockets.

``create_app`` on a temporary SQLite kernel behind httpx's ASGI transport; for
``GET /health/live`` and an authenticated ``GET /v1/loyalty/members/{id}/balance``
(bearer API key) it reports the best of ``ROUNDS`` runs of ``N`` requests in
``process_time`` per request, minus the same client against a bare ASGI app (the
client's own cost), and the Python function calls per request (a count that does not
depend on how busy the machine is).

    .venv/bin/python -m bench.http_stack_cpu      # N=1000 ROUNDS=3
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import logging
import os
import pstats
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from kunde.app import create_app
from kunde.kernel import close_kernel, open_kernel
from kunde.settings import load_settings

N = int(os.environ.get("N", "1000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
CUSTOMER = "0190a8c0-0000-7000-8000-000000000001"


async def _bare(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})


async def main() -> dict[str, Any]:
    data = Path(tempfile.mkdtemp())
    settings = load_settings(environ={}, env="test", data_dir=str(data),
                             database_url=f"sqlite:///{data}/kunde.db",
                             secret_key=secrets.token_hex(32),
                             run_consumers=False, log_json=False)
    kernel = await open_kernel(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_app(kernel=kernel)
    for f in app.state.features:
        if f.startup:
            await f.startup(kernel)
    _, key = await kernel.access.create_api_key("bench", ["*"])
    auth = {"authorization": f"Bearer {key}"}
    result: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://bench") as kunde, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=_bare),
                                  base_url="http://bench") as bare:
            cases = [("client_floor", bare, "/health/live", {}),
                     ("health_live", kunde, "/health/live", {}),
                     ("balance_bearer", kunde, f"/v1/loyalty/members/{CUSTOMER}/balance", auth)]
            best: dict[str, float] = {}
            for _ in range(ROUNDS):
                for name, client, path, headers in cases:
                    for _ in range(100):
                        (await client.get(path, headers=headers)).raise_for_status()
                    started = time.process_time()
                    for _ in range(N):
                        await client.get(path, headers=headers)
                    us = (time.process_time() - started) / N * 1e6
                    best[name] = min(best.get(name, us), us)
            for name, client, path, headers in cases:
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(200):
                    await client.get(path, headers=headers)
                profile.disable()
                calls = pstats.Stats(profile).total_calls / 200  # type: ignore[attr-defined]
                result[name] = {"cpu_us": round(best[name], 1),
                                "app_cpu_us": round(best[name] - best["client_floor"], 1),
                                "python_calls": round(calls, 1)}
    finally:
        for f in reversed(app.state.features):
            if f.shutdown:
                await f.shutdown(kernel)
        await close_kernel(kernel)
        shutil.rmtree(data, ignore_errors=True)
    result["setup"] = f"in process, httpx ASGITransport, best of {ROUNDS} x {N} requests"
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
