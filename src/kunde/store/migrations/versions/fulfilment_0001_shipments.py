"""fulfilment: shipments, checkpoints, tracking inbox, unknown tracking numbers, returns.

Revision ID: fulfilment_0001
"""

from kunde.store.migrate import create_tables

revision = "fulfilment_0001"
down_revision = None
branch_labels = ("fulfilment",)
depends_on = "core_0001"

TABLES = ["shipments", "checkpoints", "tracking_inbox", "unknown_tracking", "returns",
          "fulfilment_config"]


def upgrade() -> None:
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
