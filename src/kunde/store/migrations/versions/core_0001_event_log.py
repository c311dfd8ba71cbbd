"""core: event log, consumer offsets, leases, jobs, vault keys.

Revision ID: core_0001
"""

from kunde.store.migrate import create_tables

revision = "core_0001"
down_revision = None
branch_labels = ("core",)
depends_on = None

TABLES = ["events", "consumer_offsets", "dead_letters", "workers", "partition_leases",
          "job_runs", "subject_keys", "system_keys", "shredded_subjects"]


def upgrade() -> None:
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
