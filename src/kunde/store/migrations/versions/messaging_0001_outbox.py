"""messaging: the outbox and archive of messages, webhook endpoints.

Revision ID: messaging_0001

The tables as they were at this revision (later revisions change them with ``op.*``).
"""

import sqlalchemy as sa
from alembic import op

from kunde.store.tables import naming
from kunde.store.types import UtcDateTime

revision = "messaging_0001"
down_revision = None
branch_labels = ("messaging",)
depends_on = "core_0001"

TABLES = ["messages", "webhook_endpoints"]


def upgrade() -> None:
    md = sa.MetaData(naming_convention=naming)
    sa.Table(
        "messages", md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("locale", sa.String(16)),
        sa.Column("destination", sa.String(80), nullable=False),
        sa.Column("context", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("next_attempt_at", UtcDateTime, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("sent_at", UtcDateTime),
        sa.Column("recipient", sa.LargeBinary),
        sa.Column("subject", sa.LargeBinary),
        sa.Column("body", sa.LargeBinary),
        sa.Index("ix_messages_status_next_attempt_at", "status", "next_attempt_at"),
        sa.Index("ix_messages_customer_id_created_at", "customer_id", "created_at"),
    )
    sa.Table(
        "webhook_endpoints", md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("disabled_at", UtcDateTime),
    )
    md.create_all(op.get_bind())


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
