"""service: cases, messages, activity, inbound review, macros, feedback.

Revision ID: service_0001

Tables a later revision changes are spelled out as they were at this revision; the
others are created from ``tables.py``.
"""

import sqlalchemy as sa
from alembic import op

from kunde.store.migrate import create_tables
from kunde.store.tables import naming
from kunde.store.types import Json, UtcDateTime

revision = "service_0001"
down_revision = None
branch_labels = ("service",)
depends_on = "core_0001"

TABLES = ["service_inbound_review", "service_macros", "service_order_counts",
          "service_order_seen"]


def upgrade() -> None:
    md = sa.MetaData(naming_convention=naming)
    sa.Table(
        "service_cases", md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("token", sa.String(8), nullable=False, unique=True),
        sa.Column("customer_id", sa.String(36), index=True),
        sa.Column("vault_subject", sa.String(36), nullable=False),
        sa.Column("contact_verified", sa.Boolean, nullable=False),
        sa.Column("contact_email_enc", sa.LargeBinary),
        sa.Column("contact_email_index", sa.String(32), index=True),
        sa.Column("subject_enc", sa.LargeBinary),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(32), nullable=False),
        sa.Column("assignee_id", sa.String(36)),
        sa.Column("assignee_name", sa.String(200)),
        sa.Column("tags", Json, nullable=False),
        sa.Column("order_id", sa.String(36)),
        sa.Column("shipment_id", sa.String(36)),
        sa.Column("return_id", sa.String(36)),
        sa.Column("cause", sa.String(120), unique=True),
        sa.Column("locale", sa.String(16)),
        sa.Column("opened_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("first_response_due", UtcDateTime, nullable=False),
        sa.Column("resolution_due", UtcDateTime, nullable=False),
        sa.Column("first_responded_at", UtcDateTime),
        sa.Column("solved_at", UtcDateTime),
        sa.Column("closed_at", UtcDateTime),
        sa.Column("escalated_at", UtcDateTime),
        sa.Column("last_message_at", UtcDateTime),
        sa.Index("ix_service_cases_status_queue", "status", "queue"),
        sa.Index("ix_service_cases_opened_at", "opened_at"),
    )
    sa.Table(
        "service_messages", md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("author_kind", sa.String(16), nullable=False),
        sa.Column("author_id", sa.String(36)),
        sa.Column("author_name", sa.String(200)),
        sa.Column("vault_subject", sa.String(36), nullable=False),
        sa.Column("body_enc", sa.LargeBinary, nullable=False),
        sa.Column("email_message_id", sa.String(255), unique=True),
        sa.Column("delivery", sa.String(80), index=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Index("ix_service_messages_case_created", "case_id", "created_at"),
    )
    sa.Table(
        "service_activity", md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False, index=True),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", Json, nullable=False),
    )
    sa.Table(
        "service_feedback", md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("customer_id", sa.String(36), nullable=False, index=True),
        sa.Column("touchpoint", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("cause", sa.String(120), nullable=False, unique=True),
        sa.Column("case_id", sa.String(36)),
        sa.Column("order_id", sa.String(36)),
        sa.Column("sent_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("delivery", sa.String(80)),
        sa.Column("answered_at", UtcDateTime),
        sa.Column("score", sa.SmallInteger),
        sa.Column("comment_enc", sa.LargeBinary),
        sa.Column("follow_up_case_id", sa.String(36)),
        sa.Index("ix_service_feedback_answered", "kind", "answered_at"),
    )
    md.create_all(op.get_bind())
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
