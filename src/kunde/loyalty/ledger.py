"""The points ledger: double-entry, exactly once, FIFO lots, no read-decide-write.

Every movement is a transaction whose id is derived from its cause
(``derived_id(kind, cause_id, rule)``). The id is first inserted into
``loyalty_causes`` with ON CONFLICT DO NOTHING: a second delivery of the same cause —
a retry, a replay, a concurrent duplicate, or the same cause delivered for the
survivor of a merge — finds the id taken and changes nothing. That table is keyed by
the cause alone (not by customer, unlike the rest of the ledger), so the guarantee
holds across customer records on a sharded database too. Its legs sum to zero over member accounts
(``m:<customer>:available|pending``) and system accounts (``s:issued``,
``s:redeemed``, ``s:expired``, ``s:reversed``, ``s:goodwill``).

Member balances are kept by ``UPDATE … SET balance = balance + :d`` guarded by
``balance + :d >= 0``. Every operation that debits a member first locks the
member (a no-op UPDATE of the available account), so on PostgreSQL concurrent
redemptions, expiries and clawbacks of one member run one after the other and
the FIFO lots they consume stay consistent; SQLite has one writer anyway.
System accounts are not kept as rows (they would be a hot row every award
waits on): their balance is the sum of their entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kunde.core.ids import derived_id
from kunde.loyalty.errors import InsufficientPoints
from kunde.loyalty.rows import move_rows
from kunde.loyalty.tables import accounts, causes, entries, lots, transactions
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

SYSTEM_ACCOUNTS = ("s:issued", "s:redeemed", "s:expired", "s:reversed", "s:goodwill",
                   "s:transfer")


def member_account(customer_id: str, bucket: str = "available") -> str:
    return f"m:{customer_id}:{bucket}"


def account_owner(account: str) -> str:
    """The customer id of a member account ("m:<customer_id>:<bucket>")."""
    return account[2:].rpartition(":")[0]


@dataclass(frozen=True)
class Posted:
    txn_id: str
    points: int


def txn_id(kind: str, cause_id: str, rule: str = "") -> str:
    return derived_id("loyalty", kind, cause_id, rule)


async def ensure_member_accounts(uow: UnitOfWork, customer_id: str) -> None:
    await uow.execute(insert_ignore(uow.dialect, accounts), [
        {"account": member_account(customer_id, b), "customer_id": customer_id, "bucket": b,
         "balance": 0}
        for b in ("available", "pending")
    ])


async def lock_member(uow: UnitOfWork, customer_id: str) -> None:
    """Serialise debits of one member (row lock on PostgreSQL until commit)."""
    await ensure_member_accounts(uow, customer_id)
    await uow.execute(
        accounts.update().where(accounts.c.customer_id == customer_id,
                                accounts.c.account == member_account(customer_id))
        .values(balance=accounts.c.balance)
    )


async def post(
    uow: UnitOfWork,
    *,
    kind: str,
    customer_id: str,
    cause_id: str,
    rule: str = "",
    reason: str,
    legs: Sequence[tuple[str, int]],
    now: datetime,
    ref: str | None = None,
    points: int | None = None,
) -> Posted | None:
    """Record one transaction; None when its cause was already recorded (nothing changes).

    Raises `InsufficientPoints` when a member account would go below zero; the
    caller's transaction then rolls back whole.
    """
    if sum(a for _, a in legs) != 0:
        raise ValueError(f"unbalanced transaction {kind}: {legs}")
    tid = txn_id(kind, cause_id, rule)
    member_delta = sum(a for acct, a in legs if acct.startswith("m:") and acct.endswith(
        ":available"))
    # The exactly-once guard, global: keyed by the cause, not by the customer.
    result = await uow.execute(insert_ignore(uow.dialect, causes, ["txn_id"]),
                               {"txn_id": tid, "customer_id": customer_id})
    if result.rowcount == 0:
        return None
    await uow.execute(transactions.insert(), {
        "id": tid, "kind": kind, "customer_id": customer_id, "cause_id": cause_id,
        "rule": rule, "points": member_delta if points is None else points,
        "reason": reason[:300], "ref": ref, "created_at": now,
    })
    legs = [(acct, amt) for acct, amt in sorted(legs) if amt != 0]
    if legs:
        await uow.execute(entries.insert(), [
            {"customer_id": customer_id, "txn_id": tid, "leg": i, "account": acct,
             "amount": amt}
            for i, (acct, amt) in enumerate(legs)
        ])
    if any(acct.startswith("m:") for acct, _ in legs):
        await ensure_member_accounts(uow, customer_id)
    for acct, amt in legs:
        if not acct.startswith("m:"):
            continue
        upd = await uow.execute(
            accounts.update()
            .where(accounts.c.customer_id == account_owner(acct), accounts.c.account == acct,
                   accounts.c.balance + amt >= 0)
            .values(balance=accounts.c.balance + amt)
        )
        if upd.rowcount != 1:
            raise InsufficientPoints("not enough points for this", account=acct, needed=-amt)
    return Posted(tid, member_delta)


async def credit(
    uow: UnitOfWork,
    *,
    kind: str,
    source: str,
    customer_id: str,
    points: int,
    cause_id: str,
    rule: str,
    reason: str,
    now: datetime,
    available_at: datetime | None = None,
    expires_at: datetime | None = None,
    ref: str | None = None,
) -> Posted | None:
    """Credit a member from a system account and open a lot; pending until ``available_at``."""
    if points <= 0:
        return None
    pending = available_at is not None and available_at > now
    bucket = "pending" if pending else "available"
    posted = await post(
        uow, kind=kind, customer_id=customer_id, cause_id=cause_id, rule=rule, reason=reason,
        legs=[(source, -points), (member_account(customer_id, bucket), points)], now=now,
        ref=ref, points=points,
    )
    if posted is None:
        return None
    await uow.execute(lots.insert().values(
        id=posted.txn_id, customer_id=customer_id, points=points, remaining=points, reversed=0,
        bucket=bucket, ref=ref, earned_at=now, available_at=available_at or now,
        expires_at=expires_at,
    ))
    return posted


async def _take_fifo(uow: UnitOfWork, customer_id: str, wanted: int, *,
                     skip: str | None = None) -> int:
    """Consume up to ``wanted`` points from available lots, oldest first; returns taken.

    Must run after `lock_member`: the lots read here cannot change under us.
    """
    taken = 0
    q = (sa.select(lots.c.id, lots.c.remaining)
         .where(lots.c.customer_id == customer_id, lots.c.bucket == "available",
                lots.c.remaining > 0)
         .order_by(lots.c.available_at, lots.c.id))
    rows: list[Any] = list((await uow.execute(q)).all())
    for row in rows:
        lot_id, remaining = str(row.id), int(row.remaining)
        if taken >= wanted:
            break
        if lot_id == skip:
            continue
        take = min(int(remaining), wanted - taken)
        await uow.execute(lots.update().where(lots.c.customer_id == customer_id,
                                              lots.c.id == lot_id)
                          .values(remaining=lots.c.remaining - take))
        taken += take
    return taken


async def available_points(uow: UnitOfWork, customer_id: str) -> int:
    row = (await uow.execute(sa.select(accounts.c.balance).where(
        accounts.c.customer_id == customer_id,
        accounts.c.account == member_account(customer_id)))).first()
    return int(row[0]) if row else 0


async def debit(
    uow: UnitOfWork,
    *,
    kind: str,
    sink: str,
    customer_id: str,
    points: int,
    cause_id: str,
    rule: str = "",
    reason: str,
    now: datetime,
    ref: str | None = None,
) -> Posted | None:
    """Spend available points into a system account (redemption); FIFO over lots."""
    await lock_member(uow, customer_id)
    posted = await post(
        uow, kind=kind, customer_id=customer_id, cause_id=cause_id, rule=rule, reason=reason,
        legs=[(member_account(customer_id), -points), (sink, points)], now=now, ref=ref,
        points=-points,
    )
    if posted is not None:
        taken = await _take_fifo(uow, customer_id, points)
        if taken != points:  # the balance guard passed, so lots must cover it
            raise RuntimeError(f"lots out of step with balance for {customer_id}")
    return posted


async def reverse_lot(
    uow: UnitOfWork,
    *,
    customer_id: str,
    lot_id: str,
    points: int,
    cause_id: str,
    reason: str,
    now: datetime,
    ref: str | None = None,
) -> Posted | None:
    """Claw back up to ``points`` of a lot: from the lot itself, then from other available
    lots; never below zero (what was already spent is forgiven)."""
    await lock_member(uow, customer_id)
    lot = (await uow.execute(sa.select(lots).where(lots.c.customer_id == customer_id,
                                                   lots.c.id == lot_id))).first()
    if lot is None or points <= 0:
        return None
    own = min(points, int(lot.remaining))
    other_avail = await available_points(uow, customer_id)
    if lot.bucket == "available":
        other_avail -= own
    from_others = max(0, min(points - own, other_avail))
    legs = [(member_account(customer_id, lot.bucket), -own),
            (member_account(customer_id), -from_others),
            ("s:reversed", own + from_others)]
    posted = await post(uow, kind="reverse", customer_id=customer_id, cause_id=cause_id,
                        rule=lot_id, reason=reason, legs=legs, now=now, ref=ref,
                        points=-(own + from_others))
    if posted is None:
        return None
    await uow.execute(lots.update().where(lots.c.customer_id == customer_id,
                                          lots.c.id == lot_id).values(
        remaining=lots.c.remaining - own, reversed=lots.c.reversed + own + from_others))
    if from_others:
        taken = await _take_fifo(uow, customer_id, from_others, skip=lot_id)
        if taken != from_others:
            raise RuntimeError(f"lots out of step with balance for {customer_id}")
    return posted


async def release_lot(uow: UnitOfWork, customer_id: str, lot_id: str, now: datetime
                      ) -> Posted | None:
    """Move a pending lot's remaining points to available (exactly once per lot)."""
    await lock_member(uow, customer_id)
    lot = (await uow.execute(sa.select(lots).where(
        lots.c.customer_id == customer_id, lots.c.id == lot_id,
        lots.c.bucket == "pending"))).first()
    if lot is None:
        return None
    r = int(lot.remaining)
    posted = await post(
        uow, kind="release", customer_id=lot.customer_id, cause_id=lot_id,
        reason="points became available after the return window",
        legs=[(member_account(lot.customer_id, "pending"), -r),
              (member_account(lot.customer_id), r)],
        now=now, ref=lot.ref, points=r,
    )
    if posted is not None:
        await uow.execute(lots.update().where(lots.c.customer_id == customer_id,
                                              lots.c.id == lot_id).values(
            bucket="available", available_at=now))
    return posted


async def expire_lot(uow: UnitOfWork, customer_id: str, lot_id: str, now: datetime
                     ) -> Posted | None:
    """Expire what is left of an available lot (exactly once per lot)."""
    await lock_member(uow, customer_id)
    lot = (await uow.execute(sa.select(lots).where(
        lots.c.customer_id == customer_id, lots.c.id == lot_id,
        lots.c.bucket == "available", lots.c.remaining > 0))).first()
    if lot is None:
        return None
    r = int(lot.remaining)
    posted = await post(
        uow, kind="expire", customer_id=lot.customer_id, cause_id=lot_id,
        reason="points expired", legs=[(member_account(lot.customer_id), -r), ("s:expired", r)],
        now=now, ref=lot.ref, points=-r,
    )
    if posted is not None:
        await uow.execute(lots.update().where(lots.c.customer_id == customer_id,
                                              lots.c.id == lot_id).values(remaining=0))
    return posted


async def transfer_member(
    uow: UnitOfWork, *, loser: str, survivor: str, cause_id: str, reason: str, now: datetime,
) -> tuple[Posted, Posted] | None:
    """Move everything a member holds — available and pending points with their lots —
    to another member, exactly once per ``cause_id`` (e.g. the merge event's id).

    Two transactions through the clearing account ``s:transfer``: ``merge_out`` debits
    the loser, ``merge_in`` credits the survivor, so each member's history shows its
    side and ``s:transfer`` is back at zero when they commit together. The lots move
    with their dates, so FIFO order, the return window and expiry are unchanged.
    None when this cause was already transferred.
    """
    if loser == survivor:
        return None
    for cid in sorted((loser, survivor)):  # one lock order: no deadlock between merges
        await lock_member(uow, cid)
    # Both of the loser's accounts: a concurrent credit to pending either commits before
    # we read the balances (and its lot moves with the rest) or waits for us.
    await uow.execute(accounts.update().where(accounts.c.customer_id == loser)
                      .values(balance=accounts.c.balance))
    bal = await balances(uow, loser)
    avail, pend = bal["available"], bal["pending"]
    out = await post(
        uow, kind="merge_out", customer_id=loser, cause_id=cause_id, rule=survivor,
        reason=reason, legs=[(member_account(loser), -avail),
                             (member_account(loser, "pending"), -pend),
                             ("s:transfer", avail + pend)],
        now=now, ref=survivor, points=-avail)
    if out is None:
        return None
    into = await post(
        uow, kind="merge_in", customer_id=survivor, cause_id=cause_id, rule=loser,
        reason=reason, legs=[("s:transfer", -(avail + pend)),
                             (member_account(survivor), avail),
                             (member_account(survivor, "pending"), pend)],
        now=now, ref=loser, points=avail)
    assert into is not None  # same cause, other kind: inserted with merge_out or not at all
    await move_rows(uow, lots, lots.c.customer_id == loser, customer_id=survivor)
    return out, into


async def due_lots(uow: UnitOfWork, now: datetime, limit: int = 500
                   ) -> dict[str, list[tuple[str, str]]]:
    """(customer id, lot id) of lots to release (pending past their window) and to expire
    (available past expiry)."""
    rel = await uow.execute(sa.select(lots.c.customer_id, lots.c.id).where(
        lots.c.bucket == "pending", lots.c.available_at <= now).limit(limit))
    exp = await uow.execute(sa.select(lots.c.customer_id, lots.c.id).where(
        lots.c.bucket == "available", lots.c.remaining > 0, lots.c.expires_at.is_not(None),
        lots.c.expires_at <= now).limit(limit))
    return {"release": [(str(r.customer_id), str(r.id)) for r in rel],
            "expire": [(str(r.customer_id), str(r.id)) for r in exp]}


async def balances(conn: Any, customer_id: str) -> dict[str, int]:
    rows = await conn.execute(sa.select(accounts.c.bucket, accounts.c.balance).where(
        accounts.c.customer_id == customer_id))
    out = {"available": 0, "pending": 0}
    out.update({b: int(v) for b, v in rows})
    return out
