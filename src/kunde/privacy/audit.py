"""The audit log: append-only, hash-chained record of who touched personal data.

Call it from any feature, inside the transaction of the action it records::

    from kunde.privacy.audit import AuditService

    await kernel.service(AuditService).record(
        uow, actor="staff:<user id>", action="profiles.viewed",
        subject="<customer id>", details={"fields": ["email"]})

What callers may rely on:

* ``record`` appends exactly one entry in the caller's transaction: it commits or rolls
  back with the action it describes. It serialises appends (an advisory lock on
  PostgreSQL, the single writer on SQLite), so entries form one chain.
* ``actor`` says who acted: ``staff:<id>``, ``api_key:<id>``, ``customer:<id>``,
  ``system:<job>``; ``action`` is ``<feature>.<past_tense>`` (``privacy.erased``,
  ``profiles.merged``, ``access.key_created``, ``keys.master_rotated``).
* ``details`` must be JSON and must not hold personal data in clear (ids, counts,
  field names, reasons — never an email or a name): the log outlives erasures.
* Each entry's ``hash`` is ``sha256(prev_hash || canonical JSON of the entry)``;
  `verify_chain` (``kunde audit verify``) recomputes the chain and reports the first
  entry that was edited, inserted or deleted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core import jsonutil
from kunde.core.ids import new_id
from kunde.privacy.tables import audit_checkpoints, audit_log
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.kernel import Kernel

GENESIS = "0" * 64
AUDIT_LOCK_KEY = 0x4B41554454  # "KAUDT"


def entry_hash(prev_hash: str, seq: int, entry_id: str, at: datetime, actor: str, action: str,
               subject: str | None, details: Any) -> str:
    canonical = jsonutil.dumps({
        "seq": seq, "id": entry_id, "at": at.isoformat(timespec="microseconds"),
        "actor": actor, "action": action, "subject": subject, "details": _sorted(details),
    })
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()


def _canonical_details(details: Any) -> Any:
    # Round-trip through JSON with sorted keys so the stored form hashes the same everywhere.
    return jsonutil.loads(jsonutil.dumps(_sorted(details)))


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_sorted(v) for v in value]
    return value


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


class AuditService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def record(self, uow: UnitOfWork, actor: str, action: str, subject: str | None,
                     details: dict[str, Any] | None = None, *, entry_id: str | None = None
                     ) -> str:
        """Append one entry in the caller's transaction; returns the entry id.

        Pass a deterministic ``entry_id`` (``kunde.core.ids.derived_id(event.id)``) from
        an event consumer: a redelivered event then records nothing a second time.
        """
        if entry_id is not None and (await uow.execute(
                sa.select(audit_log.c.id).where(audit_log.c.id == entry_id))).first():
            return entry_id
        if uow.dialect == "postgresql":
            await uow.execute(sa.select(sa.func.pg_advisory_xact_lock(AUDIT_LOCK_KEY)))
        last = (await uow.execute(
            sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        )).first()
        if last is None:
            cp = (await uow.execute(
                sa.select(audit_checkpoints.c.seq, audit_checkpoints.c.hash)
                .order_by(audit_checkpoints.c.seq.desc()).limit(1))).first()
            seq, prev = (int(cp.seq) + 1, str(cp.hash)) if cp else (1, GENESIS)
        else:
            seq, prev = int(last.seq) + 1, str(last.hash)
        entry_id = entry_id or new_id()
        # Microsecond precision survives both databases unchanged, so the hash is stable.
        at = self.kernel.clock.now()
        clean = _canonical_details(details or {})
        digest = entry_hash(prev, seq, entry_id, at, actor, action, subject, clean)
        await uow.execute(audit_log.insert().values(
            seq=seq, id=entry_id, at=at, actor=actor[:200], action=action[:100],
            subject_id=subject, details=clean, prev_hash=prev, hash=digest,
        ))
        return entry_id

    async def search(self, *, actor: str | None = None, action: str | None = None,
                     subject: str | None = None, since: datetime | None = None,
                     until: datetime | None = None, limit: int = 100, before_seq: int | None = None
                     ) -> list[dict[str, Any]]:
        """Newest first; every filter is optional (``action`` matches a prefix)."""
        q = sa.select(audit_log)
        if actor:
            q = q.where(audit_log.c.actor == actor)
        if action:
            q = q.where(audit_log.c.action.startswith(action, autoescape=True))
        if subject:
            q = q.where(audit_log.c.subject_id == subject)
        if since:
            q = q.where(audit_log.c.at >= since)
        if until:
            q = q.where(audit_log.c.at < until)
        if before_seq:
            q = q.where(audit_log.c.seq < before_seq)
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(
                q.order_by(audit_log.c.seq.desc()).limit(min(limit, 1000)))).all()
        return [{"seq": r.seq, "id": r.id, "at": r.at, "actor": r.actor, "action": r.action,
                 "subject_id": r.subject_id, "details": r.details, "hash": r.hash} for r in rows]

    async def verify(self, batch: int = 5000) -> ChainReport:
        """Recompute the whole chain; the first broken link is reported."""
        async with self.kernel.db.read() as conn:
            cp = (await conn.execute(
                sa.select(audit_checkpoints.c.seq, audit_checkpoints.c.hash)
                .order_by(audit_checkpoints.c.seq.desc()).limit(1))).first()
            expected_seq, prev = (int(cp.seq) + 1, str(cp.hash)) if cp else (1, GENESIS)
            checked = 0
            while True:
                rows = (await conn.execute(
                    sa.select(audit_log).where(audit_log.c.seq >= expected_seq)
                    .order_by(audit_log.c.seq).limit(batch))).all()
                if not rows:
                    break
                report = verify_rows(rows, expected_seq, prev)
                checked += report.checked
                if not report.ok:
                    return ChainReport(False, checked, report.first_bad_seq, report.problem)
                expected_seq, prev = int(rows[-1].seq) + 1, str(rows[-1].hash)
            # A deleted first entry leaves a later first seq than the checkpoint allows.
            lowest = (await conn.execute(sa.select(sa.func.min(audit_log.c.seq)))).scalar()
            if lowest is not None and int(lowest) < (int(cp.seq) + 1 if cp else 1):
                return ChainReport(False, checked, int(lowest), "entry before the checkpoint")
        return ChainReport(True, checked)


def verify_rows(rows: Sequence[Any], expected_seq: int, prev: str) -> ChainReport:
    """Check consecutive rows against the chain; pure, used by `AuditService.verify`."""
    for n, r in enumerate(rows):
        if int(r.seq) != expected_seq:
            return ChainReport(False, n, expected_seq, f"entry {expected_seq} is missing")
        if r.prev_hash != prev:
            return ChainReport(False, n, int(r.seq), "previous hash does not match")
        digest = entry_hash(prev, int(r.seq), r.id, r.at, r.actor, r.action, r.subject_id,
                            r.details)
        if digest != r.hash:
            return ChainReport(False, n, int(r.seq), "entry was altered")
        prev, expected_seq = r.hash, expected_seq + 1
    return ChainReport(True, len(rows))


def actor_of(principal: Any) -> str:
    """``kind:id`` of a `kunde.access.models.Principal` (or ``system`` when there is none)."""
    if principal is None:
        return "system"
    return f"{principal.kind}:{principal.id}"
