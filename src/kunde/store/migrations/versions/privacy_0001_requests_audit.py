"""privacy: audit log, suppression list, data-subject requests, legal holds, retention runs.

Revision ID: privacy_0001
"""

from kunde.store.migrate import create_tables

revision = "privacy_0001"
down_revision = None
branch_labels = ("privacy",)
depends_on = "core_0001"

TABLES = ["audit_log", "audit_checkpoints", "privacy_suppressions", "privacy_erasure_requests",
          "privacy_export_requests", "privacy_legal_holds", "privacy_retention_runs"]


def upgrade() -> None:
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
