"""Tables of the profiles feature: customers, identity graph, traits, consent, segments.

A person may be several customer records stitched together: each record keeps its own
identifiers, traits and activity (sealed under its own data key), and
``customers.canonical_id`` names the live record they were merged into. Reads fold the
records of one person together, which is what makes unmerge exact.
"""

from __future__ import annotations

import sqlalchemy as sa

from kunde.store.distribution import by_customer, by_key, reference
from kunde.store.tables import metadata
from kunde.store.types import Json, UtcDateTime

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # Itself while live; the survivor's id once merged (kept flat: never a chain).
    sa.Column("canonical_id", sa.String(36), nullable=False, index=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("merged_at", UtcDateTime),
)

# One row per identifier, on its customer record's shard; value_hash is the vault's blind
# index of (kind, normalised value). That an identifier belongs to exactly one customer
# record is held by ``identity_owners`` (written in the same transaction).
identities = sa.Table(
    "identities",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("value_hash", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("value_enc", sa.LargeBinary, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("event_id", sa.String(36)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("customer_id", "value_hash"),
)

# The owner of each identifier, keyed (and distributed) by the blind index alone: its
# primary key is what makes an identifier belong to exactly one customer record.
identity_owners = sa.Table(
    "identity_owners",
    metadata,
    sa.Column("value_hash", sa.String(32), primary_key=True),
    sa.Column("customer_id", sa.String(36), nullable=False),
)

# Why each link exists, and every claim that was refused: the identity audit trail.
identity_links = sa.Table(
    "identity_links",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("value_hash", sa.String(32), nullable=False, index=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # linked | merged | refused | shared
    sa.Column("reason", sa.String(300), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("event_id", sa.String(36)),
    sa.Column("at", UtcDateTime, nullable=False),
)

merges = sa.Table(
    "merges",
    metadata,
    # A merge belongs to the record it merged away (distribution column).
    sa.Column("merged_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("survivor_id", sa.String(36), nullable=False, index=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("reason", sa.String(300), nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("event_id", sa.String(36)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("undone_at", UtcDateTime),
    sa.Column("undone_by", sa.String(100)),
    sa.Column("undo_reason", sa.String(300)),
)

# Pairs staff separated: automatic stitching never joins them again.
merge_blocks = sa.Table(
    "merge_blocks",
    metadata,
    sa.Column("a_id", sa.String(36), primary_key=True),
    sa.Column("b_id", sa.String(36), primary_key=True),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

traits = sa.Table(
    "traits",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    # JSON of the value, sealed under the customer record's data key.
    sa.Column("value_enc", sa.LargeBinary, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("observed_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

customer_activity = sa.Table(
    "customer_activity",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("first_seen_at", UtcDateTime),
    sa.Column("last_seen_at", UtcDateTime),
    sa.Column("channels", Json, nullable=False),
    sa.Column("events_count", sa.Integer, nullable=False),
    # Last time of each tracked event name (ISO strings), for segment rules.
    sa.Column("event_last", Json, nullable=False),
)

profile_orders = sa.Table(
    "profile_orders",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    # Paid, cancelled and refund events name the order alone, hence the index.
    sa.Column("order_id", sa.String(36), primary_key=True, index=True),
    sa.Column("number", sa.String(40)),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("placed_at", UtcDateTime, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("total_minor", sa.BigInteger, nullable=False),
    sa.Column("paid", sa.Boolean, nullable=False),
    sa.Column("cancelled", sa.Boolean, nullable=False),
    # {refund_id: amount_minor}, so a redelivered refund event counts once.
    sa.Column("refunds", Json, nullable=False),
    sa.Column("categories", Json, nullable=False),
)

consent_records = sa.Table(
    "consent_records",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("purpose", sa.String(40), nullable=False),
    sa.Column("granted", sa.Boolean, nullable=False),
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("text_version", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
)

# Every consent record id ever written, keyed by the id alone: a decision derived from an
# event (its id is a hash of the event id and purpose) is recorded once, even when the
# customer it was recorded under has since been merged into another.
consent_record_ids = sa.Table(
    "consent_record_ids",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
)

consent_state = sa.Table(
    "consent_state",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("purpose", sa.String(40), primary_key=True),
    sa.Column("granted", sa.Boolean, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("record_id", sa.String(36), nullable=False),
)

segments = sa.Table(
    "segments",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("rules", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

segment_members = sa.Table(
    "segment_members",
    metadata,
    sa.Column("segment_id", sa.String(36), primary_key=True),
    sa.Column("customer_id", sa.String(36), primary_key=True, index=True),
    sa.Column("entered_at", UtcDateTime, nullable=False),
)

# -- distribution (Citus) -------------------------------------------------------------
by_customer(customers, column="id")
by_customer(identities, identity_links, traits, customer_activity, profile_orders,
            consent_records, consent_state, segment_members)
by_customer(merges, column="merged_id")
# Blocks are stored with a_id < b_id; a pair lives on the shard of its smaller id.
by_customer(merge_blocks, column="a_id")
by_key("identifier", "an identifier belongs to exactly one customer record, across all "
       "customers and through merges: the owner row is keyed by the blind index alone",
       value_hash=identity_owners)
by_key("consent_record", "a consent record id is used once across customers (merges "
       "change the customer a decision is recorded under): keyed by the id alone",
       id=consent_record_ids)
reference("segment definitions: a few staff-written rules every node evaluates", segments)
