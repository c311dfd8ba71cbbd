"""loyalty: members followed through customer merges; final season standings.

Revision ID: loyalty_0002
"""

import sqlalchemy as sa
from alembic import op

from kunde.store.types import UtcDateTime

revision = "loyalty_0002"
down_revision = "loyalty_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loyalty_merges",
        sa.Column("merged_id", sa.String(36), nullable=False),
        sa.Column("survivor_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("merged_at", UtcDateTime, nullable=False),
        sa.Column("undone_at", UtcDateTime),
        sa.PrimaryKeyConstraint("merged_id", name="pk_loyalty_merges"),
    )
    op.create_index("ix_loyalty_merges_survivor_id", "loyalty_merges", ["survivor_id"])
    op.create_table(
        "loyalty_season_results",
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("season_id", sa.String(64), nullable=False),
        sa.Column("xp", sa.BigInteger, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("finished_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "season_id", name="pk_loyalty_season_results"),
    )
    op.create_index("ix_loyalty_season_results_season_rank", "loyalty_season_results",
                    ["season_id", "rank"])


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
