"""privacy: data-subject requests keyed by customer for Citus.

Erasure and export requests get the primary key (customer_id, id), with a plain index on
``id`` for the lookups by request id.

privacy_0001 builds its tables from ``tables.py`` as it stands, so on a new database
they have this shape already: each step changes only what differs (store/migrate_ops.py).

Revision ID: privacy_0002
"""

from kunde.store.migrate_ops import create_index_if_missing, rekey

revision = "privacy_0002"
down_revision = "privacy_0001"
branch_labels = None
depends_on = None

TABLES = ["privacy_erasure_requests", "privacy_export_requests"]


def upgrade() -> None:
    for table in TABLES:
        rekey(table, ["customer_id", "id"], drop_index=[f"ix_{table}_customer_id"])
        create_index_if_missing(f"ix_{table}_id", table, ["id"])


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
