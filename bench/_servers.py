"""Helpers the benchmarks share: free ports, servers in subprocesses, wrk, PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).parent.parent
PG_URL = os.environ.get("KUNDE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def kunde_env(data_dir: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "KUNDE_ENV": "dev", "KUNDE_DATA_DIR": data_dir,
            "KUNDE_LOG_JSON": "false", "KUNDE_LOG_LEVEL": "WARNING",
            # One load generator on one address: per-client limits would measure themselves.
            "KUNDE_RATE_LIMIT_PER_IP": "10000000", "KUNDE_RATE_LIMIT_PER_KEY": "10000000",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path]), **extra}


def start_kunde(port: int, env: dict[str, str], *, log: Path | None = None
                ) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log else subprocess.DEVNULL
    # Its own process group: granian's worker processes die with it (see `kill_group`).
    return subprocess.Popen([sys.executable, "-m", "kunde", "serve", "--port", str(port)],
                            env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal a process and every process it started (a crash takes them all)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # not a group leader: signal the process itself
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    proc.wait()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            kill_group(proc)


def require_wrk() -> None:
    """Stop with what to do when the load generator is missing."""
    if not Path("/usr/bin/wrk").exists():
        raise SystemExit("wrk is not installed: apt-get install wrk")


def wrk(url: str, *, seconds: int, connections: int = 32, threads: int = 1) -> dict[str, float]:
    """Closed-loop load with wrk; requests/s and latency percentiles in milliseconds."""
    require_wrk()
    done = subprocess.run(
        ["/usr/bin/wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True,
    )
    text = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    out = {"req_per_s": rps}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)$", text, re.M)
        if m:
            value = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            out[f"p{pct}_ms"] = round(value, 3)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return out


def temp_dir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix)
