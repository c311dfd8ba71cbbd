"""privacy: data-subject requests keyed by customer for Citus.

Erasure and export requests get the primary key (customer_id, id), with a plain index on
``id`` for the lookups by request id.

Revision ID: privacy_0002
"""

import sqlalchemy as sa
from alembic import op

from kunde.store.migrate_ops import rekey

revision = "privacy_0002"
down_revision = "privacy_0001"
branch_labels = None
depends_on = None

TABLES = ["privacy_erasure_requests", "privacy_export_requests"]


def upgrade() -> None:
    # privacy_0001 creates its tables as tables.py declares them now, so a new database
    # already has the new keys: only a database created before this revision is rekeyed.
    inspector = sa.inspect(op.get_bind())
    for table in TABLES:
        if inspector.get_pk_constraint(table)["constrained_columns"] == ["customer_id", "id"]:
            continue
        rekey(table, ["customer_id", "id"], drop_index=[f"ix_{table}_customer_id"])
        op.create_index(f"ix_{table}_id", table, ["id"])


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
