"""service: cases, messages, activity, inbound review, macros, feedback.

Revision ID: service_0001
"""

from kunde.store.migrate import create_tables

revision = "service_0001"
down_revision = None
branch_labels = ("service",)
depends_on = "core_0001"

TABLES = ["service_cases", "service_messages", "service_activity", "service_inbound_review",
          "service_macros", "service_feedback", "service_order_counts", "service_order_seen"]


def upgrade() -> None:
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
