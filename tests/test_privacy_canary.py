"""Proof by canary: a string planted in every personal field is found nowhere after erasure.

The planters are data: each names the route it needs and plants the canary through the
public API; a planter whose route is not installed is skipped, so the test grows as
features land (add a row to PLANTERS). After planting, consumers run, the export must
contain the canary (so planting really worked), then one erasure call runs and the
canary must be gone from the raw SQLite database and WAL files, from every column of
every PostgreSQL table, from everything under KUNDE_DATA_DIR (exports, erasure log,
archives), from the logs, and from a fresh export.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from litestar import Litestar

from conftest import AppClient
from conftest import app_client as running_app
from kunde.core import jsonutil
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.features import all_features
from kunde.kernel import Kernel
from kunde.privacy.export import ExportService, jsonable
from kunde.privacy.subjects import profile_service
from kunde.runtime import consumers_of
from kunde.store.consumers import ConsumerRunner


@dataclass
class Ctx:
    kernel: Kernel
    client: AppClient
    canary: str
    customer_id: str
    admin: dict[str, str]
    write_key: dict[str, str]
    customer: dict[str, str]

    @property
    def email(self) -> str:
        return f"{self.canary}@example.org"


Plant = Callable[[Ctx], Awaitable[Any]]


async def _ok(response: Any) -> None:
    assert response.status_code < 300, response.text


async def plant_identify(c: Ctx) -> None:
    await _ok(await c.client.post("/v1/identify", headers=c.write_key, json={
        "userId": f"user-{c.canary}", "messageId": new_id(),
        "traits": {"email": c.email, "first_name": c.canary, "last_name": c.canary,
                   "phone": "+49 30 1234567", "address": {"street": f"{c.canary} 1",
                                                          "city": c.canary}}}))


async def plant_track(c: Ctx) -> None:
    await _ok(await c.client.post("/v1/track", headers=c.write_key, json={
        "userId": f"user-{c.canary}", "messageId": new_id(), "event": "Note Left",
        "properties": {"note": c.canary, "email": c.email}}))


async def plant_case(c: Ctx) -> None:
    await _ok(await c.client.post("/v1/service/cases", headers=c.admin, json={
        "subject": f"help {c.canary}", "customer_id": c.customer_id,
        "body": f"my name is {c.canary}", "contact_email": c.email}))


async def plant_chat(c: Ctx) -> None:
    await _ok(await c.client.post("/v1/service/chat", headers=c.customer, json={
        "body": f"chat from {c.canary}", "subject": c.canary}))


async def plant_message(c: Ctx) -> None:
    await _ok(await c.client.post("/v1/messages", headers=c.admin, json={
        "customer_id": c.customer_id, "template": "order_confirmation",
        "idempotency_key": new_id(), "context": {
            "first_name": c.canary, "order_number": "1001", "currency": "EUR",
            "total_minor": 1999, "lines": [{"quantity": 1, "title": f"gift for {c.canary}"}],
            "promised_date": None}}))


async def plant_domain_event(c: Ctx) -> None:
    """A feature's own event about the customer (the event log is the outbox)."""
    async with c.kernel.db.transaction() as uow:
        uow.emit(Event.new("privacy.canary_noted", {"text": c.canary, "email": c.email},
                           subject_id=c.customer_id, source="server"))


# (name, route the planter needs or None, planter)
PLANTERS: list[tuple[str, str | None, Plant]] = [
    ("identify traits", "/v1/identify", plant_identify),
    ("track properties", "/v1/track", plant_track),
    ("service case", "/v1/service/cases", plant_case),
    ("service chat", "/v1/service/chat", plant_chat),
    ("message", "/v1/messages", plant_message),
    ("domain event", None, plant_domain_event),
]


async def drain(kernel: Kernel) -> None:
    runner = ConsumerRunner(kernel.db, kernel.log, consumers_of(kernel, all_features()),
                            lambda: frozenset(range(kernel.settings.partitions)))
    await runner.drain()


@pytest.fixture
async def app_client(kernel: Kernel) -> AsyncIterator[tuple[Litestar, AppClient]]:
    async with running_app(kernel) as c:
        c.follow_redirects = True  # as Litestar's test client does
        yield c.app, c


async def _customer_id(kernel: Kernel, canary: str, has_identify: bool) -> str:
    profiles = profile_service(kernel)
    if profiles is not None and has_identify:
        found = await profiles.resolve("user_id", f"user-{canary}")
        if found:
            return str(found)
    return new_id()


async def assert_stored_nowhere(kernel: Kernel, needle: bytes) -> None:
    """Not in any table, not in the SQLite file or its WAL, not under the data directory."""
    assert await _find_in_database(kernel, needle) == []
    if kernel.db.dialect == "sqlite":
        db_file = Path(kernel.settings.effective_database_url.split(":///", 1)[1])
        for suffix in ("", "-wal"):
            f = Path(str(db_file) + suffix)
            assert not f.exists() or needle not in f.read_bytes(), f"canary in {f.name}"
    assert _find_in_files(kernel.settings.data_path, needle) == []


async def _find_in_database(kernel: Kernel, needle: bytes) -> list[str]:
    hits = []
    async with kernel.db.read() as conn:
        if kernel.db.dialect == "postgresql":
            names = (await conn.execute(sa.text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars().all()
        else:
            names = (await conn.execute(sa.text(
                "SELECT name FROM sqlite_master WHERE type = 'table'"))).scalars().all()
        for name in names:
            rows = await conn.execute(sa.text(f'SELECT * FROM "{name}"'))  # noqa: S608
            for row in rows:
                for value in row:
                    raw = (bytes(value) if isinstance(value, (bytes, memoryview))
                           else str(value).encode() if isinstance(value, str)
                           else jsonutil.dumps(value) if isinstance(value, (dict, list))
                           else b"")
                    if needle in raw or needle in raw.lower():
                        hits.append(name)
    return hits


def _find_in_files(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def test_canary_is_gone_after_erasure(kernel: Kernel, app_client: Any,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app, client = app_client
    paths = {r.path for r in app.routes}
    canary = f"kq{uuid.uuid4().hex[:16]}"
    needle = canary.encode()
    _, admin_key = await kernel.access.create_api_key("canary-admin", ["*"])
    _, write_key = await kernel.access.create_source(f"canary-{new_id()[:8]}", "web")
    basic = base64.b64encode(f"{write_key}:".encode()).decode()
    ctx = Ctx(kernel, client, canary, "", {"Authorization": f"Bearer {admin_key}"},
              {"Authorization": f"Basic {basic}"}, {})
    active = [(n, route, plant) for n, route, plant in PLANTERS if route is None or route in paths]
    # Identify first: it creates the customer the other planters attach to.
    identified = bool(active) and active[0][0] == "identify traits"
    if identified:
        await active.pop(0)[2](ctx)
        await drain(kernel)
    ctx.customer_id = await _customer_id(kernel, canary, "/v1/identify" in paths)
    ctx.customer = {"Authorization":
                    f"Bearer {kernel.access.issue_customer_token(ctx.customer_id)}"}
    planted = ["identify traits"] if identified else []
    for name, _, plant in active:
        await plant(ctx)
        planted.append(name)
    print("planted through:", ", ".join(planted))
    await drain(kernel)

    bundle = await ExportService(kernel).build(ctx.customer_id, None)
    assert needle in jsonutil.dumps(bundle), "planting failed: the export lacks the canary"
    # Complete: every feature's section is exactly what that feature holds.
    for feature in all_features():
        if feature.export is not None:
            held = jsonable(await feature.export(kernel, bundle["customer_ids"]))
            assert bundle["features"][feature.name] == held, feature.name

    r = await client.post(f"/v1/privacy/customers/{ctx.customer_id}/erasures",
                          headers=ctx.admin, json={"identifiers": {"email": ctx.email}})
    assert r.status_code == 200 and r.json()["state"] == "done", r.text
    await drain(kernel)
    kernel.vault.forget_cached(ctx.customer_id)

    await assert_stored_nowhere(kernel, needle)
    after = await ExportService(kernel).build(ctx.customer_id, None)
    assert needle not in jsonutil.dumps(after)
    logged = "\n".join(rec.getMessage() + str(rec.__dict__) for rec in caplog.records)
    assert canary not in logged
