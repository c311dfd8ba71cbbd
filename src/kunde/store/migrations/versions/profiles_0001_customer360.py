"""profiles: customers, identity graph, traits, activity, orders, consent, segments.

Revision ID: profiles_0001
"""

from kunde.store.migrate import create_tables

revision = "profiles_0001"
down_revision = None
branch_labels = ("profiles",)
depends_on = "core_0001"

TABLES = ["customers", "identities", "identity_links", "merges", "merge_blocks", "traits",
          "customer_activity", "profile_orders", "consent_records", "consent_state",
          "segments", "segment_members"]


def upgrade() -> None:
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
