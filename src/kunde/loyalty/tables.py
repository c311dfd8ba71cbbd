"""Tables of the loyalty feature.

The ledger is double-entry: a `loyalty_transactions` row (id derived from its
cause) owns two or more `loyalty_entries` legs that sum to zero. Entries are
never updated or deleted (except by erasure); a correction is a new
transaction. `loyalty_accounts.balance` is a projection of the entries kept by
atomic ``UPDATE … SET balance = balance + :d``.
"""

from __future__ import annotations

import sqlalchemy as sa

from kunde.store.distribution import by_customer, by_key, reference
from kunde.store.tables import metadata
from kunde.store.types import Json, UtcDateTime

accounts = sa.Table(
    "loyalty_accounts",
    metadata,
    # "m:<customer_id>:available" or "m:<customer_id>:pending": member accounts only
    # (system accounts are not kept as rows; their balance is the sum of their entries).
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("account", sa.String(80), primary_key=True),
    sa.Column("bucket", sa.String(16), nullable=False),
    sa.Column("balance", sa.BigInteger, nullable=False, default=0),
)

transactions = sa.Table(
    "loyalty_transactions",
    metadata,
    # derived_id(kind, cause_id, rule); a second delivery of the same cause collides in
    # `loyalty_causes` (global), whichever customer record it is delivered for.
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("cause_id", sa.String(100), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(300), nullable=False),
    sa.Column("ref", sa.String(64)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_loyalty_transactions_customer_created", "customer_id", "created_at"),
    sa.Index("ix_loyalty_transactions_ref", "ref"),
)

causes = sa.Table(
    "loyalty_causes",
    metadata,
    # The exactly-once guard of the ledger, one row per recorded transaction: its id is
    # derived_id(kind, cause_id, rule), inserted (ON CONFLICT DO NOTHING) in the same
    # database transaction as the `loyalty_transactions` row. Keyed by the cause alone,
    # not by customer, so a cause redelivered for another record (a merge survivor, an
    # unmerged record) still finds it taken. customer_id: whose ledger holds it.
    sa.Column("txn_id", sa.String(36), primary_key=True),
    sa.Column("customer_id", sa.String(36), nullable=False),
)

entries = sa.Table(
    "loyalty_entries",
    metadata,
    # customer_id: the customer of the transaction (its distribution key); a member
    # account leg always belongs to that customer.
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("txn_id", sa.String(36), primary_key=True),
    sa.Column("leg", sa.SmallInteger, primary_key=True),
    sa.Column("account", sa.String(80), nullable=False, index=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
)

lots = sa.Table(
    "loyalty_lots",
    metadata,
    # The award transaction that created the lot; FIFO by (available_at, id).
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("remaining", sa.BigInteger, nullable=False),
    sa.Column("reversed", sa.BigInteger, nullable=False, default=0),
    sa.Column("bucket", sa.String(16), nullable=False),  # pending | available
    sa.Column("ref", sa.String(64)),
    sa.Column("earned_at", UtcDateTime, nullable=False),
    sa.Column("available_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime),
    sa.Index("ix_loyalty_lots_customer_available", "customer_id", "available_at"),
    sa.Index("ix_loyalty_lots_bucket_available", "bucket", "available_at"),
    sa.Index("ix_loyalty_lots_expires", "expires_at"),
)

members = sa.Table(
    "loyalty_members",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("tier", sa.String(32), nullable=False),
    sa.Column("tier_since", UtcDateTime, nullable=False),
    sa.Column("tier_review_at", UtcDateTime),
    sa.Column("joined_at", UtcDateTime, nullable=False),
    sa.Index("ix_loyalty_members_review", "tier_review_at"),
)

purchases = sa.Table(
    "loyalty_purchases",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(36), nullable=False),
    sa.Column("currency", sa.String(3)),
    sa.Column("placed_minor", sa.BigInteger, nullable=False, default=0),
    sa.Column("paid_minor", sa.BigInteger, nullable=False, default=0),
    sa.Column("refunded_minor", sa.BigInteger, nullable=False, default=0),
    sa.Column("categories", Json),
    sa.Column("paid_at", UtcDateTime),
    sa.Index("ix_loyalty_purchases_customer_paid", "customer_id", "paid_at"),
)

rule_usage = sa.Table(
    "loyalty_rule_usage",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("rule_id", sa.String(64), primary_key=True),
    sa.Column("window", sa.String(32), primary_key=True),
    sa.Column("points", sa.BigInteger, nullable=False, default=0),
    sa.Column("times", sa.Integer, nullable=False, default=0),
)

programmes = sa.Table(
    "loyalty_programmes",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("config", Json, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("updated_by", sa.String(100), nullable=False),
)

reward_stock = sa.Table(
    "loyalty_reward_stock",
    metadata,
    sa.Column("reward_id", sa.String(64), primary_key=True),
    # NULL = unlimited; otherwise decremented atomically with a >= 0 guard.
    sa.Column("available", sa.BigInteger),
    sa.Column("redeemed", sa.BigInteger, nullable=False, default=0),
)

redemptions = sa.Table(
    "loyalty_redemptions",
    metadata,
    # derived_id("redemption", customer_id, idempotency key)
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("reward_id", sa.String(64), nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("code", sa.String(64)),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

welcomes = sa.Table(
    "loyalty_welcomes",
    metadata,
    # One welcome reward per verified identity (the canonical customer id).
    sa.Column("identity", sa.String(100), primary_key=True),
    sa.Column("customer_id", sa.String(36), nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("granted_at", UtcDateTime, nullable=False, index=True),
)

quest_marks = sa.Table(
    "loyalty_quest_marks",
    metadata,
    # One row per distinct thing that counts toward a quest step in a round.
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("quest_id", sa.String(64), primary_key=True),
    sa.Column("round", sa.String(32), primary_key=True),
    sa.Column("step", sa.SmallInteger, primary_key=True),
    sa.Column("mark", sa.String(100), primary_key=True),
    sa.Column("team_id", sa.String(36)),
    sa.Column("at", UtcDateTime, nullable=False),
)

quest_completions = sa.Table(
    "loyalty_quest_completions",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("quest_id", sa.String(64), primary_key=True),
    sa.Column("round", sa.String(32), primary_key=True),
    sa.Column("completed_at", UtcDateTime, nullable=False),
)

season_xp = sa.Table(
    "loyalty_season_xp",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("season_id", sa.String(64), primary_key=True),
    sa.Column("xp", sa.BigInteger, nullable=False, default=0),
)

badges = sa.Table(
    "loyalty_badges",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("badge", sa.String(64), primary_key=True),
    sa.Column("awarded_at", UtcDateTime, nullable=False),
)

streaks = sa.Table(
    "loyalty_streaks",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("quest_id", sa.String(64), primary_key=True),
    sa.Column("length", sa.Integer, nullable=False),
    sa.Column("last_round", sa.String(32), nullable=False),
)

teams = sa.Table(
    "loyalty_teams",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(80), nullable=False),
    sa.Column("invite_code", sa.String(16), nullable=False, unique=True),
    sa.Column("owner_id", sa.String(36), nullable=False),
    sa.Column("size", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

team_members = sa.Table(
    "loyalty_team_members",
    metadata,
    # A customer belongs to at most one team.
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("team_id", sa.String(36), nullable=False, index=True),
    sa.Column("joined_at", UtcDateTime, nullable=False),
)


member_segments = sa.Table(
    "loyalty_member_segments",
    metadata,
    # Kept from segments.entered / segments.left, for reward eligibility by segment.
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("segment", sa.String(100), primary_key=True),
)

webhooks = sa.Table(
    "loyalty_webhooks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("event_types", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("disabled_at", UtcDateTime),
)

webhook_deliveries = sa.Table(
    "loyalty_webhook_deliveries",
    metadata,
    # derived from (webhook, event): a replayed event is delivered once.
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("webhook_id", sa.String(36), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("customer_id", sa.String(36)),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | sent | failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),
    sa.Column("last_error", sa.String(500)),
    sa.Index("ix_loyalty_webhook_deliveries_due", "status", "next_attempt_at"),
)

merges = sa.Table(
    "loyalty_merges",
    metadata,
    # A member merged into another by the identity graph: later events of merged_id count
    # for survivor_id (flattened: always the live survivor, one hop). Kept on unmerge with
    # undone_at set, so the restored customer earns for themselves again.
    sa.Column("merged_id", sa.String(36), primary_key=True),
    sa.Column("survivor_id", sa.String(36), nullable=False, index=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("merged_at", UtcDateTime, nullable=False),
    sa.Column("undone_at", UtcDateTime),
)

season_results = sa.Table(
    "loyalty_season_results",
    metadata,
    # A member's final standing in a finished season, written once by the season-end job.
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("season_id", sa.String(64), primary_key=True),
    sa.Column("xp", sa.BigInteger, nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=False),
    sa.Index("ix_loyalty_season_results_season_rank", "season_id", "rank"),
)


# -- distribution (Citus), docs/loyalty.md --------------------------------------------
by_customer(accounts, transactions, entries, lots, members, rule_usage, redemptions,
            quest_marks, quest_completions, season_xp, badges, streaks, team_members,
            member_segments, season_results)
# The record a merged id earns for is looked up by the merged id: its own customer's shard.
by_customer(merges, column="merged_id")
by_key("loyalty_cause",
       "the exactly-once key of the points ledger must hold across customer records: a "
       "merge moves points to the survivor and redirects the merged id's later events to "
       "it, so a redelivered cause arrives for another customer id than the first time",
       txn_id=causes)
by_key("loyalty_welcome",
       "one welcome reward per verified identity (anti-abuse) across all of its customer "
       "records, checked by the identity alone",
       identity=welcomes)
by_key("loyalty_order",
       "one row per order, whichever customer record its later events arrive for (a merge "
       "moves it to the survivor, an unmerge leaves it there): refunds find the order and "
       "the lots to claw back by order id alone; per-customer reads (tier progress, "
       "reward taste) use the customer_id index",
       order_id=purchases)
by_key("loyalty_reward",
       "stock is shared by every customer and decremented on each redemption: one shard "
       "per reward, not a reference table every redemption would write on all nodes",
       reward_id=reward_stock)
by_key("loyalty_webhook_delivery",
       "one delivery per (webhook, event), derived id as the replay guard; events without "
       "a customer (customer_id is nullable) are delivered too",
       id=webhook_deliveries)
reference("programme configuration: one row, read by every earn and redeem",
          programmes)
reference("webhook subscriptions: a handful of rows read on every enqueued event",
          webhooks)
reference("teams are shared by members on any shard and joined from team_members and "
          "quest_marks; invite codes are unique across all teams; written only when a "
          "team is created or someone joins or leaves",
          teams)
