"""Tables of the ingest feature.

``ingest_messages`` remembers every accepted message for the de-duplication window.
It is kept lean: a 16-byte key (a hash of source and messageId) as the only index,
and on SQLite a WITHOUT ROWID table, so the key index *is* the table.
"""

from __future__ import annotations

import sqlalchemy as sa

from kunde.store.distribution import by_key
from kunde.store.tables import metadata
from kunde.store.types import UtcDateTime

ingest_messages = sa.Table(
    "ingest_messages",
    metadata,
    sa.Column("key", sa.LargeBinary(16), primary_key=True),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sqlite_with_rowid=False,
)

# A message is accepted once whatever customer it turns out to be about (the customer is
# resolved after de-duplication), so the key stays globally unique: distributed by it.
by_key("ingest_message", "de-duplication holds across customers: one row per (source, "
       "messageId) key, distributed by that key", key=ingest_messages)
