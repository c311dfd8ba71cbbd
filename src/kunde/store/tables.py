"""Tables owned by the storage layer: the event log, consumer offsets, leases, jobs.

Every feature defines its tables on the shared `metadata` in its own
``tables.py``; migrations (not ``create_all``) create them.
"""

from __future__ import annotations

import sqlalchemy as sa

from kunde.store.distribution import local
from kunde.store.types import UtcDateTime

naming = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = sa.MetaData(naming_convention=naming)

events = sa.Table(
    "events",
    metadata,
    # Strictly increasing, in commit order (see docs/adr/0003-event-log-ordering.md).
    sa.Column("position", sa.BigInteger().with_variant(sa.Integer, "sqlite"), sa.Identity(),
              primary_key=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("subject_id", sa.String(36)),
    sa.Column("partition", sa.SmallInteger, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    # JSON bytes, or AES-GCM ciphertext of them under the subject's data key.
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("encrypted", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_events_partition_position", "partition", "position"),
    sa.Index("ix_events_subject_position", "subject_id", "position"),
    sqlite_autoincrement=True,
)

consumer_offsets = sa.Table(
    "consumer_offsets",
    metadata,
    sa.Column("consumer", sa.String(100), primary_key=True),
    sa.Column("partition", sa.SmallInteger, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("consumer", sa.String(100), primary_key=True),
    sa.Column("position", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("parked_at", UtcDateTime, nullable=False),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("heartbeat_at", UtcDateTime, nullable=False),
)

partition_leases = sa.Table(
    "partition_leases",
    metadata,
    sa.Column("partition", sa.SmallInteger, primary_key=True),
    sa.Column("owner", sa.String(64)),
    sa.Column("expires_at", UtcDateTime),
    # Incremented on every change of owner: a fencing token for diagnostics.
    sa.Column("epoch", sa.BigInteger, nullable=False, default=0),
)

job_runs = sa.Table(
    "job_runs",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("owner", sa.String(64)),
    sa.Column("locked_until", UtcDateTime),
    sa.Column("last_started_at", UtcDateTime),
    sa.Column("last_finished_at", UtcDateTime),
    sa.Column("last_result", sa.Text),
)

# -- distribution (Citus): all coordination, kept on the coordinator ----------------
local("the event log needs one global commit order: consumers read position > cursor "
      "(docs/adr/0003-event-log-ordering.md)", events)
local("consumer positions and parked events are positions in the coordinator's event log",
      consumer_offsets, dead_letters)
local("worker registry, partition leases and job locks: one global lock each",
      workers, partition_leases, job_runs)
