"""The Spec parser, pure: normalisation, clock skew, e-commerce projection, and fuzzing."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import AppClient, app_client
from kunde.features import all_features
from kunde.ingest import ecommerce
from kunde.ingest.errors import IngestError
from kunde.ingest.models import (
    MAX_BATCH_BYTES,
    corrected_time,
    decompress,
    normalise_batch,
    parse_body,
)
from kunde.kernel import Kernel

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_clock_skew_correction() -> None:
    ts = datetime(2020, 1, 1, tzinfo=UTC)
    assert corrected_time(ts, ts + timedelta(seconds=30), NOW) == NOW - timedelta(seconds=30)
    assert corrected_time(ts, None, NOW) == ts
    assert corrected_time(None, None, NOW) == NOW


def test_batch_context_and_sent_at_apply_to_events() -> None:
    body = {"sentAt": "2026-11-23T11:00:10Z", "context": {"channel": "store"},
            "batch": [{"type": "track", "event": "X", "userId": 42,
                       "timestamp": "2026-11-23T11:00:00Z"}]}
    (m,) = normalise_batch(body, received_at=NOW, channel="web", raw_size=100)
    assert m["user_id"] == "42" and m["channel"] == "store"
    assert m["occurred_at"] == NOW - timedelta(seconds=10)
    assert m["message_id"].startswith("derived-")


def test_ecommerce_projection() -> None:
    p = ecommerce.project({"event": "Order Completed", "channel": "web", "properties": {
        "order_id": "o1", "total": "27.50", "currency": "eur", "products": [
            {"sku": "A", "price": 12.5, "quantity": 2, "category": "shoes"}]}})
    assert p is not None
    assert p["kind"] == "order_completed" and p["revenue_minor"] == 2750
    assert p["currency"] == "EUR" and p["products"][0]["price_minor"] == 1250
    jpy = ecommerce.project({"event": "Product Viewed", "properties": {"price": 1200,
                                                                       "currency": "JPY"}})
    assert jpy is not None and jpy["price_minor"] == 1200
    assert ecommerce.project({"event": "Signed Up", "properties": {}}) is None
    assert ecommerce.to_minor("NaN", "EUR") is None and ecommerce.to_minor(True, "EUR") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "event", "userId", "anonymousId", "timestamp", "sentAt",
                         "properties", "traits", "context", "messageId", "previousId",
                         "groupId", "name", "x"]), children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(json_values, max_size=5).map(lambda b: json.dumps({"batch": b}).encode()),
))
def test_parser_never_fails_unexpectedly(body: bytes) -> None:
    """Any bytes either parse into messages or raise an IngestError (a 4xx), nothing else."""
    status = 200
    try:
        data = parse_body(decompress(body, None), limit=MAX_BATCH_BYTES)
        normalise_batch(data, received_at=NOW, channel="web", raw_size=len(body))
    except IngestError as exc:
        status = exc.http_status
    assert status == 200 or 400 <= status < 500


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[AppClient]:
    async with app_client(kernel, features=[f for f in all_features()
                                            if f.name in {"access", "web", "profiles",
                                                          "ingest"}]) as c:
        yield c


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(json_values, max_size=4), gz=st.booleans())
async def test_http_fuzz_never_5xx(client: httpx.AsyncClient, kernel: Kernel,
                                   events: list[Any], gz: bool) -> None:
    if not hasattr(kernel, "_fuzz_key"):
        _, key = await kernel.access.create_source("fuzz", "web")
        kernel._fuzz_key = key  # type: ignore[attr-defined]
    auth = base64.b64encode(f"{kernel._fuzz_key}:".encode()).decode()  # type: ignore[attr-defined]
    raw = json.dumps({"batch": events}).encode()
    headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/json"}
    if gz:
        raw, headers["Content-Encoding"] = gzip.compress(raw), "gzip"
    r = await client.post("/v1/batch", content=raw, headers=headers)
    assert r.status_code < 500, r.text
