"""access: API keys, sources, staff users, log-in failures.

Revision ID: access_0001
"""

from kunde.store.migrate import create_tables

revision = "access_0001"
down_revision = None
branch_labels = ("access",)
depends_on = "core_0001"

TABLES = ["api_keys", "sources", "staff_users", "login_failures"]


def upgrade() -> None:
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
