"""ingest: the messageId de-duplication table.

Revision ID: ingest_0001
"""

from kunde.store.migrate import create_tables

revision = "ingest_0001"
down_revision = None
branch_labels = ("ingest",)
depends_on = "core_0001"

TABLES = ["ingest_messages"]


def upgrade() -> None:
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
