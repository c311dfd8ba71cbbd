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

``loyalty_0001`` creates its tables from the tables module as it stands, so on a fresh
database they already have this shape: each step looks at the live primary key first.

Revision ID: loyalty_0003
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from kunde.store.migrate_ops import rekey

revision = "loyalty_0003"
down_revision = "loyalty_0002"
branch_labels = None
depends_on = None


def _primary_key(table: str) -> list[str]:
    return list(sa.inspect(op.get_bind()).get_pk_constraint(table)["constrained_columns"])


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def _indexes(table: str) -> set[str]:
    return {str(i["name"]) for i in sa.inspect(op.get_bind()).get_indexes(table)}


def _rekey(table: str, primary_key: list[str], **kw: Any) -> None:
    if _primary_key(table) != primary_key:
        rekey(table, primary_key, **kw)


def upgrade() -> None:
    if "loyalty_causes" not in sa.inspect(op.get_bind()).get_table_names():
        op.create_table(
            "loyalty_causes",
            sa.Column("txn_id", sa.String(36), nullable=False),
            sa.Column("customer_id", sa.String(36), nullable=False),
            sa.PrimaryKeyConstraint("txn_id", name="pk_loyalty_causes"),
        )
    op.execute(
        "INSERT INTO loyalty_causes (txn_id, customer_id) "
        "SELECT t.id, t.customer_id FROM loyalty_transactions t "
        "WHERE NOT EXISTS (SELECT 1 FROM loyalty_causes c WHERE c.txn_id = t.id)")

    _rekey("loyalty_transactions", ["customer_id", "id"],
           drop_unique=[("kind", "cause_id", "rule")])

    if "customer_id" not in _columns("loyalty_entries"):
        op.add_column("loyalty_entries", sa.Column("customer_id", sa.String(36)))
        op.execute(
            "UPDATE loyalty_entries SET customer_id = (SELECT t.customer_id "
            "FROM loyalty_transactions t WHERE t.id = loyalty_entries.txn_id)")
    _rekey("loyalty_entries", ["customer_id", "txn_id", "leg"], not_null=["customer_id"])

    # Only member accounts were ever written as rows (system balances are sums of their
    # entries), so every row names its customer; a row without one would be a stray
    # system-account projection that nothing reads.
    op.execute("DELETE FROM loyalty_accounts WHERE customer_id IS NULL")
    drop = [i for i in ("ix_loyalty_accounts_customer_id",) if i in _indexes(
        "loyalty_accounts")]
    _rekey("loyalty_accounts", ["customer_id", "account"], not_null=["customer_id"],
           drop_index=drop)

    _rekey("loyalty_lots", ["customer_id", "id"])

    drop = [i for i in ("ix_loyalty_redemptions_customer_id",) if i in _indexes(
        "loyalty_redemptions")]
    _rekey("loyalty_redemptions", ["customer_id", "id"], drop_index=drop)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
