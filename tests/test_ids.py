"""Ids: UUIDv7 for what Kunde mints, deterministic UUIDv8 for ids derived from a cause."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from kunde.core.ids import derived_id, new_id


def test_new_ids_are_v7_and_ordered() -> None:
    ids = [new_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids[:10])


@given(st.lists(st.text(max_size=20), min_size=1, max_size=4))
def test_derived_ids_are_stable_v8_and_distinct_per_cause(parts: list[str]) -> None:
    a = derived_id(*parts)
    assert a == derived_id(*parts)
    assert uuid.UUID(a).version == 8
    assert uuid.UUID(a).variant == uuid.RFC_4122
    assert derived_id(*parts, "other") != a
