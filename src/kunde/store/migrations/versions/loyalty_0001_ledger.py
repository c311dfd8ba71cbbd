"""loyalty: ledger, programme, members, rewards, quests, seasons, teams.

Revision ID: loyalty_0001
"""

from kunde.store.migrate import create_tables

revision = "loyalty_0001"
down_revision = None
branch_labels = ("loyalty",)
depends_on = "core_0001"

TABLES = [
    "loyalty_accounts", "loyalty_transactions", "loyalty_entries", "loyalty_lots",
    "loyalty_members", "loyalty_purchases", "loyalty_rule_usage", "loyalty_programmes",
    "loyalty_reward_stock", "loyalty_redemptions", "loyalty_welcomes", "loyalty_quest_marks",
    "loyalty_quest_completions", "loyalty_season_xp", "loyalty_badges", "loyalty_streaks",
    "loyalty_teams", "loyalty_team_members", "loyalty_member_segments", "loyalty_webhooks",
    "loyalty_webhook_deliveries",
]


def upgrade() -> None:
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
