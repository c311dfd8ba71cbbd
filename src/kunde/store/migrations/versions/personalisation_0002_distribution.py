"""personalisation: distributable by customer (Citus).

Revision ID: personalisation_0002

Interactions, searches and offer decisions get the primary key (customer_id, id); every
other customer table is keyed by its customer already. personalisation_0001 builds its
tables from ``tables.py`` as it stands, so on a new database ``rekey`` finds them keyed
so and changes nothing (store/migrate_ops.py).
"""

from kunde.store.migrate_ops import rekey

revision = "personalisation_0002"
down_revision = "personalisation_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("p13n_interactions", "p13n_searches", "p13n_offer_decisions"):
        rekey(table, ["customer_id", "id"])


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
