"""Access and portability (GDPR Art. 15 and 20): one bundle of everything about a person.

A request row moves ``queued -> running -> ready`` (or ``failed``); the background job
(`run_queued`) builds the bundle by calling every ``Feature.export`` hook for the
customer and the ids merged into it, adds their event-log entries (decrypted), and
writes JSON plus a readable HTML summary, sealed, under ``KUNDE_DATA_DIR/exports``.
Progress is counted in steps (one per feature, plus the event log). The bundle is
downloaded through an expiring signed link; request, completion and download are audited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import sqlalchemy as sa

from kunde.core import jsonutil
from kunde.core.errors import NotFound
from kunde.core.ids import new_id
from kunde.features import Feature, all_features
from kunde.privacy.audit import AuditService
from kunde.privacy.exports_store import (
    delete_bundles,
    fallback_key,
    read_bundle,
    signed_link,
    write_bundle,
)
from kunde.privacy.subjects import subject_ids
from kunde.privacy.tables import export_requests
from kunde.store.database import UnitOfWork
from kunde.store.tables import events

if TYPE_CHECKING:
    from kunde.kernel import Kernel

log = logging.getLogger("kunde.privacy")
BUNDLE_LIFETIME = timedelta(days=7)
REQUEST_DEADLINE = timedelta(days=30)
EVENT_BATCH = 2000
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, trim_blocks=True, lstrip_blocks=True,
)


class ExportService:
    def __init__(self, kernel: Kernel, features: Sequence[Feature] | None = None) -> None:
        self.kernel = kernel
        self._features = list(features) if features is not None else None
        # Seconds per section of the last bundle built (for benchmarks and slow-export logs).
        self.timings: dict[str, float] = {}

    @property
    def features(self) -> list[Feature]:
        """The installed features (resolved at first use, not at construction)."""
        if self._features is None:
            self._features = all_features()
        return self._features

    async def request(self, customer_id: str, *, requested_by: str, channel: str) -> str:
        """Queue an export. Never says whether the customer exists: an unknown id gets an
        (empty) bundle like any other."""
        now = self.kernel.clock.now()
        request_id = new_id()
        async with self.kernel.db.transaction() as uow:
            await uow.execute(export_requests.insert().values(
                id=request_id, customer_id=customer_id, requested_by=requested_by,
                channel=channel, requested_at=now, due_at=now + REQUEST_DEADLINE,
                state="queued", progress=0, total=0))
            await self.kernel.service(AuditService).record(
                uow, requested_by, "privacy.export_requested", customer_id,
                {"request_id": request_id, "channel": channel})
        return request_id

    async def get(self, request_id: str) -> dict[str, Any]:
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(export_requests).where(
                export_requests.c.id == request_id))).first()
        if row is None:
            raise NotFound("no export with that id", code="privacy.request_not_found")
        return dict(row._mapping)

    async def run_queued(self) -> int:
        async with self.kernel.db.read() as conn:
            ids = [r.id for r in await conn.execute(
                sa.select(export_requests.c.id).where(
                    export_requests.c.state.in_(("queued", "running")))
                .order_by(export_requests.c.requested_at))]
        for rid in ids:
            await self.run(rid)
        return len(ids)

    async def run(self, request_id: str) -> None:
        """Build the bundle of one request (again, if a crash left it running)."""
        row = await self.get(request_id)
        if row["state"] not in ("queued", "running"):
            return
        feats = [f for f in self.features if f.export is not None]
        await self._progress(request_id, state="running", progress=0, total=len(feats) + 1)
        try:
            bundle = await self.build(row["customer_id"], request_id, feats)
            await self._store(row, bundle)
        except Exception as exc:
            log.exception("export %s failed", request_id)
            await self._progress(request_id, state="failed", error=repr(exc)[:2000])

    async def build(self, customer_id: str, request_id: str | None,
                    feats: Sequence[Feature] | None = None) -> dict[str, Any]:
        feats = [f for f in (feats if feats is not None else self.features) if f.export]
        ids = await subject_ids(self.kernel, customer_id)
        sections: dict[str, Any] = {}
        self.timings = {}
        for n, feature in enumerate(feats, start=1):
            assert feature.export is not None
            started = time.perf_counter()
            sections[feature.name] = jsonable(await feature.export(self.kernel, ids))
            self.timings[feature.name] = round(time.perf_counter() - started, 3)
            if request_id:
                await self._progress(request_id, progress=n)
        started = time.perf_counter()
        log_entries = await self.event_entries(ids)
        self.timings["event_log"] = round(time.perf_counter() - started, 3)
        return {
            "format": "kunde.export/1",
            "generated_at": self.kernel.clock.now().isoformat(),
            "customer_id": customer_id,
            "customer_ids": ids,
            "features": sections,
            "events": log_entries,
        }

    async def event_entries(self, ids: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async with self.kernel.db.read() as conn:
            for cid in ids:
                after = 0
                while True:
                    rows = (await conn.execute(
                        sa.select(events).where(events.c.subject_id == cid,
                                                events.c.position > after)
                        .order_by(events.c.position).limit(EVENT_BATCH))).all()
                    if not rows:
                        break
                    for e in await self.kernel.log.decode(conn, rows):
                        if e.erased:
                            continue
                        out.append({"id": e.id, "type": e.type, "customer_id": e.subject_id,
                                    "source": e.source, "occurred_at": e.occurred_at.isoformat(),
                                    "payload": e.payload})
                    after = int(rows[-1].position)
        return out

    async def _store(self, row: dict[str, Any], bundle: dict[str, Any]) -> None:
        k = self.kernel
        rid, cid = row["id"], row["customer_id"]
        keys = await self._subject_keys(cid)
        key = keys.get(cid) or fallback_key(k, rid)
        body = jsonutil.dumps(bundle)
        html = _templates.get_template("export.html").render(b=bundle, summary=summarise(bundle))
        size = write_bundle(k, rid, "json", key, body)
        write_bundle(k, rid, "html", key, html.encode())
        now = k.clock.now()
        summary = {"bytes": size, "events": len(bundle["events"]),
                   "sections": sorted(bundle["features"]), "key": "subject" if keys else "export"}
        async with k.db.transaction() as uow:
            await uow.execute(export_requests.update().where(export_requests.c.id == rid).values(
                state="ready", progress=export_requests.c.total, finished_at=now,
                expires_at=now + BUNDLE_LIFETIME, summary=summary))
            await k.service(AuditService).record(
                uow, "system:privacy", "privacy.exported", cid,
                {"request_id": rid, "events": summary["events"], "bytes": size})

    async def _subject_keys(self, customer_id: str) -> dict[str, bytes]:
        async with self.kernel.db.read() as conn:
            uow = UnitOfWork(conn, self.kernel.db.dialect)
            return await self.kernel.vault.keys_for(uow, [customer_id], create=False)

    async def _progress(self, request_id: str, **values: Any) -> None:
        async with self.kernel.db.transaction() as uow:
            await uow.execute(export_requests.update()
                              .where(export_requests.c.id == request_id).values(**values))

    async def open_bundle(self, request_id: str, fmt: str) -> bytes | None:
        """The clear bundle of a ready, unexpired request (None when gone)."""
        row = await self.get(request_id)
        if row["state"] != "ready" or (row["expires_at"] and
                                       row["expires_at"] < self.kernel.clock.now()):
            return None
        k = self.kernel
        keys = await self._subject_keys(row["customer_id"])
        key = keys.get(row["customer_id"]) or fallback_key(k, request_id)
        return read_bundle(k, request_id, fmt, key)

    def links(self, row: dict[str, Any]) -> dict[str, str]:
        if row["state"] != "ready" or row["expires_at"] is None:
            return {}
        expires = int(row["expires_at"].timestamp())
        return {fmt: signed_link(self.kernel, row["id"], fmt, expires) for fmt in ("json", "html")}

    async def record_download(self, uow: UnitOfWork, row: dict[str, Any], fmt: str) -> None:
        await self.kernel.service(AuditService).record(
            uow, "link:signed", "privacy.export_downloaded", row["customer_id"],
            {"request_id": row["id"], "format": fmt})

    async def expire(self) -> int:
        """Delete bundles past their expiry; returns how many requests expired."""
        now = self.kernel.clock.now()
        async with self.kernel.db.transaction() as uow:
            ids = [r.id for r in await uow.execute(sa.select(export_requests.c.id).where(
                export_requests.c.state == "ready", export_requests.c.expires_at < now))]
            if ids:
                await uow.execute(export_requests.update().where(export_requests.c.id.in_(ids))
                                  .values(state="expired"))
        delete_bundles(self.kernel, ids)
        return len(ids)


def jsonable(value: Any) -> Any:
    """What a hook returned, as plain JSON values (datetimes become ISO strings)."""
    return jsonutil.loads(jsonutil.dumps(value))


def summarise(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-section headline figures for the HTML summary."""
    rows = []
    for name, section in sorted(bundle["features"].items()):
        items = section.items() if isinstance(section, dict) else [("items", section)]
        for key, value in items:
            count = len(value) if isinstance(value, (list, dict)) else 1
            rows.append({"feature": name, "what": key, "count": count, "value": value})
    return rows
