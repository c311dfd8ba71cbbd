"""Shared set-up of the fulfilment benchmarks: a temp database and a real `kunde serve`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

SECRET = "whsec_" + "YmVuY2gtY2Fycmllci1zZWNyZXQtMTIzNDU2Nzg="


def temp_settings(tag: str, **overrides: Any) -> tuple[Path, str, Any]:
    from kunde.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix=f"kunde-bench-{tag}-"))
    url = os.environ.get("KUNDE_BENCH_DATABASE_URL", f"sqlite+aiosqlite:///{tmp / 'k.db'}")
    settings = load_settings(environ={}, env="test", data_dir=str(tmp), database_url=url,
                             run_consumers=False, log_json=False, log_level="WARNING",
                             **overrides)
    return tmp, url, settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, url: str, tmp: Path, *, consumers: bool = True) -> None:
        self.port = free_port()
        env = {**os.environ, "KUNDE_ENV": "test", "KUNDE_DATA_DIR": str(tmp),
               "KUNDE_DATABASE_URL": url, "KUNDE_LOG_JSON": "false",
               "KUNDE_LOG_LEVEL": "WARNING",
               "KUNDE_RUN_CONSUMERS": "true" if consumers else "false"}
        self.log = (tmp / "server.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "kunde", "serve", "--port",
                                      str(self.port)], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
