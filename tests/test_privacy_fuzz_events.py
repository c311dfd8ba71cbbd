"""Fuzz target for the event parser: whatever bytes arrive, parsing ends in a normalised
event or a stable 4xx `KundeError`, never another exception (which would be a 500).

``.ci/security`` runs this with ``KUNDE_FUZZ_EXAMPLES`` (default 100 here, 5,000 there).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kunde.core.errors import KundeError

models = pytest.importorskip("kunde.ingest.models")
EXAMPLES = int(os.environ.get("KUNDE_FUZZ_EXAMPLES", "100"))
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=5),
    max_leaves=30,
)
spec_keys = st.sampled_from(["type", "userId", "anonymousId", "messageId", "event", "name",
                             "traits", "properties", "context", "timestamp", "sentAt",
                             "groupId", "previousId", "integrations", "originalTimestamp"])
spec_like = st.dictionaries(spec_keys, json_values, max_size=10)
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _parse(body: bytes, kind: str | None) -> Any:
    data = models.parse_body(body, limit=models.MAX_BATCH_BYTES)
    if kind == "batch":
        return models.normalise_batch(data, received_at=NOW, channel="web", raw_size=len(body))
    return models.normalise(data, index=None, kind=kind, received_at=NOW, batch_sent_at=None,
                            channel="web", check_size=True)


def _status(body: bytes, kind: str | None) -> int | None:
    """None when the body parses, else the HTTP status of the refusal."""
    try:
        _parse(body, kind)
    except KundeError as exc:
        return exc.http_status
    return None


@FUZZ
@given(body=st.binary(max_size=300), kind=st.sampled_from([None, "track", "batch"]))
def test_arbitrary_bytes_never_crash_the_parser(body: bytes, kind: str | None) -> None:
    status = _status(body, kind)
    assert status is None or 400 <= status < 500


@FUZZ
@given(event=spec_like, kind=st.sampled_from([None, "track", "identify", "page", "alias",
                                              "group", "batch"]))
def test_spec_shaped_events_parse_or_are_refused_cleanly(event: dict[str, Any],
                                                         kind: str | None) -> None:
    body = msgspec.json.encode({"batch": [event]} if kind == "batch" else event)
    status = _status(body, kind)
    if status is not None:
        assert 400 <= status < 500
        return
    result = _parse(body, kind)
    payloads = result if isinstance(result, list) else [result]
    for p in payloads:
        assert p["user_id"] or p["anonymous_id"]
        assert p["occurred_at"].tzinfo is not None
