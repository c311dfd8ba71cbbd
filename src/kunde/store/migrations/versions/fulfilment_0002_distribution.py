"""fulfilment: keys for Citus (store/distribution.py, docs/fulfilment.md).

Shipments, their checkpoints and returns are keyed by order id, co-located with
commerce orders; checkpoints gain their shipment's order id. The tracking token becomes
unique per order (144 random bits) and stays indexed for the tracking page; RMA numbers
stay unique across all returns through a guard table keyed by the number.

fulfilment_0001 builds its tables from ``tables.py`` as it stands, so on a new database
they have this shape already: each step changes only what differs (store/migrate_ops.py).

Revision ID: fulfilment_0002
"""

import sqlalchemy as sa
from alembic import op

from kunde.store.migrate_ops import (
    add_column_if_missing,
    create_index_if_missing,
    create_table_if_missing,
    rekey,
)

revision = "fulfilment_0002"
down_revision = "fulfilment_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if create_table_if_missing(
        "fulfilment_rmas",
        sa.Column("rma", sa.String(20), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("return_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("rma", name="pk_fulfilment_rmas"),
    ):
        op.execute("INSERT INTO fulfilment_rmas (rma, order_id, return_id) "
                   "SELECT rma, order_id, id FROM returns")

    rekey("shipments", ["order_id", "id"], drop_unique=[["token"]],
          add_unique=[["order_id", "token"]], drop_index=["ix_shipments_order_id"])
    create_index_if_missing("ix_shipments_id", "shipments", ["id"])
    create_index_if_missing("ix_shipments_token", "shipments", ["token"])

    if add_column_if_missing("checkpoints", sa.Column("order_id", sa.String(36))):
        op.execute("UPDATE checkpoints SET order_id = (SELECT shipments.order_id "
                   "FROM shipments WHERE shipments.id = checkpoints.shipment_id)")
        # A checkpoint whose shipment is gone cannot be shown anywhere.
        op.execute("DELETE FROM checkpoints WHERE order_id IS NULL")
    rekey("checkpoints", ["order_id", "id"], not_null=["order_id"],
          drop_unique=[["shipment_id", "fingerprint"]],
          add_unique=[["order_id", "shipment_id", "fingerprint"]])

    rekey("returns", ["order_id", "id"], drop_unique=[["rma"]],
          drop_index=["ix_returns_order_id"])
    create_index_if_missing("ix_returns_id", "returns", ["id"])


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
