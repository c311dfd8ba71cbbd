"""profiles: keyed by customer for Citus; identifier ownership and consent record ids global.

``identities`` moves to its customer record's shard (primary key (customer_id, id)); that
an identifier belongs to one record is kept by the new ``identity_owners`` table, keyed by
the blind index alone. ``consent_record_ids`` keeps a consent record id used once across
customers. ``identity_links``, ``profile_orders`` and ``consent_records`` gain the customer
id in their primary key, ``merges`` the merged record's id.

profiles_0001 builds its tables from ``tables.py`` as it stands, so on a new database
they have this shape already: each step changes only what differs (store/migrate_ops.py).

Revision ID: profiles_0002
"""

from alembic import op

from kunde.store.migrate import create_tables
from kunde.store.migrate_ops import create_index_if_missing, has_table, rekey

revision = "profiles_0002"
down_revision = "profiles_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not has_table("identity_owners"):
        create_tables(["identity_owners"])
        op.execute("INSERT INTO identity_owners (value_hash, customer_id) "
                   "SELECT value_hash, customer_id FROM identities")
    if not has_table("consent_record_ids"):
        create_tables(["consent_record_ids"])
        op.execute("INSERT INTO consent_record_ids (id) SELECT id FROM consent_records")
    rekey("identities", ["customer_id", "id"], drop_unique=[["value_hash"]],
          add_unique=[["customer_id", "value_hash"]],
          drop_index=["ix_identities_customer_id"])
    rekey("identity_links", ["customer_id", "id"],
          drop_index=["ix_identity_links_customer_id"])
    rekey("merges", ["merged_id", "id"], drop_index=["ix_merges_merged_id"])
    rekey("profile_orders", ["customer_id", "order_id"],
          drop_index=["ix_profile_orders_customer_id"])
    create_index_if_missing("ix_profile_orders_order_id", "profile_orders", ["order_id"])
    rekey("consent_records", ["customer_id", "id"],
          drop_index=["ix_consent_records_customer_id"])


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
