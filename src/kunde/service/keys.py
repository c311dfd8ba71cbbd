"""What must be unique across all cases and customers, kept in ``service_keys``.

Cases are distributed by case id and feedback by customer (store/distribution.py), so
a unique constraint on either could only hold within one case or one customer. Case
tokens, the causes of automatic cases and feedback requests, and email Message-IDs are
claimed here instead, in the transaction that writes the row they name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from kunde.service.tables import service_keys, service_messages
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore


def case_token(token: str) -> str:
    return f"case-token:{token}"


def case_cause(cause: str) -> str:
    return f"case-cause:{cause}"


def feedback_cause(cause: str) -> str:
    return f"feedback-cause:{cause}"


def email(message_id: str) -> str:
    return f"email:{message_id}"


async def claim(uow: UnitOfWork, key: str, ref_id: str) -> bool:
    """Take ``key`` for ``ref_id``; False when it is taken already (a concurrent claim
    waits for the first transaction's outcome)."""
    result = await uow.execute(insert_ignore(uow.dialect, service_keys),
                               {"key": key, "ref_id": ref_id})
    return bool(result.rowcount == 1)


async def holder(uow: UnitOfWork, key: str) -> str | None:
    """The id that holds ``key``, if any."""
    return (await uow.execute(sa.select(service_keys.c.ref_id).where(
        service_keys.c.key == key))).scalar_one_or_none()


async def add(uow: UnitOfWork, items: Iterable[tuple[str, str]]) -> None:
    """Take keys that must be new: a duplicate fails the transaction, like a unique
    constraint on the row itself would."""
    rows = [{"key": k, "ref_id": r} for k, r in items]
    if rows:
        await uow.execute(service_keys.insert(), rows)


async def release(uow: UnitOfWork, keys: Sequence[str]) -> None:
    """Free the keys of rows that are gone (erased, past retention)."""
    for start in range(0, len(keys), 500):
        await uow.execute(service_keys.delete().where(
            service_keys.c.key.in_(list(keys[start:start + 500]))))


async def delete_messages(uow: UnitOfWork, case_ids: Sequence[str]) -> int:
    """Delete the messages of these cases and release their Message-IDs; returns how many."""
    gone = (await uow.execute(service_messages.delete().where(
        service_messages.c.case_id.in_(list(case_ids)))
        .returning(service_messages.c.email_message_id))).scalars().all()
    await release(uow, [email(m) for m in gone if m])
    return len(gone)
