"""Export and erasure requests: bundles, signed links, shredding, suppression, replay, restore."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from conftest import AppClient, app_client
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.features import Feature
from kunde.kernel import Kernel, close_kernel, open_kernel
from kunde.privacy.audit import AuditService
from kunde.privacy.erasure import ErasureService, read_erasure_log, reapply_erasures
from kunde.privacy.export import ExportService
from kunde.privacy.suppression import SuppressionService
from kunde.privacy.vault import SubjectErased
from kunde.store.database import UnitOfWork
from kunde.store.tables import events

CANARY = "canary-7f3a9c"


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[AppClient]:
    """The app with the foundation and privacy only, so these tests stand alone."""
    from kunde.access.feature import FEATURE as access
    from kunde.privacy.feature import FEATURE as privacy
    from kunde.web.feature import FEATURE as web

    async with app_client(kernel, features=[access, web, privacy]) as c:
        c.follow_redirects = True  # as Litestar's test client does
        yield c


async def emit(kernel: Kernel, customer_id: str, n: int = 3, **payload: Any) -> None:
    async with kernel.db.transaction() as uow:
        for i in range(n):
            uow.emit(Event.new("ingest.track", {"event": "Viewed", "i": i,
                                                "note": CANARY, **payload},
                               subject_id=customer_id, source="web"))


class Recorder:
    """A feature whose hooks record what privacy asked of them."""

    def __init__(self) -> None:
        self.erased: list[list[str]] = []

    def feature(self) -> Feature:
        async def export(kernel: Kernel, ids: Sequence[str]) -> dict[str, Any]:
            return {"ids": list(ids), "things": [{"n": 1}]}

        async def erase(kernel: Kernel, uow: UnitOfWork, ids: Sequence[str]) -> dict[str, int]:
            self.erased.append(list(ids))
            return {"things": len(ids)}

        return Feature(name="recorder", export=export, erase=erase)


async def test_export_bundle_has_hooks_and_decrypted_events(kernel: Kernel) -> None:
    cid = new_id()
    await emit(kernel, cid)
    svc = ExportService(kernel, [Recorder().feature()])
    rid = await svc.request(cid, requested_by="staff:u1", channel="staff")
    bundle = await svc.build(cid, rid)
    assert bundle["features"]["recorder"]["ids"] == [cid]
    assert [e["payload"]["note"] for e in bundle["events"]] == [CANARY] * 3


async def test_export_link_downloads_until_expiry(kernel: Kernel,
                                                  client: AppClient) -> None:
    cid = new_id()
    await emit(kernel, cid)
    svc = ExportService(kernel, [])
    rid = await svc.request(cid, requested_by="customer:x", channel="portal")
    await svc.run(rid)
    row = await svc.get(rid)
    assert row["state"] == "ready" and row["progress"] == row["total"]
    links = svc.links(row)
    r = await client.get(links["json"])
    assert r.status_code == 200 and CANARY in r.text
    html = await client.get(links["html"])
    assert html.status_code == 200 and "<table>" in html.text
    # The bundle on disk is sealed: the canary is not in the file.
    sealed = list((kernel.settings.data_path / "exports").glob(f"{rid}.*"))
    assert sealed and all(CANARY.encode() not in p.read_bytes() for p in sealed)
    q = parse_qs(urlsplit(links["json"]).query)
    bad = links["json"].replace(q["sig"][0], "0" * 64)
    assert (await client.get(bad)).status_code == 404
    other = links["json"].replace("/json?", "/html?")
    assert (await client.get(other)).status_code == 404
    audit = await kernel.service(AuditService).search(subject=cid)
    assert {"privacy.export_requested", "privacy.exported",
            "privacy.export_downloaded"} <= {e["action"] for e in audit}


async def test_erasure_shreds_suppresses_and_replays_harmlessly(kernel: Kernel) -> None:
    cid = new_id()
    await emit(kernel, cid)
    rec = Recorder()
    svc = ErasureService(kernel, [rec.feature()])
    rid = await svc.request(cid, requested_by="staff:u1", channel="staff",
                            identifiers={"email": "Canary@Example.org"})
    receipt = await svc.run(rid)
    assert receipt["features"] == {"recorder": {"things": 1}}
    assert receipt["keys_shredded"] == 1
    assert (await svc.get(rid))["state"] == "done"
    async with kernel.db.read() as conn:
        read = await kernel.log.read(conn, subject_id=cid)
    assert read and all(e.erased and e.payload is None for e in read)
    sup = kernel.service(SuppressionService)
    assert await sup.is_suppressed("email", " canary@example.org")
    assert await sup.is_suppressed("customer_id", cid)
    assert not await sup.is_suppressed("email", "someone@example.org")
    with pytest.raises(SubjectErased):
        await emit(kernel, cid, 1)
    # Replay: a second run and a second request change nothing.
    assert await svc.run(rid) == receipt
    rid2 = await svc.request(cid, requested_by="staff:u1", channel="staff")
    await svc.run(rid2)
    assert len(read_erasure_log(kernel)) >= 1
    assert (await kernel.service(AuditService).verify()).ok


async def test_erasure_covers_merged_ids(kernel: Kernel) -> None:
    survivor, merged, restored = new_id(), new_id(), new_id()
    await emit(kernel, merged)
    async with kernel.db.transaction() as uow:
        for other in (merged, restored):
            uow.emit(Event.new("profiles.customers_merged",
                               {"survivor_id": survivor, "merged_id": other, "reason": "email"},
                               subject_id=survivor))
        uow.emit(Event.new("profiles.customers_unmerged",
                           {"survivor_id": survivor, "restored_id": restored},
                           subject_id=survivor))
    rec = Recorder()
    svc = ErasureService(kernel, [rec.feature()])
    await svc.run(await svc.request(survivor, requested_by="staff:u1", channel="staff"))
    assert rec.erased == [[survivor, merged]]
    async with kernel.db.transaction() as uow:
        assert await kernel.vault.is_shredded(uow, merged)
        assert not await kernel.vault.is_shredded(uow, restored)


async def test_unknown_customer_export_looks_like_any_other(
        kernel: Kernel, client: AppClient, admin_headers: dict[str, str]) -> None:
    known = new_id()
    await emit(kernel, known, 1)
    token = kernel.access.issue_customer_token(new_id())
    bodies = []
    for cid in (known, new_id()):
        r = await client.post(f"/v1/privacy/customers/{cid}/exports", headers=admin_headers)
        assert r.status_code == 202
        bodies.append(set(r.json()))
    assert bodies[0] == bodies[1]
    r = await client.post(f"/v1/privacy/customers/{known}/exports",
                          headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403


async def test_self_service_export_and_erasure(kernel: Kernel,
                                               client: AppClient) -> None:
    me, other = new_id(), new_id()
    await emit(kernel, me, 2)
    h = {"Authorization": f"Bearer {kernel.access.issue_customer_token(me)}"}
    other_h = {"Authorization": f"Bearer {kernel.access.issue_customer_token(other)}"}
    r = await client.post("/v1/me/privacy/exports", headers=h)
    rid = r.json()["id"]
    await ExportService(kernel, []).run_queued()
    status = await client.get(f"/v1/me/privacy/exports/{rid}", headers=h)
    assert status.json()["state"] == "ready" and status.json()["links"]
    assert (await client.get(f"/v1/me/privacy/exports/{rid}", headers=other_h)).status_code == 404
    erased = await client.post("/v1/me/privacy/erasure", headers=h)
    assert erased.status_code == 200 and erased.json()["state"] == "done"
    # The bundle went with the customer.
    assert not list((kernel.settings.data_path / "exports").glob(f"{rid}.*"))


async def test_restore_of_an_older_backup_does_not_bring_the_customer_back(
        kernel: Kernel, backend: str, tmp_path: Path) -> None:
    if backend != "sqlite":
        pytest.skip("the file copy stands for a backup on SQLite; PostgreSQL backups are "
                    "the ops feature's")
    cid = new_id()
    await emit(kernel, cid)
    db_file = Path(kernel.settings.effective_database_url.split(":///", 1)[1])
    backup = tmp_path / "backup.db"
    src, dst = sqlite3.connect(db_file), sqlite3.connect(backup)
    src.backup(dst)
    src.close()
    dst.close()
    svc = ErasureService(kernel, [])
    await svc.run(await svc.request(cid, requested_by="staff:u1", channel="staff"))
    settings = kernel.settings
    await close_kernel(kernel)
    for suffix in ("-wal", "-shm"):
        Path(str(db_file) + suffix).unlink(missing_ok=True)
    shutil.copyfile(backup, db_file)
    restored = await open_kernel(settings, run_migrations=False)
    try:
        async with restored.db.read() as conn:
            before = await restored.log.read(conn, subject_id=cid)
        assert before and before[0].payload is not None  # the backup knows the customer
        assert await reapply_erasures(restored, []) == 1
        async with restored.db.read() as conn:
            after = await restored.log.read(conn, subject_id=cid)
        assert all(e.erased for e in after)
        assert await restored.service(SuppressionService).is_suppressed("customer_id", cid)
        assert await reapply_erasures(restored, []) == 0
    finally:
        await close_kernel(restored)
        kernel.db = (await open_kernel(settings, run_migrations=False)).db


async def test_retention_request_queue_lists_deadlines(kernel: Kernel) -> None:
    from kunde.privacy.requests import request_queue

    cid = new_id()
    await kernel.service(ExportService).request(cid, requested_by="staff:u1", channel="staff")
    rows = await request_queue(kernel, state="open")
    assert rows[0]["customer_id"] == cid and rows[0]["days_left"] in (29, 30)
    assert not rows[0]["overdue"]
    kernel.clock = type("Later", (), {"now": lambda self: rows[0]["due_at"] +
                                      timedelta(days=1)})()
    assert (await request_queue(kernel, state="open"))[0]["overdue"]


async def test_events_table_holds_no_clear_payload(kernel: Kernel) -> None:
    cid = new_id()
    await emit(kernel, cid)
    async with kernel.db.read() as conn:
        payloads = (await conn.execute(sa.select(events.c.payload)
                                       .where(events.c.subject_id == cid))).scalars().all()
    assert payloads and all(CANARY.encode() not in bytes(p) for p in payloads)
