"""messaging: the outbox and archive of messages, webhook endpoints.

Revision ID: messaging_0001
"""

from kunde.store.migrate import create_tables

revision = "messaging_0001"
down_revision = None
branch_labels = ("messaging",)
depends_on = "core_0001"

TABLES = ["messages", "webhook_endpoints"]


def upgrade() -> None:
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
