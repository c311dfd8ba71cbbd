"""commerce: keys for Citus (store/distribution.py, docs/commerce.md).

Orders and their lines, history, payments and refunds are keyed by order id (checkout
chooses the order's id when it starts the payment). What must stay unique across all orders
(number, external reference, one order per cart) and one voucher per cause move into
guard tables keyed by that value, filled here from the rows that exist.

commerce_0001 builds its tables from ``tables.py`` as it stands, so on a new database
they have this shape already: each step changes only what differs (store/migrate_ops.py).

Revision ID: commerce_0002
"""

import sqlalchemy as sa
from alembic import op

from kunde.store.migrate_ops import (
    create_index_if_missing,
    create_table_if_missing,
    drop_unique_if_present,
    rekey,
)

revision = "commerce_0002"
down_revision = "commerce_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if create_table_if_missing(
        "commerce_voucher_causes",
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("source_ref", sa.String(200), nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("source", "source_ref", name="pk_commerce_voucher_causes"),
    ):
        op.execute("INSERT INTO commerce_voucher_causes (source, source_ref, code) "
                   "SELECT source, source_ref, code FROM commerce_vouchers")
    drop_unique_if_present("commerce_vouchers", ["source", "source_ref"])

    if create_table_if_missing(
        "commerce_order_keys",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name="pk_commerce_order_keys"),
    ):
        for kind, column in (("number", "number"), ("external_ref", "external_ref"),
                             ("cart", "cart_id")):
            op.execute(f"INSERT INTO commerce_order_keys (kind, key, order_id) "  # noqa: S608
                       f"SELECT '{kind}', {column}, id FROM commerce_orders "
                       f"WHERE {column} IS NOT NULL")
    drop_unique_if_present("commerce_orders", ["number"], ["external_ref"], ["cart_id"])
    create_index_if_missing("ix_commerce_orders_number", "commerce_orders", ["number"])

    rekey("commerce_order_lines", ["order_id", "id"],
          drop_index=["ix_commerce_order_lines_order_id"])
    rekey("commerce_order_history", ["order_id", "id"],
          drop_index=["ix_commerce_order_history_order_id"])
    rekey("commerce_refunds", ["order_id", "id"], drop_index=["ix_commerce_refunds_order_id"])

    # A payment without an order (started, or declined) gets an order id of its own,
    # unique as the payment's id is: a resumed checkout places its order under it.
    op.execute("UPDATE commerce_payments SET order_id = id WHERE order_id IS NULL")
    rekey("commerce_payments", ["order_id", "id"], not_null=["order_id"],
          drop_index=["ix_commerce_payments_order_id"])


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
