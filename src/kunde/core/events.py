"""The event envelope: what every entry of the event log carries.

An `Event` is created by a command (``Event.new``), appended in the same
transaction as the state change it describes, and delivered to consumers with
its log ``position`` filled in.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any

import msgspec

from kunde.core.clock import utcnow
from kunde.core.ids import new_id


class Event(msgspec.Struct, kw_only=True):
    id: str
    type: str
    subject_id: str | None
    source: str
    occurred_at: datetime
    received_at: datetime
    payload: dict[str, Any] | None
    position: int = 0
    partition: int = 0
    # True when the payload could not be read because the subject's key was shredded.
    erased: bool = False

    @classmethod
    def new(
        cls,
        type: str,
        payload: dict[str, Any],
        *,
        subject_id: str | None = None,
        source: str = "system",
        occurred_at: datetime | None = None,
        event_id: str | None = None,
    ) -> Event:
        now = utcnow()
        return cls(
            id=event_id or new_id(),
            type=type,
            subject_id=subject_id,
            source=source,
            occurred_at=occurred_at or now,
            received_at=now,
            payload=payload,
        )


def partition_of(subject_id: str | None, partitions: int) -> int:
    """Stable partition of a subject: every event of one customer lands in one partition."""
    if subject_id is None:
        return 0
    return zlib.crc32(subject_id.encode()) % partitions
