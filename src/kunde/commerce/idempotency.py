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

A hot handler may save the two transactions of its own around the key
(``in_handler=True``): it calls `claim_in` inside its first transaction (which must
commit before any outside call, such as a payment provider) and `store_in` inside
its last, so the key is taken and the response kept by the same commits as the
work. The semantics are the same: a replay is answered by `claim_in` (the handler
stops and the stored response is sent), and a domain error raised before the claim
is stored by the helper itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from litestar import Request, Response

from kunde.access.guard import current_principal
from kunde.commerce.errors import IdempotencyInProgress, IdempotencyKeyReused
from kunde.commerce.tables import idempotency_keys
from kunde.core import jsonutil
from kunde.core.errors import InvalidInput, KundeError
from kunde.store.database import UnitOfWork
from kunde.store.jobs import PeriodicJob
from kunde.store.sql import insert_ignore
from kunde.web.problems import kunde_error

if TYPE_CHECKING:
    from kunde.kernel import Kernel

KEEP = timedelta(hours=24)
LOCK = timedelta(seconds=60)
HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"


@dataclass
class _Pending:
    """The key of the request being handled, for `claim_in` and `store_in`."""

    scope: str
    key: str
    digest: str
    status_code: int
    claimed: bool = False
    content: bytes | None = None


class _Replay(Exception):  # control flow: never escapes `idempotent`
    def __init__(self, stored: tuple[int, bytes]) -> None:
        super().__init__("replay")
        self.stored = stored


_PENDING: ContextVar[_Pending | None] = ContextVar("kunde_idempotency", default=None)


async def idempotent(
    request: Request[Any, Any, Any],
    kernel: Kernel,
    scope: str,
    handler: Callable[[], Awaitable[Any]],
    *,
    status_code: int = 200,
    in_handler: bool = False,
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
    pending = _Pending(full_scope, key, digest, status_code)
    if not in_handler:
        stored = await _claim(kernel, full_scope, key, digest)
        if stored is not None:
            return _response(stored[0], stored[1], replayed=True)
        pending.claimed = True
    token = _PENDING.set(pending)
    try:
        result = await handler()
    except _Replay as replay:
        return _response(replay.stored[0], replay.stored[1], replayed=True)
    except KundeError as exc:
        if exc.http_status >= 500 or exc.http_status == 429 or exc.code.startswith(
                "idempotency."):
            if pending.claimed:
                await _release(kernel, full_scope, key)
            raise
        if not pending.claimed:  # refused before the handler took the key
            stored = await _claim(kernel, full_scope, key, digest)
            if stored is not None:
                return _response(stored[0], stored[1], replayed=True)
        failed = kunde_error(request, exc)
        content = failed.content if isinstance(failed.content, bytes) else b""
        await _store(kernel, full_scope, key, exc.http_status, content)
        raise
    except BaseException:
        if pending.claimed:
            await _release(kernel, full_scope, key)
        raise
    finally:
        _PENDING.reset(token)
    if pending.content is not None:  # kept by the handler's own last transaction
        return _response(status_code, pending.content)
    content = jsonutil.dumps(result)
    if not pending.claimed:
        stored = await _claim(kernel, full_scope, key, digest)
        if stored is not None:
            return _response(stored[0], stored[1], replayed=True)
    await _store(kernel, full_scope, key, status_code, content)
    return _response(status_code, content)


async def claim_in(kernel: Kernel, uow: UnitOfWork) -> None:
    """Take the request's key inside the handler's first transaction (``in_handler``).

    A replay or a conflicting request stops the handler: the stored response is sent,
    or ``idempotency.*`` raised. No-op without a key or once claimed."""
    pending = _PENDING.get()
    if pending is None or pending.claimed:
        return
    stored = await _claim_in(kernel, uow, pending.scope, pending.key, pending.digest)
    if stored is not None:
        raise _Replay(stored)

    def committed() -> None:  # a rolled-back claim took nothing
        pending.claimed = True

    uow.after_commit(committed)


async def store_in(uow: UnitOfWork, result: Any) -> None:
    """Keep the response with the handler's last transaction (``in_handler``)."""
    pending = _PENDING.get()
    if pending is None or not pending.claimed:
        return
    content = jsonutil.dumps(result)
    await uow.execute(idempotency_keys.update().where(
        idempotency_keys.c.scope == pending.scope, idempotency_keys.c.key == pending.key)
        .values(status_code=pending.status_code, response=content, locked_until=None))
    pending.content = content


def _response(status: int, content: bytes, *, replayed: bool = False) -> Response[bytes]:
    media = "application/problem+json" if status >= 400 else "application/json"
    headers = {REPLAYED: "true"} if replayed else {}
    return Response(content, status_code=status, media_type=media, headers=headers)


async def _claim(kernel: Kernel, scope: str, key: str, digest: str
                 ) -> tuple[int, bytes] | None:
    """Take the key, or return the stored response; raises for reuse or a running twin."""
    async with kernel.db.transaction() as uow:
        return await _claim_in(kernel, uow, scope, key, digest)


async def _claim_in(kernel: Kernel, uow: UnitOfWork, scope: str, key: str, digest: str
                    ) -> tuple[int, bytes] | None:
    now = kernel.clock.now()
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
