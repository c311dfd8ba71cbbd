"""HTTP overhead of the Kunde stack: GET /health/live vs a bare ASGI hello-world.

Both run on granian (one worker, same options) in this run and are loaded by wrk in
turn, twice each, interleaved (the best of the two counts: the machine may be shared).
Target: Kunde reaches at least 60 % of the bare server's requests/s.

    python -m bench.http_overhead        # BENCH_SECONDS=10 by default
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from bench._servers import (
    ROOT,
    free_port,
    kunde_env,
    start_kunde,
    stop,
    temp_dir,
    wait_http,
    wrk,
)

BODY = b'{"status":"ok"}'


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ceiling: the least an ASGI application can do for a GET."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def litestar_app() -> Any:
    """The framework alone: one Litestar route, no middleware (where the gap comes from)."""
    from litestar import Litestar, get

    @get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([live])


def _start_bare(port: int, target: str = "hello_app", factory: bool = False
                ) -> subprocess.Popen[bytes]:
    code = (f"from granian import Granian; Granian('bench.http_overhead:{target}', "
            f"address='127.0.0.1', port={port}, interface='asgi', workers=1, "
            f"factory={factory}, log_enabled=False).serve()")
    # Its own process group, like `start_kunde`: `stop` signals the group, and granian's
    # worker would otherwise outlive a signal sent to a group that does not exist.
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def main() -> dict[str, Any]:
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    bare_port, kunde_port, lite_port = free_port(), free_port(), free_port()
    bare = _start_bare(bare_port)
    lite = _start_bare(lite_port, "litestar_app", factory=True)
    kunde = start_kunde(kunde_port, kunde_env(temp_dir("kunde-bench-http-"),
                                              KUNDE_RUN_CONSUMERS="false"))
    try:
        bare_url = f"http://127.0.0.1:{bare_port}/"
        kunde_url = f"http://127.0.0.1:{kunde_port}/health/live"
        lite_url = f"http://127.0.0.1:{lite_port}/health/live"
        wait_http(bare_url, bare)
        wait_http(lite_url, lite)
        wait_http(kunde_url, kunde)
        wrk(bare_url, seconds=2)  # warm-up
        wrk(kunde_url, seconds=2)
        runs: dict[str, list[dict[str, float]]] = {"bare": [], "kunde": [], "litestar": []}
        for _ in range(2):
            runs["bare"].append(wrk(bare_url, seconds=seconds))
            runs["kunde"].append(wrk(kunde_url, seconds=seconds))
            runs["litestar"].append(wrk(lite_url, seconds=seconds))
    finally:
        stop(bare)
        stop(kunde)
        stop(lite)
    best = {k: max(v, key=lambda r: r["req_per_s"]) for k, v in runs.items()}
    ratio = best["kunde"]["req_per_s"] / best["bare"]["req_per_s"]
    return {
        "bare_asgi": best["bare"], "kunde_health_live": best["kunde"],
        "litestar_alone": best["litestar"],
        "ratio": round(ratio, 3), "target": 0.6, "met": ratio >= 0.6,
        "litestar_alone_ratio": round(
            best["litestar"]["req_per_s"] / best["bare"]["req_per_s"], 3),
        "setup": f"granian 1 worker each; wrk -t1 -c32 -d{seconds}s, best of 2",
    }


if __name__ == "__main__":
    print(json.dumps(main()))
