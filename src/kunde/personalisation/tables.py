"""Tables of the personalisation feature (prefix ``p13n_``)."""

from __future__ import annotations

import sqlalchemy as sa

from kunde.store.distribution import by_customer, reference
from kunde.store.tables import metadata
from kunde.store.types import Json, UtcDateTime

# One row per product interaction or purchased order line, keyed by a derived id so that a
# re-delivered event changes nothing. Purchases come only from commerce.order_placed.
# A merge moves rows to the survivor, skipping ids it holds already (handlers.py).
interactions = sa.Table(
    "p13n_interactions", metadata,
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("customer_id", sa.String(36), nullable=False),
    sa.Column("sku", sa.String(120), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),  # view | cart | purchase
    sa.Column("category", sa.String(120), nullable=False, server_default=""),
    sa.Column("basket", sa.String(64), nullable=False, server_default=""),
    sa.Column("quantity", sa.Integer, nullable=False, server_default="1"),
    sa.Column("value_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("currency", sa.String(3), nullable=False, server_default=""),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Index("ix_p13n_interactions_customer", "customer_id", "occurred_at"),
    sa.Index("ix_p13n_interactions_time", "occurred_at"),
    sa.PrimaryKeyConstraint("customer_id", "id"),
)

searches = sa.Table(
    "p13n_searches", metadata,
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("customer_id", sa.String(36), nullable=False, index=True),
    sa.Column("query", sa.String(200), nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("customer_id", "id"),
)

# What we know about products from the events (category for filters and diversity) and the
# stock signal used when no catalogue service answers.
items = sa.Table(
    "p13n_items", metadata,
    sa.Column("sku", sa.String(120), primary_key=True),
    sa.Column("category", sa.String(120), nullable=False, server_default=""),
    sa.Column("title", sa.String(200), nullable=False, server_default=""),
    sa.Column("available", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("boost", sa.Float, nullable=False, server_default="1.0"),
)

# Segment membership and consent, projected from profiles' events (used when the profiles
# services are not available and for per-segment popularity at training time).
segment_members = sa.Table(
    "p13n_segment_members", metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("segment", sa.String(120), primary_key=True),
)

consents = sa.Table(
    "p13n_consents", metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("purpose", sa.String(40), primary_key=True),
    sa.Column("granted", sa.Boolean, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Customers erased under GDPR: never trained on again, even if an event is replayed.
erased = sa.Table(
    "p13n_erased", metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("erased_at", UtcDateTime, nullable=False),
)

model_versions = sa.Table(
    "p13n_model_versions", metadata,
    sa.Column("version", sa.String(40), primary_key=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("summary", Json, nullable=False),
)

evaluations = sa.Table(
    "p13n_evaluations", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("dataset", sa.String(200), nullable=False),
    sa.Column("report", Json, nullable=False),
)

scores = sa.Table(
    "p13n_scores", metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("clv_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("p_alive", sa.Float, nullable=False),
    sa.Column("expected_purchases", sa.Float, nullable=False),
    sa.Column("churn_risk", sa.String(10), nullable=False),
    sa.Column("computed_at", UtcDateTime, nullable=False),
    sa.Index("ix_p13n_scores_risk", "churn_risk", "clv_minor"),
)

offers = sa.Table(
    "p13n_offers", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("value_minor", sa.BigInteger, nullable=False),
    sa.Column("cost_minor", sa.BigInteger, nullable=False),
    sa.Column("propensity", sa.Float, nullable=False),
    sa.Column("channels", Json, nullable=False),
    sa.Column("min_tier", sa.String(40)),
    sa.Column("segments", Json, nullable=False),
    sa.Column("sku", sa.String(120)),
    sa.Column("needs_consent", sa.String(40)),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

offer_decisions = sa.Table(
    "p13n_offer_decisions", metadata,
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("customer_id", sa.String(36), nullable=False),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("offer_id", sa.String(64)),
    sa.Column("score", sa.Float),
    sa.Column("decisions", Json, nullable=False),
    sa.Column("decided_at", UtcDateTime, nullable=False),
    sa.Index("ix_p13n_offer_decisions_customer", "customer_id", "channel", "decided_at"),
    sa.PrimaryKeyConstraint("customer_id", "id"),
)

experiments = sa.Table(
    "p13n_experiments", metadata,
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("variants", Json, nullable=False),  # [[name, weight], ...]
    sa.Column("status", sa.String(20), nullable=False),  # running | stopped
    sa.Column("created_at", UtcDateTime, nullable=False),
)

exposures = sa.Table(
    "p13n_exposures", metadata,
    sa.Column("experiment", sa.String(80), primary_key=True),
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("variant", sa.String(80), nullable=False),
    sa.Column("exposed_at", UtcDateTime, nullable=False),
)

flags = sa.Table(
    "p13n_flags", metadata,
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("description", sa.String(400), nullable=False, server_default=""),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("rollout_percent", sa.Float, nullable=False, server_default="0"),
    sa.Column("beta", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cohorts", Json, nullable=False),  # segment names whose members get it
    sa.Column("tiers", Json, nullable=False),  # loyalty tiers granted early access
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

flag_optins = sa.Table(
    "p13n_flag_optins", metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("flag", sa.String(80), primary_key=True),
    sa.Column("opted_in_at", UtcDateTime, nullable=False),
)

# Loyalty tier per customer, projected from loyalty.tier_changed (eligibility, early access).
tiers = sa.Table(
    "p13n_tiers", metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("tier", sa.String(40), nullable=False),
)

TABLES = [t.name for t in (interactions, searches, items, segment_members, consents, erased,
                           model_versions, evaluations, scores, offers, offer_decisions,
                           experiments, exposures, flags, flag_optins, tiers)]

by_customer(interactions, searches, segment_members, consents, erased, scores, offer_decisions,
            exposures, flag_optins, tiers)
reference("the product catalogue as events describe it: read with every recommendation "
          "on every node, one row per product", items)
reference("trained model versions and offline evaluation reports: a few rows written by "
          "the training job, read when serving", model_versions, evaluations)
reference("offers, experiments and feature flags: configuration written by staff, read "
          "for every customer's decision", offers, experiments, flags)
