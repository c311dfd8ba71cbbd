"""A small shared cache and rate-limit port: Redis when configured, in-process otherwise.

`SharedCache` is the port. `LocalCache` keeps everything in this process (the
embedded default); `RedisCache` shares it between processes; `FallbackCache`
uses Redis and, while Redis is down, answers from the local cache instead of
failing the request (a circuit breaker keeps it from waiting on a dead Redis).
Obtain the one configured for a kernel with ``kernel.service(CacheService).cache``.

Rate limits are fixed-window counters (`RateLimiter`): good enough for abuse
protection; they are not a billing meter.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kunde.ops.breaker import Breakers

if TYPE_CHECKING:
    from kunde.kernel import Kernel

log = logging.getLogger("kunde.ops.cache")


@runtime_checkable
class SharedCache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, ttl: float) -> int:
        """Add one to a counter that expires ``ttl`` seconds after its first increment."""
        ...

    async def close(self) -> None: ...


class LocalCache:
    """In-process, bounded: the oldest entries go first when ``max_entries`` is reached."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._data: dict[str, tuple[float, Any]] = {}

    def _live(self, key: str) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= time.monotonic():
            del self._data[key]
            return None
        return item[1]

    def _put(self, key: str, value: Any, ttl: float) -> None:
        if len(self._data) >= self.max_entries and key not in self._data:
            del self._data[next(iter(self._data))]
        self._data[key] = (time.monotonic() + ttl, value)

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._put(key, value, ttl)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def incr(self, key: str, ttl: float) -> int:
        item = self._data.get(key)
        if item is None or item[0] <= time.monotonic() or not isinstance(item[1], int):
            self._put(key, 1, ttl)
            return 1
        self._data[key] = (item[0], item[1] + 1)
        return int(item[1]) + 1

    async def close(self) -> None:
        self._data.clear()


class RedisCache:
    """Redis (``redis.asyncio``), keys under a prefix; short timeouts, never a hang."""

    def __init__(self, url: str, *, prefix: str = "kunde:", timeout: float = 0.25) -> None:
        import redis.asyncio as aioredis

        self.prefix = prefix
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
        )

    async def get(self, key: str) -> bytes | None:
        value = await self.client.get(self.prefix + key)
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self.client.set(self.prefix + key, value, px=max(1, int(ttl * 1000)))

    async def delete(self, key: str) -> None:
        await self.client.delete(self.prefix + key)

    async def incr(self, key: str, ttl: float) -> int:
        full = self.prefix + key
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(full)
            pipe.pexpire(full, max(1, int(ttl * 1000)), nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def close(self) -> None:
        await self.client.aclose()


class FallbackCache:
    """The primary (Redis) while it answers; the local cache while it does not."""

    def __init__(self, primary: SharedCache, fallback: SharedCache,
                 breakers: Breakers | None = None, name: str = "redis") -> None:
        self.primary = primary
        self.fallback = fallback
        self.breakers = breakers or Breakers(failures=1, reset_seconds=5.0)
        self.name = name

    @property
    def degraded(self) -> bool:
        return self.breakers.get(self.name).state != "closed"

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            async with self.breakers.guard(self.name):
                return await getattr(self.primary, method)(*args)
        except Exception as exc:  # Redis down or circuit open: degrade, do not fail
            log.debug("cache %s failed (%r); using the in-process fall-back", method, exc)
            return await getattr(self.fallback, method)(*args)

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call("get", key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._call("set", key, value, ttl)

    async def delete(self, key: str) -> None:
        await self._call("delete", key)
        await self.fallback.delete(key)

    async def incr(self, key: str, ttl: float) -> int:
        return int(await self._call("incr", key, ttl))

    async def close(self) -> None:
        try:
            await self.primary.close()
        finally:
            await self.fallback.close()


class RateLimiter:
    """At most ``limit`` calls per ``per_seconds`` window and key."""

    def __init__(self, cache: SharedCache) -> None:
        self.cache = cache

    async def allow(self, key: str, limit: int, per_seconds: float) -> tuple[bool, int]:
        """(allowed, seconds to wait before retrying)."""
        window = int(time.time() // per_seconds)
        count = await self.cache.incr(f"rl:{key}:{window}", per_seconds)
        if count <= limit:
            return True, 0
        retry = int((window + 1) * per_seconds - time.time()) + 1
        return False, max(1, retry)


class CacheService:
    """The cache configured for a kernel: ``FallbackCache(Redis, local)`` or local only."""

    def __init__(self, kernel: Kernel) -> None:
        url = kernel.settings.redis_url
        self.cache: SharedCache = (
            FallbackCache(RedisCache(url), LocalCache()) if url else LocalCache()
        )
        self.rate_limiter = RateLimiter(self.cache)
