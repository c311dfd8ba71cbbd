from __future__ import annotations

import sqlalchemy as sa

from kunde.store.distribution import by_customer, local, reference
from kunde.store.tables import metadata
from kunde.store.types import Json, UtcDateTime

# One data key per subject (customer), wrapped by the master key.
subject_keys = sa.Table(
    "subject_keys",
    metadata,
    sa.Column("subject_id", sa.String(36), primary_key=True),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
    sa.Column("master_key_id", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Keys of the system itself (the blind-index key), wrapped by the master key too,
# so a master-key rotation re-wraps them and blind indexes stay stable.
system_keys = sa.Table(
    "system_keys",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
    sa.Column("master_key_id", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# The erasure log: subjects whose key was shredded. Never purged; re-applied on restore.
shredded_subjects = sa.Table(
    "shredded_subjects",
    metadata,
    sa.Column("subject_id", sa.String(36), primary_key=True),
    sa.Column("shredded_at", UtcDateTime, nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
)

# -- audit -----------------------------------------------------------------------
# Append-only and hash-chained: hash = sha256(prev_hash + canonical entry). ``seq`` is assigned
# by the writer (no gaps), so a deleted, inserted or edited entry breaks the chain.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("at", UtcDateTime, nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False, index=True),
    sa.Column("action", sa.String(100), nullable=False, index=True),
    sa.Column("subject_id", sa.String(36), index=True),
    sa.Column("details", Json, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# Where the chain starts after retention purged its oldest entries.
audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
)

# -- suppression: blind indexes of erased identifiers; events about them are refused --------
suppressions = sa.Table(
    "privacy_suppressions",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("value_hash", sa.String(32), primary_key=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("request_id", sa.String(36)),
)

# -- data-subject requests ----------------------------------------------------------
erasure_requests = sa.Table(
    "privacy_erasure_requests",
    metadata,
    # Keyed by customer first (distribution); looked up by id alone too, hence the index.
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True, index=True),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False),
    # pending -> erased (data gone, keys shredded) -> done (erasure log file written)
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # Blind indexes (never clear values) of the identifiers to suppress.
    sa.Column("suppress", Json, nullable=False),
    sa.Column("subject_ids", Json),
    sa.Column("receipt", Json),
    sa.Column("completed_at", UtcDateTime),
    sa.Column("error", sa.Text),
)

export_requests = sa.Table(
    "privacy_export_requests",
    metadata,
    # Keyed by customer first (distribution); looked up by id alone too, hence the index.
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True, index=True),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False),
    # queued -> running -> ready | failed; a ready bundle expires at expires_at
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("progress", sa.Integer, nullable=False, default=0),
    sa.Column("total", sa.Integer, nullable=False, default=0),
    sa.Column("finished_at", UtcDateTime),
    sa.Column("expires_at", UtcDateTime),
    sa.Column("summary", Json),
    sa.Column("error", sa.Text),
)

# -- retention ----------------------------------------------------------------------
legal_holds = sa.Table(
    "privacy_legal_holds",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # A data class, or "*" for every class.
    sa.Column("data_class", sa.String(32), nullable=False),
    # One customer, or NULL: the whole class is held.
    sa.Column("customer_id", sa.String(36), index=True),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("released_at", UtcDateTime),
)

retention_runs = sa.Table(
    "privacy_retention_runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("ran_at", UtcDateTime, nullable=False, index=True),
    sa.Column("report", Json, nullable=False),
)

# -- distribution (Citus) -------------------------------------------------------------
# A subject is a customer record: its key and its erasure mark live on its shard.
by_customer(subject_keys, shredded_subjects, column="subject_id")
by_customer(erasure_requests, export_requests)
reference("the blind-index key and other system keys: a few rows every node reads",
          system_keys)
reference("erased identifiers are read in full by every ingesting process and written "
          "only by an erasure: a small list each node holds", suppressions)
reference("legal holds are a few staff-written rules, many for a whole data class with no "
          "customer (customer_id NULL); the retention job reads them all", legal_holds)
reference("one report per retention run: a small, rarely written log", retention_runs)
local("the audit log is one hash chain over all entries, appended in seq order under one "
      "lock; its checkpoints are the chain's start", audit_log, audit_checkpoints)
