"""``Idempotency-Key`` for mutating POSTs, with Stripe's semantics; usable by any feature.

    @post("/v1/things", opt={"permission": "x:write"})
    async def create(request: Request[Any, Any, Any], kernel: KernelDep,
                     data: JSONBody[ThingIn]) -> Response[bytes]:
        return await idempotent(request, kernel, "x.things",
                                lambda: svc.create(data), status_code=201)

* No header: the handler simply runs.
* First request with a key: runs, and its response (2xx, or a 4xx domain error such
  as a declined payment) is stored with the key.
* Same key, same method, path and body: the stored response is replayed byte for
  byte, with ``Idempotent-Replayed: true``; the handler does not run again.
* Same key, different request: 422 ``idempotency.key_reused``.
* Same key while the first request still runs: 409 ``idempotency.in_progress``.
* Transient failures (5xx, 429, 503) are not stored: the key is released so the
  client's retry runs the request again.
* Keys belong to the calling principal and are kept at least `KEEP` (24 h); the
  job from `purge_job` deletes them afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from litestar import Request, Response

from kunde.access.guard import current_principal
from kunde.commerce.errors import IdempotencyInProgress, IdempotencyKeyReused
from kunde.commerce.tables import idempotency_keys
from kunde.core import jsonutil
from kunde.core.errors import InvalidInput, KundeError
from kunde.store.jobs import PeriodicJob
from kunde.store.sql import insert_ignore
from kunde.web.problems import kunde_error

if TYPE_CHECKING:
    from kunde.kernel import Kernel

KEEP = timedelta(hours=24)
LOCK = timedelta(seconds=60)
HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"


async def idempotent(
    request: Request[Any, Any, Any],
    kernel: Kernel,
    scope: str,
    handler: Callable[[], Awaitable[Any]],
    *,
    status_code: int = 200,
) -> Response[bytes]:
    """Run ``handler`` at most once per (caller, scope, key); see the module docstring."""
    key = request.headers.get(HEADER)
    if key is None:
        return _response(status_code, jsonutil.dumps(await handler()))
    if not 1 <= len(key) <= 255:
        raise InvalidInput("Idempotency-Key must be 1 to 255 characters",
                           code="idempotency.invalid_key")
    principal = current_principal(request)
    full_scope = f"{scope}:{principal.id if principal else 'anonymous'}"[:120]
    body = await request.body()
    digest = hashlib.sha256(request.method.encode() + b" " + request.url.path.encode()
                            + b"\n" + body).hexdigest()
    stored = await _claim(kernel, full_scope, key, digest)
    if stored is not None:
        return _response(stored[0], stored[1], replayed=True)
    try:
        result = await handler()
    except KundeError as exc:
        if exc.http_status >= 500 or exc.http_status == 429 or exc.code.startswith(
                "idempotency."):
            await _release(kernel, full_scope, key)
            raise
        failed = kunde_error(request, exc)
        content = failed.content if isinstance(failed.content, bytes) else b""
        await _store(kernel, full_scope, key, exc.http_status, content)
        raise
    except BaseException:
        await _release(kernel, full_scope, key)
        raise
    content = jsonutil.dumps(result)
    await _store(kernel, full_scope, key, status_code, content)
    return _response(status_code, content)


def _response(status: int, content: bytes, *, replayed: bool = False) -> Response[bytes]:
    media = "application/problem+json" if status >= 400 else "application/json"
    headers = {REPLAYED: "true"} if replayed else {}
    return Response(content, status_code=status, media_type=media, headers=headers)


async def _claim(kernel: Kernel, scope: str, key: str, digest: str
                 ) -> tuple[int, bytes] | None:
    """Take the key, or return the stored response; raises for reuse or a running twin."""
    now = kernel.clock.now()
    async with kernel.db.transaction() as uow:
        taken = await uow.execute(insert_ignore(uow.dialect, idempotency_keys), {
            "scope": scope, "key": key, "request_hash": digest, "locked_until": now + LOCK,
            "created_at": now, "expires_at": now + KEEP})
        if taken.rowcount == 1:
            return None
        row = (await uow.execute(sa.select(idempotency_keys).where(
            idempotency_keys.c.scope == scope, idempotency_keys.c.key == key))).one()
        if row.request_hash != digest:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request; use a new key")
        if row.status_code is not None:
            return int(row.status_code), bytes(row.response or b"")
        if row.locked_until is not None and row.locked_until > now:
            raise IdempotencyInProgress("a request with this Idempotency-Key is still running; "
                                        "retry in a moment", retry_after=1)
        # The first attempt died without an answer: this retry takes over.
        await uow.execute(idempotency_keys.update().where(
            idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
            .values(locked_until=now + LOCK))
        return None


async def _store(kernel: Kernel, scope: str, key: str, status: int, content: bytes) -> None:
    async with kernel.db.transaction() as uow:
        await uow.execute(idempotency_keys.update().where(
            idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
            .values(status_code=status, response=content, locked_until=None))


async def _release(kernel: Kernel, scope: str, key: str) -> None:
    async with kernel.db.transaction() as uow:
        await uow.execute(idempotency_keys.delete().where(
            idempotency_keys.c.scope == scope, idempotency_keys.c.key == key,
            idempotency_keys.c.status_code.is_(None)))


def purge_job(kernel: Kernel) -> PeriodicJob:
    """Deletes keys older than their 24 h guarantee."""
    async def run() -> str:
        async with kernel.db.transaction() as uow:
            result = await uow.execute(idempotency_keys.delete().where(
                idempotency_keys.c.expires_at < kernel.clock.now()))
        return f"purged {result.rowcount} idempotency keys"

    return PeriodicJob(name="commerce.idempotency_purge", every=timedelta(hours=1), run=run)
