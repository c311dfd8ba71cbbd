"""Tables of the ingest feature.

``ingest_messages`` remembers every accepted message for the de-duplication window.
It is kept lean: a 16-byte key (a hash of source and messageId) as the only index,
and on SQLite a WITHOUT ROWID table, so the key index *is* the table.
"""

from __future__ import annotations

import sqlalchemy as sa

from kunde.store.tables import metadata
from kunde.store.types import UtcDateTime

ingest_messages = sa.Table(
    "ingest_messages",
    metadata,
    sa.Column("key", sa.LargeBinary(16), primary_key=True),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sqlite_with_rowid=False,
)
