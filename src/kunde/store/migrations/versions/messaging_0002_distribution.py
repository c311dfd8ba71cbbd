"""messaging: distributable by customer (Citus); idempotency keys kept global.

Revision ID: messaging_0002

``messages`` gets the primary key (customer_id, id) and a plain index on id. Its
unique idempotency key moves to ``message_keys`` (one row per key, filled from the
existing messages), so that the key stays unique across customers.

messaging_0001 builds its tables from ``tables.py`` as it stands, so on a new database
they have this shape already: each step changes only what differs (store/migrate_ops.py).
"""

import sqlalchemy as sa
from alembic import op

from kunde.store.migrate_ops import create_index_if_missing, create_table_if_missing, rekey
from kunde.store.types import UtcDateTime

revision = "messaging_0002"
down_revision = "messaging_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if create_table_if_missing(
        "message_keys",
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", name="pk_message_keys"),
    ):
        op.execute("INSERT INTO message_keys (idempotency_key, message_id, created_at) "
                   "SELECT idempotency_key, id, created_at FROM messages")
    rekey("messages", ["customer_id", "id"], drop_unique=[["idempotency_key"]])
    create_index_if_missing("ix_messages_id", "messages", ["id"])


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
