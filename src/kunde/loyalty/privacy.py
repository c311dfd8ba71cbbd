"""GDPR hooks: everything loyalty holds about a customer (export) and its erasure.

Erasure deletes the member's own rows (membership, tiers, quests, badges, team
seat, segments, purchases, redemptions, welcome record, season standings, merge
records) and pseudonymises the ledger (including other members' merge and
referral entries that name the customer): the member's transactions, entries,
lots and accounts move to a fresh random id with reasons and references blanked (rows
are re-inserted under the new id: it is their distribution key).
The ledger keeps balancing and the programme's liability history stays true, but
nothing links it to the person.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.ids import new_id
from kunde.loyalty import tables as t
from kunde.loyalty.ledger import member_account
from kunde.loyalty.rows import move_rows
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.kernel import Kernel

MERGE_KINDS = ("merge_in", "merge_out", "unmerge")  # their rule and ref: the other record
OWN_ROWS = [t.members, t.rule_usage, t.quest_marks, t.quest_completions, t.season_xp,
            t.badges, t.streaks, t.member_segments, t.purchases, t.redemptions, t.welcomes,
            t.season_results]


async def export(kernel: Kernel, ids: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with kernel.db.read() as conn:
        for table in [t.accounts, t.transactions, t.lots, *OWN_ROWS, t.team_members]:
            rows = (await conn.execute(sa.select(table).where(
                table.c.customer_id.in_(list(ids))))).mappings().all()
            out[table.name.removeprefix("loyalty_")] = [dict(r) for r in rows]
        rows = (await conn.execute(sa.select(t.merges).where(sa.or_(
            t.merges.c.merged_id.in_(list(ids)), t.merges.c.survivor_id.in_(list(ids))))
        )).mappings().all()
        out["merges"] = [dict(r) for r in rows]
    return out


async def erase(kernel: Kernel, uow: UnitOfWork, ids: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for cid in ids:
        for table in OWN_ROWS:
            n = (await uow.execute(table.delete().where(table.c.customer_id == cid))).rowcount
            counts[table.name] = counts.get(table.name, 0) + int(n)
        seat = (await uow.execute(sa.select(t.team_members.c.team_id).where(
            t.team_members.c.customer_id == cid))).first()
        if seat is not None:
            await uow.execute(t.team_members.delete().where(t.team_members.c.customer_id == cid))
            await uow.execute(t.teams.update().where(t.teams.c.id == seat.team_id)
                              .values(size=t.teams.c.size - 1))
            counts["loyalty_team_members"] = counts.get("loyalty_team_members", 0) + 1
        await uow.execute(t.teams.update().where(t.teams.c.owner_id == cid)
                          .values(owner_id=new_id()))
        await uow.execute(t.merges.delete().where(sa.or_(t.merges.c.merged_id == cid,
                                                         t.merges.c.survivor_id == cid)))
        alias = new_id()
        await uow.execute(t.transactions.update().where(  # welcome: caused by the identity
            t.transactions.c.customer_id == cid, t.transactions.c.cause_id == cid,
        ).values(cause_id=alias))
        # Other members' entries naming this customer: a referral of them, a merge with them.
        await uow.execute(t.transactions.update().where(
            t.transactions.c.cause_id == f"referee:{cid}").values(cause_id=f"referee:{alias}"))
        await uow.execute(t.transactions.update().where(
            t.transactions.c.kind.in_(MERGE_KINDS), t.transactions.c.rule == cid,
        ).values(rule=alias, ref=None, reason="erased"))
        # The customer id is the distribution key of these tables: rows move to the alias
        # (deleted and inserted again) rather than being updated in place.
        n = await move_rows(uow, t.transactions, t.transactions.c.customer_id == cid,
                            customer_id=alias, reason="erased", ref=None)
        counts["loyalty_transactions_pseudonymised"] = n
        await uow.execute(t.causes.update().where(t.causes.c.customer_id == cid)
                          .values(customer_id=alias))
        await move_rows(uow, t.entries, t.entries.c.customer_id == cid, customer_id=alias)
        for bucket in ("available", "pending"):
            await uow.execute(t.entries.update().where(
                t.entries.c.customer_id == alias,
                t.entries.c.account == member_account(cid, bucket)).values(
                account=member_account(alias, bucket)))
            await move_rows(uow, t.accounts, t.accounts.c.customer_id == cid,
                            t.accounts.c.account == member_account(cid, bucket),
                            account=member_account(alias, bucket), customer_id=alias)
        await move_rows(uow, t.lots, t.lots.c.customer_id == cid, customer_id=alias, ref=None)
    return counts
