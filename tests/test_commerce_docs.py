"""Runs every example of docs/commerce.md: the HTTP requests in order, and the CLI import."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from kunde.app import create_app
from kunde.commerce.service_catalog import CatalogService
from kunde.kernel import Kernel
from kunde.settings import Settings

DOC = Path(__file__).parent.parent / "docs" / "commerce.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(kernel=kernel)
    app.state.kernel = kernel
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver.local") as c:
        yield c


async def test_http_examples_run_in_order(client: httpx.AsyncClient,
                                          admin_headers: dict[str, str]) -> None:
    seen: dict[str, Any] = {}
    examples = blocks("http")
    assert len(examples) >= 10
    for text in examples:
        head, _, body = text.partition("\n\n")
        first, *header_lines = head.strip().splitlines()
        method, path = first.split(" ", 1)
        headers = dict(h.split(": ", 1) for h in header_lines)
        r = await client.request(method, path.format(**seen), headers={**admin_headers,
                                                                        **headers},
                                 content=body.strip().encode() or None)
        assert r.status_code < 300, (first, r.text)
        data = r.json()
        if isinstance(data, dict):
            seen.update({k: v for k, v in data.items() if k.endswith("_id")})
        elif data and isinstance(data[0], dict):
            seen.update({k: v for k, v in data[0].items() if k.endswith("_id")})
    assert seen["order_id"]


async def test_cli_import_example(settings: Settings, kernel: Kernel, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from kunde.cli import _feature_commands, app

    csv_file = tmp_path / "catalog.csv"
    csv_file.write_text(blocks("csv")[0])
    monkeypatch.setenv("KUNDE_ENV", "test")
    monkeypatch.setenv("KUNDE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("KUNDE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KUNDE_SECRET_KEY", settings.secret_key)
    if not any(g.name == "catalog" for g in app.registered_groups):
        _feature_commands()
    command = blocks("console")[0].strip().removeprefix("$ kunde ").split()
    result = await asyncio.to_thread(CliRunner().invoke, app, [*command[:-1], str(csv_file)])
    assert result.exit_code == 0, result.output
    assert "imported 1 products, 2 variants, 2 stock rows" in result.output
    product = await kernel.service(CatalogService).get_product("CAP")
    assert {v["sku"]: v["available"] for v in product["variants"]} == {
        "CAP-L": {"wh-1": 4}, "CAP-S": {"wh-1": 10}}
    assert product["variants"][0]["attributes"] == {"size": "L"}
