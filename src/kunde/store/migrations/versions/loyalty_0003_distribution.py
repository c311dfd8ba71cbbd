"""loyalty: keyed for distribution by customer (Citus); the ledger's exactly-once guard
moves to ``loyalty_causes``, keyed by the cause alone.

* ``loyalty_causes`` (new): one row per recorded transaction id (derived from kind,
  cause and rule), filled from the transactions already recorded;
* ``loyalty_transactions``: primary key (customer_id, id); the unique (kind, cause_id,
  rule) goes (``loyalty_causes`` keeps the cause unique across customers);
* ``loyalty_entries``: gains its transaction's customer_id, primary key
  (customer_id, txn_id, leg);
* ``loyalty_accounts``: customer_id NOT NULL, primary key (customer_id, account);
* ``loyalty_lots``, ``loyalty_redemptions``: primary key (customer_id, id).

``loyalty_0001`` builds its tables from ``tables.py`` as it stands, so on a new database
they have this shape already: each step changes only what differs (store/migrate_ops.py).

Revision ID: loyalty_0003
"""

import sqlalchemy as sa
from alembic import op

from kunde.store.migrate_ops import add_column_if_missing, create_table_if_missing, rekey

revision = "loyalty_0003"
down_revision = "loyalty_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if create_table_if_missing(
        "loyalty_causes",
        sa.Column("txn_id", sa.String(36), nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("txn_id", name="pk_loyalty_causes"),
    ):
        op.execute("INSERT INTO loyalty_causes (txn_id, customer_id) "
                   "SELECT id, customer_id FROM loyalty_transactions")

    rekey("loyalty_transactions", ["customer_id", "id"],
          drop_unique=[("kind", "cause_id", "rule")])

    if add_column_if_missing("loyalty_entries", sa.Column("customer_id", sa.String(36))):
        op.execute(
            "UPDATE loyalty_entries SET customer_id = (SELECT t.customer_id "
            "FROM loyalty_transactions t WHERE t.id = loyalty_entries.txn_id)")
    rekey("loyalty_entries", ["customer_id", "txn_id", "leg"], not_null=["customer_id"])

    # Only member accounts were ever written as rows (system balances are sums of their
    # entries), so every row names its customer; a row without one would be a stray
    # system-account projection that nothing reads.
    op.execute("DELETE FROM loyalty_accounts WHERE customer_id IS NULL")
    rekey("loyalty_accounts", ["customer_id", "account"], not_null=["customer_id"],
          drop_index=["ix_loyalty_accounts_customer_id"])

    rekey("loyalty_lots", ["customer_id", "id"])

    rekey("loyalty_redemptions", ["customer_id", "id"],
          drop_index=["ix_loyalty_redemptions_customer_id"])


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
