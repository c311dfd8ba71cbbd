"""personalisation: interactions, models, scores, offers, experiments and flags.

Revision ID: personalisation_0001

Tables a later revision changes are spelled out as they were at this revision; the
others are created from ``tables.py``.
"""

import sqlalchemy as sa
from alembic import op

from kunde.store.migrate import create_tables
from kunde.store.tables import naming
from kunde.store.types import Json, UtcDateTime

revision = "personalisation_0001"
down_revision = None
branch_labels = ("personalisation",)
depends_on = "core_0001"

TABLES = [
    "p13n_items", "p13n_segment_members",
    "p13n_consents", "p13n_erased", "p13n_model_versions", "p13n_evaluations", "p13n_scores",
    "p13n_offers", "p13n_experiments", "p13n_exposures", "p13n_flags",
    "p13n_flag_optins", "p13n_tiers",
]


def upgrade() -> None:
    md = sa.MetaData(naming_convention=naming)
    sa.Table(
        "p13n_interactions", md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("sku", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("category", sa.String(120), nullable=False, server_default=""),
        sa.Column("basket", sa.String(64), nullable=False, server_default=""),
        sa.Column("quantity", sa.Integer, nullable=False, server_default="1"),
        sa.Column("value_minor", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("currency", sa.String(3), nullable=False, server_default=""),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Index("ix_p13n_interactions_customer", "customer_id", "occurred_at"),
        sa.Index("ix_p13n_interactions_time", "occurred_at"),
    )
    sa.Table(
        "p13n_searches", md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False, index=True),
        sa.Column("query", sa.String(200), nullable=False),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
    )
    sa.Table(
        "p13n_offer_decisions", md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("offer_id", sa.String(64)),
        sa.Column("score", sa.Float),
        sa.Column("decisions", Json, nullable=False),
        sa.Column("decided_at", UtcDateTime, nullable=False),
        sa.Index("ix_p13n_offer_decisions_customer", "customer_id", "channel", "decided_at"),
    )
    md.create_all(op.get_bind())
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
