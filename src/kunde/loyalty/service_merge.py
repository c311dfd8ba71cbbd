"""A member follows their customer through merges of the identity graph.

On ``profiles.customers_merged`` everything the merged (losing) record holds moves
to the survivor in the consumer's transaction:

* points — available and pending, with their lots (dates, FIFO order, expiry and
  the order each lot is clawed back from) — through two ledger transactions whose
  ids derive from the merge event (`ledger.transfer_member`), so a redelivered
  merge event finds them taken and moves nothing twice;
* tier — the higher of the two tiers (with its review date); tier progress counts
  the loser's earning history and purchases from now on;
* quest progress, completions, streaks, badges, season XP and cap usage;
* team membership (the survivor takes the loser's seat unless already in a team).

Events of the merged record that arrive later (a late payment, a replay) count for
the survivor: `live_id` maps merged ids to their survivor through ``loyalty_merges``.

On ``profiles.customers_unmerged`` nothing moves back: points, tier, progress and
team stay with the survivor (they cannot be attributed reliably once combined, and
may have been spent); the restored record starts a fresh membership, and its later
events earn for it again. The history of both shows why.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.loyalty import ledger
from kunde.loyalty.rows import move_rows
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_quests import QuestEngine
from kunde.loyalty.tables import (
    accounts,
    badges,
    lots,
    member_segments,
    members,
    merges,
    purchases,
    quest_completions,
    quest_marks,
    rule_usage,
    season_results,
    season_xp,
    streaks,
    team_members,
    teams,
    transactions,
)
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

MERGE_EVENTS = frozenset({"profiles.customers_merged", "profiles.customers_unmerged"})


async def live_id(conn: Any, customer_id: str) -> str:
    """The member a customer id earns for: its survivor when merged, else itself."""
    row = (await conn.execute(sa.select(merges.c.survivor_id).where(
        merges.c.merged_id == customer_id, merges.c.undone_at.is_(None)))).first()
    return str(row[0]) if row else customer_id


async def live_ids(conn: Any, customer_ids: Iterable[str]) -> dict[str, str]:
    """`live_id` of many customer ids in one query (ids without a merge map to themselves)."""
    wanted = sorted(set(customer_ids))
    out = {c: c for c in wanted}
    for i in range(0, len(wanted), 500):
        rows = await conn.execute(sa.select(merges.c.merged_id, merges.c.survivor_id).where(
            merges.c.merged_id.in_(wanted[i:i + 500]), merges.c.undone_at.is_(None)))
        out.update({str(m): str(s) for m, s in rows})
    return out


async def merged_history(conn: Any, customer_id: str) -> list[tuple[str, datetime | None]]:
    """(merged id, undone_at) of every record merged into this member, for tier progress."""
    rows = await conn.execute(sa.select(merges.c.merged_id, merges.c.undone_at).where(
        merges.c.survivor_id == customer_id))
    return [(str(r.merged_id), r.undone_at) for r in rows]


class MemberMerges:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.svc = kernel.service(LoyaltyService)

    async def merge(self, uow: UnitOfWork, event: Event) -> str | None:
        """Move the merged member to the survivor, once per merge event; returns the
        survivor when something was done (None for a redelivery or a no-op)."""
        p = event.payload or {}
        loser = str(p.get("merged_id") or "")
        survivor = await live_id(uow, str(p.get("survivor_id") or ""))
        if not loser or not survivor or loser == survivor:
            return None
        now = self.kernel.clock.now()
        if not await self._footprint(uow, loser):
            # Never a member (e.g. an anonymous visitor's record): nothing to move, only
            # where its later events go. No ledger entries for the many such merges.
            await self._remember(uow, loser, survivor, event.id, now)
            await uow.execute(member_segments.delete().where(
                member_segments.c.customer_id == loser))
            return None
        await self._one_welcome(uow, loser, survivor, event.id, now)
        moved = await ledger.transfer_member(
            uow, loser=loser, survivor=survivor, cause_id=event.id, now=now,
            reason=f"customer record {loser} merged into {survivor}: points moved")
        if moved is None:
            return None
        out, into = moved
        await self._remember(uow, loser, survivor, event.id, now)
        await self._move_state(uow, loser, survivor, now)
        pending = sum(a for acct, a in await self._legs(uow, survivor, into.txn_id)
                      if acct.endswith(":pending"))
        uow.emit(Event.new("loyalty.member_merged", {
            "merged_id": loser, "survivor_id": survivor, "points": into.points,
            "pending": pending, "entry_ids": [out.txn_id, into.txn_id],
            "merge_event_id": event.id,
        }, subject_id=survivor, source="loyalty"))
        return survivor

    @staticmethod
    async def _remember(uow: UnitOfWork, loser: str, survivor: str, event_id: str,
                        now: datetime) -> None:
        await uow.execute(merges.delete().where(merges.c.merged_id == loser))
        await uow.execute(merges.insert().values(
            merged_id=loser, survivor_id=survivor, event_id=event_id, merged_at=now))
        # Flatten: whatever was merged into the loser now belongs to the survivor.
        await uow.execute(merges.update().where(
            merges.c.survivor_id == loser, merges.c.undone_at.is_(None),
        ).values(survivor_id=survivor))

    @staticmethod
    async def _footprint(uow: UnitOfWork, cid: str) -> bool:
        """Whether loyalty holds anything of this record (membership, ledger, orders)."""
        for col in (members.c.customer_id, accounts.c.customer_id, purchases.c.customer_id):
            if (await uow.execute(sa.select(col).where(col == cid).limit(1))).first():
                return True
        return False

    async def _one_welcome(self, uow: UnitOfWork, loser: str, survivor: str, event_id: str,
                           now: datetime) -> None:
        """One welcome reward per person: when both records had one, what is left of the
        merged record's welcome is reversed (what was already spent is forgiven)."""
        def welcomes_of(ids: list[str]) -> Any:
            return sa.select(transactions.c.id).where(transactions.c.kind == "welcome",
                                                      transactions.c.customer_id.in_(ids))

        theirs = list((await uow.execute(welcomes_of([loser]))).scalars().all())
        if not theirs:
            return
        mine = [survivor, *(m for m, undone in await merged_history(uow, survivor)
                            if undone is None)]
        if (await uow.execute(welcomes_of(mine).limit(1))).first() is None:
            return
        for lot_id in theirs:
            left = (await uow.execute(sa.select(lots.c.remaining).where(
                lots.c.id == lot_id, lots.c.customer_id == loser))).scalar()
            if left:
                await ledger.reverse_lot(
                    uow, customer_id=loser, lot_id=lot_id, points=int(left), cause_id=event_id,
                    reason="welcome reward already granted to this person (one per person)",
                    now=now)

    async def unmerge(self, uow: UnitOfWork, event: Event) -> None:
        """Record the split; the restored record earns for itself again (points stay)."""
        p = event.payload or {}
        survivor, restored = str(p.get("survivor_id") or ""), str(p.get("restored_id") or "")
        if not survivor or not restored:
            return
        now = self.kernel.clock.now()
        marker = await ledger.post(
            uow, kind="unmerge", customer_id=survivor, cause_id=event.id, rule=restored,
            reason=f"customer record {restored} split off again: points, tier and progress "
                   "stay with this member", legs=[], now=now, ref=restored, points=0)
        if marker is None:
            return
        group = await self._group(restored)
        await uow.execute(merges.update().where(
            merges.c.merged_id.in_(group), merges.c.undone_at.is_(None),
        ).values(undone_at=now))

    async def _group(self, restored: str) -> list[str]:
        try:
            from kunde.profiles.service import ProfileService
        except ImportError:  # profiles not installed
            return [restored]
        ids = await self.kernel.service(ProfileService).member_ids(restored)
        return sorted({restored, *ids})

    @staticmethod
    async def _legs(uow: UnitOfWork, customer_id: str, txn_id: str
                    ) -> list[tuple[str, int]]:
        from kunde.loyalty.tables import entries

        rows = await uow.execute(sa.select(entries.c.account, entries.c.amount).where(
            entries.c.customer_id == customer_id, entries.c.txn_id == txn_id))
        return [(str(r.account), int(r.amount)) for r in rows]

    # -- everything but points ---------------------------------------------------------
    async def _move_state(self, uow: UnitOfWork, loser: str, survivor: str,
                          now: datetime) -> None:
        await self._move_tier(uow, loser, survivor, now)
        await uow.execute(purchases.update().where(purchases.c.customer_id == loser)
                          .values(customer_id=survivor))
        await self._sum_rows(uow, rule_usage, loser, survivor, ("rule_id", "window"),
                             ("points", "times"))
        await self._sum_rows(uow, season_xp, loser, survivor, ("season_id",), ("xp",))
        await self._copy_rows(uow, badges, loser, survivor)
        await self._move_streaks(uow, loser, survivor)
        team = await self._move_team(uow, loser, survivor)
        # Individual quest progress, and team progress when the survivor is in that team.
        solo = await self._copy_rows(uow, quest_marks, loser, survivor,
                                     quest_marks.c.team_id.is_(None))
        if team is not None:
            await self._copy_rows(uow, quest_marks, loser, survivor,
                                  quest_marks.c.team_id == team)
            await self._trim_to_member_cap(uow, survivor, team)
        await self._copy_rows(uow, quest_completions, loser, survivor)
        await self._complete_combined(uow, survivor, {(r.quest_id, r.round) for r in solo},
                                      now)
        await self._copy_rows(uow, season_results, loser, survivor)
        await uow.execute(member_segments.delete().where(member_segments.c.customer_id == loser))

    async def _move_tier(self, uow: UnitOfWork, loser: str, survivor: str,
                         now: datetime) -> None:
        old = (await uow.execute(sa.select(members).where(
            members.c.customer_id == loser))).first()
        if old is None:
            return
        prog = await self.svc.programme()
        current = await self.svc.ensure_member(uow, survivor, now)
        if prog.tier_rank(old.tier) > prog.tier_rank(current):
            await uow.execute(members.update().where(members.c.customer_id == survivor).values(
                tier=old.tier, tier_since=old.tier_since, tier_review_at=old.tier_review_at))
            uow.emit(Event.new("loyalty.tier_changed", {
                "from": current, "to": old.tier, "direction": "up", "reason": "merge",
            }, subject_id=survivor, source="loyalty"))
        await uow.execute(members.update().where(
            members.c.customer_id == survivor, members.c.joined_at > old.joined_at,
        ).values(joined_at=old.joined_at))
        await uow.execute(members.delete().where(members.c.customer_id == loser))

    @staticmethod
    async def _sum_rows(uow: UnitOfWork, table: sa.Table, loser: str, survivor: str,
                        keys: tuple[str, ...], counters: tuple[str, ...]) -> None:
        rows = (await uow.execute(sa.select(table).where(table.c.customer_id == loser))).all()
        for r in rows:
            key = {k: getattr(r, k) for k in keys}
            await uow.execute(insert_ignore(uow.dialect, table),
                              {"customer_id": survivor, **key, **dict.fromkeys(counters, 0)})
            await uow.execute(table.update().where(
                table.c.customer_id == survivor, *(table.c[k] == v for k, v in key.items()),
            ).values({c: table.c[c] + int(getattr(r, c)) for c in counters}))
        await uow.execute(table.delete().where(table.c.customer_id == loser))

    async def _complete_combined(self, uow: UnitOfWork, survivor: str,
                                 rounds: set[tuple[str, str]], now: datetime) -> None:
        """Solo quests the combined progress now completes are completed (and rewarded)
        at once; one either record had completed stays completed, never rewarded twice."""
        quests = {q.id: q for q in (await self.svc.programme()).quests if not q.team}
        engine = QuestEngine(self.kernel)
        for quest_id, rnd in sorted(rounds):
            q = quests.get(quest_id)
            if q is None or await engine.completed(uow, survivor, q.id, rnd):
                continue
            counts = await engine.step_counts(uow, survivor, q, rnd)
            if all(counts[i] >= s.count for i, s in enumerate(q.steps)):
                await engine.complete(uow, survivor, q, rnd, now)

    async def _trim_to_member_cap(self, uow: UnitOfWork, survivor: str, team: str) -> None:
        """Two records of one person in one team are one member: their combined marks on
        an open team quest round are cut to the quest's per-member cap (newest go)."""
        caps = {q.id: q.member_cap for q in (await self.svc.programme()).quests
                if q.team and q.member_cap is not None}
        if not caps:
            return
        rows = (await uow.execute(sa.select(quest_marks).where(
            quest_marks.c.customer_id == survivor, quest_marks.c.team_id == team,
            quest_marks.c.quest_id.in_(list(caps)))
            .order_by(quest_marks.c.at, quest_marks.c.mark))).all()
        kept: dict[tuple[str, str, int], int] = {}
        for r in rows:
            if await QuestEngine(self.kernel).completed(uow, team, r.quest_id, r.round):
                continue
            key = (r.quest_id, r.round, r.step)
            kept[key] = kept.get(key, 0) + 1
            if kept[key] > (caps[r.quest_id] or 0):
                await uow.execute(quest_marks.delete().where(
                    quest_marks.c.customer_id == survivor, quest_marks.c.quest_id == r.quest_id,
                    quest_marks.c.round == r.round, quest_marks.c.step == r.step,
                    quest_marks.c.mark == r.mark))

    @staticmethod
    async def _copy_rows(uow: UnitOfWork, table: sa.Table, loser: str, survivor: str,
                         *where: Any) -> list[Any]:
        """Rows keyed by customer: the survivor gets the loser's (duplicates collapse)."""
        cond = [table.c.customer_id == loser, *where]
        rows = list((await uow.execute(sa.select(table).where(*cond))).all())
        if rows:
            await uow.execute(insert_ignore(uow.dialect, table),
                              [{**r._mapping, "customer_id": survivor} for r in rows])
        await uow.execute(table.delete().where(*cond))
        return rows

    @staticmethod
    async def _move_streaks(uow: UnitOfWork, loser: str, survivor: str) -> None:
        rows = (await uow.execute(sa.select(streaks).where(
            streaks.c.customer_id == loser))).all()
        for r in rows:
            key = (streaks.c.customer_id == survivor, streaks.c.quest_id == r.quest_id)
            await uow.execute(insert_ignore(uow.dialect, streaks), {
                "customer_id": survivor, "quest_id": r.quest_id, "length": 0,
                "last_round": ""})
            # Keep the longer streak of the two.
            await uow.execute(streaks.update().where(*key, streaks.c.length < r.length)
                              .values(length=r.length, last_round=r.last_round))
        await uow.execute(streaks.delete().where(streaks.c.customer_id == loser))

    @staticmethod
    async def _move_team(uow: UnitOfWork, loser: str, survivor: str) -> str | None:
        """The survivor takes the loser's seat unless already in a team; the survivor's
        team afterwards (None: in no team)."""
        def team_of(cid: str) -> Any:
            return sa.select(team_members.c.team_id).where(team_members.c.customer_id == cid)

        theirs = (await uow.execute(team_of(loser))).scalar()
        mine = (await uow.execute(team_of(survivor))).scalar()
        if theirs is None:
            return str(mine) if mine else None
        if mine is None:
            await move_rows(uow, team_members, team_members.c.customer_id == loser,
                            customer_id=survivor)
            await uow.execute(teams.update().where(teams.c.id == theirs,
                                                   teams.c.owner_id == loser)
                              .values(owner_id=survivor))
            return str(theirs)
        # Already in a team: the loser's seat is given up (same team: one person, one seat).
        await uow.execute(team_members.delete().where(team_members.c.customer_id == loser))
        await uow.execute(teams.update().where(teams.c.id == theirs)
                          .values(size=teams.c.size - 1))
        if theirs == mine:
            await uow.execute(teams.update().where(teams.c.id == theirs,
                                                   teams.c.owner_id == loser)
                              .values(owner_id=survivor))
        return str(mine)
