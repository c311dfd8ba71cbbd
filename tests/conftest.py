"""Test fixtures: a real database per test, on SQLite and (when configured) PostgreSQL.

* SQLite: the schema is migrated once per session into a template file, copied per test.
* PostgreSQL: ``KUNDE_TEST_POSTGRES_URL`` names a server; one fresh database is created
  per test session (so parallel runs never collide), migrated once, and every table
  is truncated after each test. Under ``CI=true`` a missing or unreachable server fails
  the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from litestar import Litestar

from kunde.app import create_app
from kunde.kernel import Kernel, close_kernel, open_kernel
from kunde.settings import Settings, load_settings
from kunde.store import distribution, migrate

PG_URL = os.environ.get("KUNDE_TEST_POSTGRES_URL", "")
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["sqlite", "postgres"] if PG_URL else ["sqlite"]
TEST_SECRET = "test-secret-key-0123456789abcdef0123456789"


def pytest_sessionstart(session: pytest.Session) -> None:
    if IN_CI and not PG_URL:
        raise pytest.UsageError("CI=true but KUNDE_TEST_POSTGRES_URL is not set; "
                                "CI must run the suite on PostgreSQL too")


_moved_distribution_columns: list[str] = []
_schema = migrate.all_metadata()


@sa.event.listens_for(sa.engine.Engine, "before_cursor_execute")
def _watch_distribution_columns(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    if conn.info.get("migrating"):
        return
    moved = distribution.sets_distribution_column(statement, _schema)
    if moved:
        _moved_distribution_columns.append(f"{moved}: {statement[:200]}")


@pytest.fixture(autouse=True)
def _no_distribution_column_updates() -> Iterator[None]:
    """No statement may change a row's distribution column (ADR 0015): Citus refuses it."""
    _moved_distribution_columns.clear()
    yield
    assert _moved_distribution_columns == [], _moved_distribution_columns


def test_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(
        environ={},
        env="test",
        data_dir=str(data_dir),
        database_url=database_url,
        secret_key=TEST_SECRET,
        run_consumers=False,
        log_json=False,
        **overrides,
    )


# -- PostgreSQL -----------------------------------------------------------------
def _admin_dsn() -> str:
    return PG_URL.replace("postgresql+asyncpg://", "postgresql://")


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _pg_exec(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_admin_dsn(), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not PG_URL:
        pytest.skip("KUNDE_TEST_POSTGRES_URL is not set")
    name = f"kunde_t_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_pg_exec(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is unreachable: {exc!r}", pytrace=False)
    url = _with_db(_admin_dsn(), name)
    settings = test_settings(url, tmp_path_factory.mktemp("pg"))

    async def migrate() -> None:
        await close_kernel(await open_kernel(settings))

    asyncio.run(migrate())
    yield url
    asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sqlite-template")
    path = folder / "kunde.db"
    settings = test_settings(f"sqlite+aiosqlite:///{path}", folder)

    async def migrate() -> None:
        await close_kernel(await open_kernel(settings))

    asyncio.run(migrate())
    with sqlite3.connect(path) as conn:  # fold the WAL into the file we copy
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


async def _truncate_all(kernel: Kernel) -> None:
    async with kernel.db.writer.connect() as conn:
        names = (await conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"))).scalars().all()
        if names:
            quoted = ", ".join(f'"{n}"' for n in names)
            await conn.execute(sa.text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
        await conn.commit()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    template: Path = request.getfixturevalue("sqlite_template")
    target = tmp_path / "kunde.db"
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return test_settings(database_url, tmp_path)


@pytest.fixture
async def kernel(settings: Settings, backend: str) -> AsyncIterator[Kernel]:
    k = await open_kernel(settings, run_migrations=False)
    try:
        yield k
    finally:
        if backend == "postgres":
            await _truncate_all(k)
        await close_kernel(k)


class AppClient(httpx.AsyncClient):
    """An HTTP client bound to an app running in the test's own event loop."""

    app: Litestar


@asynccontextmanager
async def app_client(kernel: Kernel, **create: Any) -> AsyncIterator[AppClient]:
    """The app on this kernel, with the features started, in the test's event loop.

    Litestar's own test client runs the app in a second event loop, which asyncpg
    connections made in the test's loop cannot be used from.
    """
    app = create_app(kernel=kernel, **create)
    features = app.state.features
    # The features' start-up hooks, as the lifespan would run them (the lifespan itself
    # enters an anyio scope that pytest-asyncio would exit from another task).
    for f in features:
        if f.startup:
            await f.startup(kernel)
    try:
        transport = httpx.ASGITransport(app=app)
        async with AppClient(transport=transport, base_url="http://testserver.local") as c:
            c.app = app
            yield c
    finally:
        for f in reversed(features):
            if f.shutdown:
                await f.shutdown(kernel)


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[AppClient]:
    async with app_client(kernel) as c:
        yield c


@pytest.fixture
async def admin_key(kernel: Kernel) -> str:
    _, key = await kernel.access.create_api_key("test-admin", ["*"])
    return key


@pytest.fixture
def admin_headers(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}


# -- a real server in a subprocess -------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], env: dict[str, str]) -> None:
        self.url, self.proc, self.env = url, proc, env

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_server(env_overrides: dict[str, str], tmp_path: Path) -> LiveServer:
    port = free_port()
    env = {**os.environ, "KUNDE_ENV": "test", "KUNDE_DATA_DIR": str(tmp_path),
           "KUNDE_SECRET_KEY": TEST_SECRET, "KUNDE_LOG_JSON": "false", **env_overrides}
    log = (tmp_path / f"server-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kunde", "serve", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((tmp_path / f"server-{port}.log").read_text())
        try:
            if httpx.get(url + "/health/live", timeout=1).status_code == 200:
                return LiveServer(url, proc, env)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 60 s")


@pytest.fixture
def live_server(database_url: str, tmp_path: Path, kernel: Kernel) -> Iterator[LiveServer]:
    """`kunde serve` in a subprocess on the test's database, consumers running."""
    server = start_server({"KUNDE_DATABASE_URL": database_url}, tmp_path)
    try:
        yield server
    finally:
        server.stop()


# -- a real browser ------------------------------------------------------------------
CHROMIUM = os.environ.get("KUNDE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def console_login(page: Any, base_url: str, email: str, password: str) -> None:
    await page.goto(f"{base_url}/console/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_load_state("networkidle")


@pytest.fixture
def smtp() -> Iterator[Any]:
    """A real SMTP server (aiosmtpd) on a free port; ``smtp.inbox.mails`` holds what arrived."""
    from mail_helpers import Smtp

    server = Smtp(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def inbound_port(kernel: Kernel) -> AsyncIterator[int]:
    """Kunde's own inbound SMTP server (service feature), started on a free port."""
    from kunde.service.smtp import InboundSmtp

    server = kernel.service(InboundSmtp)
    port = await server.start("127.0.0.1", 0)
    try:
        yield port
    finally:
        await server.stop()
