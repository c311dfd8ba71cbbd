"""personalisation: interactions, models, scores, offers, experiments and flags.

Revision ID: personalisation_0001
"""

from kunde.store.migrate import create_tables

revision = "personalisation_0001"
down_revision = None
branch_labels = ("personalisation",)
depends_on = "core_0001"

TABLES = [
    "p13n_interactions", "p13n_searches", "p13n_items", "p13n_segment_members",
    "p13n_consents", "p13n_erased", "p13n_model_versions", "p13n_evaluations", "p13n_scores",
    "p13n_offers", "p13n_offer_decisions", "p13n_experiments", "p13n_exposures", "p13n_flags",
    "p13n_flag_optins", "p13n_tiers",
]


def upgrade() -> None:
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
