"""An open-loop load generator on raw asyncio streams (cheap enough to out-pace one server).

Arrivals follow a schedule regardless of answers (so overload shows as queueing and
shedding, not as a politely slowing client). Each request takes a keep-alive connection
from a bounded pool; latency is measured from the scheduled arrival time.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

CLASSES = ("critical", "interactive", "background")


@dataclass
class Request:
    cls: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    on_done: Callable[[int, bytes], None] | None = None


@dataclass
class Outcome:
    at: float
    cls: str
    status: int  # 0: connection failed or timed out
    latency: float


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, req: Request, timeout: float) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), timeout)
        assert self.reader is not None
        head = [f"{req.method} {req.path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(req.body)}"]
        if req.body:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in req.headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + req.body)
        try:
            return await asyncio.wait_for(self._response(), timeout)
        except BaseException:
            self.close()
            raise

    async def _response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunks.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(c[:-2] for c in chunks)
        else:
            body = b""
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = self.reader = None


class Load:
    """Fire requests from ``make(i)`` at ``rate`` per second for ``seconds``."""

    def __init__(self, host: str, port: int, *, connections: int = 256,
                 timeout: float = 10.0) -> None:
        self.pool: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(connections):
            self.pool.put_nowait(Connection(host, port))
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def _one(self, req: Request, scheduled: float) -> None:
        conn = await self.pool.get()
        status, body = 0, b""
        try:
            status, body = await conn.request(req, self.timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            status = 0
        finally:
            self.pool.put_nowait(conn)
        self.outcomes.append(Outcome(scheduled, req.cls, status, time.perf_counter() - scheduled))
        if req.on_done is not None:
            req.on_done(status, body)

    async def run(self, make: Callable[[int], Request], rate: float, seconds: float) -> None:
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._one(make(i), scheduled))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 2)


def summarise(outcomes: list[Outcome], since: float, until: float) -> dict[str, Any]:
    """Per class: sent, success and shed rates, admitted and shed p99 (ms), goodput."""
    span = max(until - since, 1e-9)
    out: dict[str, Any] = {}
    for cls in CLASSES:
        mine = [o for o in outcomes if o.cls == cls and since <= o.at < until]
        if not mine:
            continue
        ok = [o for o in mine if 200 <= o.status < 300]
        shed = [o for o in mine if o.status in (429, 503)]
        out[cls] = {
            "sent": len(mine),
            "success_rate": round(len(ok) / len(mine), 4),
            "shed_rate": round(len(shed) / len(mine), 4),
            "failed": len(mine) - len(ok) - len(shed),
            "admitted_p99_ms": pct([o.latency for o in ok], 0.99),
            "admitted_p50_ms": pct([o.latency for o in ok], 0.50),
            "shed_p99_ms": pct([o.latency for o in shed], 0.99),
            "goodput_per_s": round(len(ok) / span, 1),
        }
    return out


def dumps(value: Any) -> bytes:
    return msgspec.json.encode(value)


def open_loop(port: int, paths: list[str], headers: dict[str, str], *, rate: float,
              seconds: float, connections: int = 32) -> dict[str, Any]:
    """GETs of random ``paths`` at a fixed ``rate`` (open loop): the latency a target of
    the form "p99 <= X ms at R requests/s" speaks of, queueing included."""
    return asyncio.run(open_loop_async(port, paths, headers, rate=rate, seconds=seconds,
                                       connections=connections))


async def open_loop_async(port: int, paths: list[str], headers: dict[str, str], *,
                          rate: float, seconds: float, connections: int = 32
                          ) -> dict[str, Any]:
    """`open_loop` inside a running event loop."""
    import random

    rnd = random.Random(11)

    async def go() -> dict[str, Any]:
        load = Load("127.0.0.1", port, connections=connections, timeout=10)
        await load.run(lambda i: Request("interactive", "GET", rnd.choice(paths), b"",
                                         headers), rate, 1.0)  # warm the connections
        await load.drain()
        load.outcomes.clear()
        gc.collect()  # the generator's own collections must not pose as server latency
        gc.disable()
        start = time.perf_counter()
        try:
            await load.run(lambda i: Request("interactive", "GET", rnd.choice(paths), b"",
                                             headers), rate, seconds)
            await load.drain()
        finally:
            gc.enable()
        got = summarise(load.outcomes, start, start + seconds)["interactive"]
        return {"rate_per_s": rate, "seconds": seconds, "sent": got["sent"],
                "success_rate": got["success_rate"], "p50_ms": got["admitted_p50_ms"],
                "p99_ms": got["admitted_p99_ms"], "goodput_per_s": got["goodput_per_s"]}

    return await go()
