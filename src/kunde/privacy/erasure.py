"""Erasure (GDPR Art. 17): one request erases a customer across every feature.

A request is a durable row that moves ``pending -> erased -> done``:

1. ``pending``: created with the blind indexes of the identifiers to suppress (computed
   while the profile is still readable) and a deadline (one month).
2. One transaction calls every ``Feature.erase`` hook, adds the identifiers to the
   suppression list, shreds the data keys of the customer and every id merged into it,
   records the audit entry and the receipt, queues the receipt mail to the requester
   (see `kunde.privacy.receipts`), and sets ``erased``. A crash before the
   commit rolls everything back and the request is still ``pending``: it runs again.
3. After the commit the erasure is appended to the erasure log file under
   ``KUNDE_DATA_DIR`` (outside the database, so a restored backup cannot bring the
   person back: see `reapply_erasures`), then the request is ``done``.

Every step is idempotent, so a replayed or resumed request is harmless.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core import jsonutil
from kunde.core.errors import NotFound
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.features import Feature, all_features
from kunde.privacy.audit import AuditService
from kunde.privacy.exports_store import delete_bundles
from kunde.privacy.receipts import queue_receipt, receipt_subject, requester_address
from kunde.privacy.subjects import identifiers_of, subject_ids
from kunde.privacy.suppression import SuppressionService
from kunde.privacy.tables import erasure_requests, export_requests, shredded_subjects
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.kernel import Kernel

log = logging.getLogger("kunde.privacy")
REQUEST_DEADLINE = timedelta(days=30)
ERASURE_LOG = "erasure-log.jsonl"
OPEN_STATES = ("pending", "erased")


def erasure_log_path(kernel: Kernel) -> Path:
    return kernel.settings.data_path / ERASURE_LOG


class ErasureService:
    def __init__(self, kernel: Kernel, features: Sequence[Feature] | None = None) -> None:
        self.kernel = kernel
        self._features = list(features) if features is not None else None
        # An e-mail given with a request (held in memory only): where the receipt goes
        # when the profile has no address.
        self._given_email: dict[str, str] = {}

    @property
    def features(self) -> list[Feature]:
        """The installed features (resolved at first use, not at construction)."""
        if self._features is None:
            self._features = all_features()
        return self._features

    async def request(self, customer_id: str, *, requested_by: str, channel: str,
                      identifiers: dict[str, str] | None = None) -> str:
        """Open (or return the open) erasure request for a customer; returns its id."""
        k = self.kernel
        ids = await subject_ids(k, customer_id)
        found = await identifiers_of(k, ids)
        for kind, value in (identifiers or {}).items():
            if value:
                found.setdefault(kind, set()).add(value)
        suppress = sorted({(kind, k.vault.blind_index(kind, v))
                           for kind, values in found.items() for v in values})
        now = k.clock.now()
        async with k.db.transaction() as uow:
            existing = (await uow.execute(
                sa.select(erasure_requests.c.id).where(
                    erasure_requests.c.customer_id == customer_id,
                    erasure_requests.c.state.in_(OPEN_STATES)))).first()
            if existing is not None:
                request_id = str(existing.id)
                if (identifiers or {}).get("email"):
                    self._given_email[request_id] = str((identifiers or {})["email"])
                return request_id
            request_id = new_id()
            await uow.execute(erasure_requests.insert().values(
                id=request_id, customer_id=customer_id, requested_by=requested_by,
                channel=channel, requested_at=now, due_at=now + REQUEST_DEADLINE,
                state="pending", attempts=0, suppress=[list(p) for p in suppress],
                subject_ids=ids,
            ))
            await k.service(AuditService).record(
                uow, requested_by, "privacy.erasure_requested", customer_id,
                {"request_id": request_id, "channel": channel})
        if (identifiers or {}).get("email"):
            self._given_email[request_id] = str((identifiers or {})["email"])
        return request_id

    async def run(self, request_id: str) -> dict[str, Any]:
        """Carry a request to ``done`` from whatever state it is in; returns the receipt."""
        row = await self.get(request_id)
        if row["state"] == "pending":
            await self._erase(request_id)
            row = await self.get(request_id)
        if row["state"] == "erased":
            append_erasure_log(self.kernel, row)
            async with self.kernel.db.transaction() as uow:
                await uow.execute(erasure_requests.update().where(
                    erasure_requests.c.customer_id == row["customer_id"],
                    erasure_requests.c.id == request_id, erasure_requests.c.state == "erased"
                ).values(state="done", completed_at=self.kernel.clock.now()))
            await checkpoint_sqlite(self.kernel)
            row = await self.get(request_id)
        return dict(row["receipt"] or {})

    async def _erase(self, request_id: str) -> None:
        k = self.kernel
        head = await self.get(request_id)
        # Where the receipt goes, read while the profile is still readable.
        email, locale = await requester_address(k, head["customer_id"],
                                                self._given_email.get(request_id))
        async with k.db.transaction() as uow:
            if uow.dialect == "sqlite":
                # Overwrite deleted content instead of leaving it in free pages.
                await uow.execute(sa.text("PRAGMA secure_delete = ON"))
            this = (erasure_requests.c.customer_id == head["customer_id"],
                    erasure_requests.c.id == request_id)
            row = (await uow.execute(sa.select(erasure_requests).where(*this))).one()
            if row.state != "pending":
                return
            await uow.execute(erasure_requests.update().where(*this)
                              .values(attempts=row.attempts + 1))
            ids = list(row.subject_ids or [row.customer_id])
            receipt = await erase_subjects(k, uow, self.features, ids,
                                           [tuple(p) for p in row.suppress], request_id)
            receipt.update({"request_id": request_id, "customer_id": row.customer_id,
                            "requested_at": row.requested_at.isoformat()})
            receipt["delivery"] = await queue_receipt(
                k, uow, self.features, request_id, receipt, email, locale,
                row.requested_at.date().isoformat())
            await k.service(AuditService).record(
                uow, row.requested_by, "privacy.erased", row.customer_id,
                {"request_id": request_id, "subject_ids": ids,
                 "features": receipt["features"], "keys_shredded": receipt["keys_shredded"]})
            await uow.execute(erasure_requests.update().where(*this)
                              .values(state="erased", receipt=receipt))
        self._given_email.pop(request_id, None)

    async def get(self, request_id: str) -> dict[str, Any]:
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(erasure_requests).where(
                erasure_requests.c.id == request_id))).first()
        if row is None:
            raise NotFound("no erasure request with that id", code="privacy.request_not_found")
        return dict(row._mapping)

    async def resume_all(self) -> list[str]:
        """Finish every request left open (by a crash, or queued for the background)."""
        async with self.kernel.db.read() as conn:
            ids = [r.id for r in await conn.execute(
                sa.select(erasure_requests.c.id)
                .where(erasure_requests.c.state.in_(OPEN_STATES))
                .order_by(erasure_requests.c.requested_at))]
        done = []
        for rid in ids:
            try:
                await self.run(rid)
                done.append(rid)
            except Exception as exc:
                log.exception("erasure request %s failed; it stays open", rid)
                async with self.kernel.db.transaction() as uow:
                    await uow.execute(erasure_requests.update().where(
                        erasure_requests.c.id == rid).values(error=repr(exc)[:2000]))
        return done


async def erase_subjects(kernel: Kernel, uow: UnitOfWork, features: Sequence[Feature],
                         ids: list[str], suppress: list[tuple[str, ...]],
                         request_id: str) -> dict[str, Any]:
    """Everything an erasure does inside its one transaction; returns the receipt body."""
    counts: dict[str, dict[str, int]] = {}
    for feature in features:
        if feature.erase is not None:
            counts[feature.name] = dict(await feature.erase(kernel, uow, ids))
    suppressed = await kernel.service(SuppressionService).add(
        uow, [(str(p[0]), str(p[1])) for p in suppress], request_id)
    shredded = 0
    for cid in ids:
        shredded += int(await kernel.vault.shred(uow, cid, f"erasure {request_id}"))
    bundles = (await uow.execute(
        sa.select(export_requests.c.id).where(export_requests.c.customer_id.in_(ids)))).all()
    await uow.execute(export_requests.update().where(export_requests.c.customer_id.in_(ids))
                      .values(state="erased", summary=None))
    bundle_ids = [b.id for b in bundles]
    uow.after_commit(lambda: delete_bundles(kernel, bundle_ids))
    # No subject: its key is gone. Consumers drop caches and exclude the ids from training.
    uow.emit(Event.new("privacy.customer_erased",
                       {"customer_id": ids[0], "customer_ids": ids, "request_id": request_id}))
    return {
        "erased_at": kernel.clock.now().isoformat(),
        "subject_ids": ids,
        "features": counts,
        "keys_shredded": shredded,
        "identifiers_suppressed": suppressed,
        "exports_deleted": len(bundle_ids),
        "kept": "orders and invoices are kept pseudonymised for the statutory period "
                "(HGB §257, AO §147); see the commerce counts",
    }


async def checkpoint_sqlite(kernel: Kernel) -> None:
    """Fold the WAL into the database file and truncate it, so the pre-erasure page images
    it still holds are gone too (deleted content was zeroed by ``secure_delete``)."""
    if kernel.db.dialect != "sqlite":
        return
    try:
        async with kernel.db.writer.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except Exception:  # a busy reader only delays the truncation to the next checkpoint
        log.warning("WAL checkpoint after erasure did not complete", exc_info=True)


def append_erasure_log(kernel: Kernel, row: dict[str, Any]) -> None:
    """Append one line (ids and blind indexes only) and fsync; re-appending is harmless."""
    path = erasure_log_path(kernel)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = jsonutil.dumps({
        "request_id": row["id"], "customer_id": row["customer_id"],
        "subject_ids": list(row["subject_ids"] or [row["customer_id"]]),
        "suppress": [list(p) for p in row["suppress"]],
        "erased_at": (row["receipt"] or {}).get("erased_at"),
    }) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_erasure_log(kernel: Kernel) -> list[dict[str, Any]]:
    path = erasure_log_path(kernel)
    if not path.exists():
        return []
    entries = []
    for raw in path.read_bytes().splitlines():
        if raw.strip():
            try:
                entries.append(jsonutil.loads(raw))
            except ValueError:
                log.warning("skipping a damaged line of %s", path)
    return entries


async def reapply_erasures(kernel: Kernel, features: Sequence[Feature] | None = None) -> int:
    """Erase again everyone in the erasure log whom the database knows again (after a restore).

    Call after restoring a backup (and before serving traffic). Returns how many logged
    erasures had to be re-applied; the others were already in the database. The keys of
    their receipt mails are shredded too (see `kunde.privacy.receipts`).
    """
    feats = list(features) if features is not None else all_features()
    entries = read_erasure_log(kernel)
    if not entries:
        return 0
    async with kernel.db.read() as conn:
        shredded = {r.subject_id for r in await conn.execute(
            sa.select(shredded_subjects.c.subject_id))}
    again = 0
    for entry in entries:
        ids = [str(i) for i in entry["subject_ids"]]
        if all(i in shredded for i in ids):
            continue
        async with kernel.db.transaction() as uow:
            receipt = await erase_subjects(kernel, uow, feats, ids,
                                           [tuple(p) for p in entry["suppress"]],
                                           str(entry["request_id"]))
            await kernel.service(AuditService).record(
                uow, "system:restore", "privacy.erasure_reapplied", ids[0],
                {"request_id": entry["request_id"], "features": receipt["features"]})
        shredded.update(ids)
        again += 1
    # A backup taken before a receipt was sealed holds its key (and so the sealed address):
    # shred it again. A receipt not sent before the restore is not sent after it.
    receipts = {receipt_subject(str(e["request_id"])): str(e["request_id"]) for e in entries}
    unsealed = [s for s in receipts if s not in shredded]
    if unsealed:
        async with kernel.db.transaction() as uow:
            for subject in unsealed:
                await kernel.vault.shred(uow, subject,
                                         f"erasure receipt {receipts[subject]} after restore")
    return again
