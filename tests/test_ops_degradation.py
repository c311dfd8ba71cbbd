"""Graceful degradation: database outages answer fast and heal; Redis falls back; breakers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import free_port, start_server
from conftest import test_settings as make_settings
from kunde.kernel import close_kernel, open_kernel
from kunde.ops.breaker import Breakers, CircuitOpen
from kunde.ops.cache import (
    CacheService,
    FallbackCache,
    LocalCache,
    RateLimiter,
    RedisCache,
    SharedCache,
)


class FlakyProxy:
    """A TCP proxy in front of PostgreSQL that can turn into a black hole or a closed port.

    It runs its own event loop in a thread, because the test client blocks the test's loop.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.mode = "forward"
        self.server: asyncio.Server | None = None
        self.conns: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def _do(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port,
                                                 reuse_address=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                if self.mode != "forward":
                    return
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.add(writer)
        if self.mode != "forward":
            # Accept, then never answer: the worst kind of outage for a client.
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.conns.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _set(self, mode: str) -> None:
        self.mode = mode
        for w in list(self.conns):
            w.transport.abort()
        self.conns.clear()
        if mode == "refuse" and self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        if mode == "forward" and self.server is None:
            await self._listen()

    def start(self) -> None:
        self._do(self._listen())

    def set(self, mode: str) -> None:
        """forward, blackhole (accept and never answer) or refuse (nothing listens)."""
        self._do(self._set(mode))

    def close(self) -> None:
        self._do(self._set("refuse"))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def _timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


async def _api_key(url: str, tmp_path: Path) -> str:
    kernel = await open_kernel(make_settings(url, tmp_path), run_migrations=False)
    try:
        _, key = await kernel.access.create_api_key("ops-test", ["*"])
        return key
    finally:
        await close_kernel(kernel)


def test_database_outage_is_fast_reported_and_heals(postgres_url: str, tmp_path: Path) -> None:
    """A real `kunde serve` behind a proxy that becomes a black hole, then a closed port."""
    target = int(postgres_url.rsplit(":", 1)[1].split("/", 1)[0])
    proxy = FlakyProxy(target)
    proxy.start()
    key = asyncio.run(_api_key(postgres_url, tmp_path))
    url = postgres_url.replace(f":{target}/", f":{proxy.port}/")
    server = start_server({"KUNDE_DATABASE_URL": url, "KUNDE_DB_TIMEOUT_SECONDS": "1",
                           "KUNDE_RUN_CONSUMERS": "false"}, tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"name": "probe", "scopes": ["profiles:read"]}
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            def write() -> httpx.Response:
                return client.post("/v1/admin/api-keys", json=body, headers=headers)

            assert write().status_code == 201
            for outage in ("blackhole", "refuse"):
                proxy.set(outage)
                # The first write may wait for a connection, but never longer than the bound.
                r, took = _timed(write)
                assert r.status_code == 503 and took < 4.0, (outage, r.status_code, took)
                # The background probe notices within a few seconds ...
                _until(lambda: "database_down_since" in client.get("/health/ready").json()[
                    "checks"], 10)
                # ... and from then on readiness and writes answer at once.
                ready, took = _timed(lambda: client.get("/health/ready"))
                assert took < 0.5 and "unreachable" in ready.json()["checks"]["database"]
                r, took = _timed(write)
                assert r.status_code == 503 and took < 0.2, (r.status_code, took)
                assert r.json()["code"] == "service.database_unavailable"
                assert r.headers["retry-after"]
                # Reads that need no database still answer.
                assert client.get("/health/live").status_code == 200

                proxy.set("forward")
                _until(lambda: client.get("/health/ready").status_code == 200, 15)
                r = write()
                assert r.status_code == 201, r.text
    finally:
        server.stop()
        proxy.close()


# -- the cache port ----------------------------------------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/0"


async def _redis_available() -> bool:
    cache = RedisCache(REDIS_URL)
    try:
        await cache.get("ping")
        return True
    except Exception:
        return False
    finally:
        await cache.close()


async def _exercise(cache: SharedCache, prefix: str) -> None:
    assert isinstance(cache, SharedCache)
    assert await cache.get(f"{prefix}missing") is None
    await cache.set(f"{prefix}k", b"v", 5)
    assert await cache.get(f"{prefix}k") == b"v"
    await cache.delete(f"{prefix}k")
    assert await cache.get(f"{prefix}k") is None
    assert [await cache.incr(f"{prefix}n", 5) for _ in range(3)] == [1, 2, 3]
    await cache.set(f"{prefix}short", b"x", 0.05)
    await asyncio.sleep(0.1)
    assert await cache.get(f"{prefix}short") is None
    limiter = RateLimiter(cache)
    results = [await limiter.allow(f"{prefix}ip", 2, 60) for _ in range(3)]
    assert [ok for ok, _ in results] == [True, True, False] and results[2][1] >= 1


async def test_every_cache_adapter_satisfies_the_port() -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    local = LocalCache()
    await _exercise(local, prefix)
    await local.close()
    dead = FallbackCache(RedisCache("redis://127.0.0.1:1/0"), LocalCache())
    await _exercise(dead, prefix)
    assert dead.degraded
    await dead.close()
    if not await _redis_available():
        pytest.skip("no Redis on 127.0.0.1:6379")
    redis = RedisCache(REDIS_URL)
    await _exercise(redis, prefix)
    await redis.close()
    both = FallbackCache(RedisCache(REDIS_URL), LocalCache())
    await _exercise(both, prefix + "f:")
    assert not both.degraded
    await both.close()


async def test_the_kernel_cache_follows_settings(tmp_path: Path) -> None:
    class FakeKernel:
        settings = make_settings("sqlite+aiosqlite:///x.db", tmp_path)

    assert isinstance(CacheService(FakeKernel()).cache, LocalCache)  # type: ignore[arg-type]
    FakeKernel.settings = make_settings("sqlite+aiosqlite:///x.db", tmp_path,
                                        redis_url="redis://127.0.0.1:1/0")
    service = CacheService(FakeKernel())  # type: ignore[arg-type]
    assert isinstance(service.cache, FallbackCache)
    await service.cache.close()


# -- circuit breakers --------------------------------------------------------------------------

async def test_breaker_opens_fails_fast_and_closes_after_a_good_trial() -> None:
    now = [0.0]
    breakers = Breakers(failures=3, reset_seconds=10, clock=lambda: now[0])

    async def call(ok: bool) -> None:
        async with breakers.guard("smtp://mail:25"):
            if not ok:
                raise ConnectionError("refused")

    for _ in range(3):
        with pytest.raises(ConnectionError):
            await call(False)
    with pytest.raises(CircuitOpen) as info:
        await call(True)
    assert info.value.http_status == 503 and info.value.extra["retry_after"] == 10
    assert breakers.states() == {"smtp://mail:25": "open"}
    now[0] = 11.0  # half-open: one trial; a failure re-opens at once
    with pytest.raises(ConnectionError):
        await call(False)
    with pytest.raises(CircuitOpen):
        await call(True)
    now[0] = 22.0
    await call(True)
    assert breakers.states() == {"smtp://mail:25": "closed"}
    # Other destinations are unaffected throughout.
    async with breakers.guard("https://hooks.example"):
        pass
